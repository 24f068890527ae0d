"""Checkpoints: round trip, wrong files and architectures, planted pickles; device and seeding."""

import pytest
import torch

from sacnn_helpers import (CheckpointError, CNNWithoutAttention, CNNWithSelfAttention, get_device, load_model, seed_everything)
from sacnn_helpers.checkpoints import load_checkpoint, save_checkpoint


def test_round_trip_keeps_weights_and_meta(tmp_path):
    torch.manual_seed(0)
    model = CNNWithSelfAttention(heads=2)
    with torch.no_grad():
        model.attention.gamma.fill_(0.25)
    path = tmp_path / "run" / "model.pt"
    save_checkpoint(path, model, epoch=3, history=[{"loss": 1.5}], optimizer={"lr": torch.tensor(0.1)})
    fresh = CNNWithSelfAttention(heads=2)
    meta = load_checkpoint(path, fresh)
    assert meta["epoch"] == 3 and meta["history"] == [{"loss": 1.5}]
    for (name, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    rebuilt, meta = load_model(path)
    assert isinstance(rebuilt, CNNWithSelfAttention) and rebuilt.attention.heads == 2 and not rebuilt.training
    assert meta["epoch"] == 3 and torch.equal(rebuilt.attention.gamma, model.attention.gamma)
    assert not list(tmp_path.glob("run/*.tmp"))  # the temporary file was renamed into place


def test_load_model_reads_the_file_once(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save_checkpoint(path, CNNWithSelfAttention(image_size=8))
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: loads.append(args[0]) or real_load(*args, **kwargs))
    model, _ = load_model(path)
    assert loads == [path] and model.config["image_size"] == 8


def test_other_architecture_or_config_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, CNNWithSelfAttention())
    with pytest.raises(CheckpointError, match="holds a CNNWithSelfAttention.*model is a CNNWithoutAttention"):
        load_checkpoint(path, CNNWithoutAttention())
    with pytest.raises(CheckpointError, match="'heads': 4"):
        load_checkpoint(path, CNNWithSelfAttention(heads=4))


def test_a_plain_state_dict_is_not_our_checkpoint(tmp_path):
    path = tmp_path / "state.pt"
    torch.save(CNNWithSelfAttention().state_dict(), path)
    with pytest.raises(CheckpointError, match="not a sacnn_helpers checkpoint"):
        load_checkpoint(path, CNNWithSelfAttention())


def test_garbage_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(garbage, CNNWithSelfAttention())
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt", CNNWithSelfAttention())


def test_booby_trapped_checkpoint_is_refused_and_nothing_runs(tmp_path, planted):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "sacnn-checkpoint-v1", "state_dict": planted(marker)}, path)
    with pytest.raises(CheckpointError, match="not loaded"):
        load_checkpoint(path, CNNWithSelfAttention())
    assert not marker.exists()
    torch.load(path, weights_only=False)  # what an unsafe load would have done
    assert marker.exists()


def test_device_names_are_checked():
    assert get_device("cpu") == torch.device("cpu") and get_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("tpu", "gpu", "cuda:x"):
        with pytest.raises(ValueError, match=f"unknown device '{bad}'"):
            get_device(bad)


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (True, False, "cuda"),
                                                 (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert get_device("auto") == torch.device(expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so asking for it is no error")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="'cuda' was asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'"):
        get_device("cuda")


def test_seeding_repeats_runs():
    seed_everything(7)
    a = CNNWithSelfAttention().conv1.weight.clone(), torch.rand(3)
    seed_everything(7)
    b = CNNWithSelfAttention().conv1.weight.clone(), torch.rand(3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
