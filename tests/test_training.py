"""Training loop, recipes, augmentation and the CLI (fast: tiny synthetic data, one tiny CIFAR-10 run)."""
from dataclasses import replace

import pytest
import torch

import sacnn_helpers as sh
import sacnn_helpers.training as training
from sacnn_helpers import (MODELS, AttentionCNN, CheckpointError, ImageSet, Recipe, augment, build_recipe_model, fit,
                           evaluate, get_recipe, load_dataset, load_model, split_data)
from sacnn_helpers.data import load_cifar10
from sacnn_helpers.train import main


def stripes() -> tuple[ImageSet, ImageSet]:
    """Tiny learnable data: class 0 has a bright top half, class 1 a bright bottom half, plus noise
    (top/bottom, not left/right: horizontal flips must not change the class)."""
    g = torch.Generator().manual_seed(0)

    def make(n):
        labels = torch.randint(0, 2, (n,), generator=g)
        x = torch.randint(0, 100, (n, 3, 8, 8), generator=g)
        top = labels == 0
        x[top, :, :4, :] += 120
        x[~top, :, 4:, :] += 120
        return x.to(torch.uint8), labels

    train, test = make(96), make(32)
    return (ImageSet(*train, classes=["top", "bottom"], source="synthetic"),
            ImageSet(*test, classes=["top", "bottom"], source="synthetic"))


TINY = Recipe(name="tiny", dataset="test-stripes", model="AttentionCNN",
              model_config=dict(widths=[8, 8], attention_at=[1]), epochs=3, batch_size=16, lr=0.05, val_size=16,
              description="unit tests")


class DropoutCNN(AttentionCNN):
    """AttentionCNN with dropout before its head: a model that draws from the global RNG while training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.amax(self.features(x), dim=(2, 3))
        return self.head(torch.nn.functional.dropout(features, 0.5, self.training))


MODELS["DropoutCNN"] = DropoutCNN  # so load_model can rebuild it
TINY_DROPOUT = replace(TINY, name="tiny-dropout", model="DropoutCNN")


def tiny_data(recipe=TINY):
    return split_data(*stripes(), recipe.val_size)


def tiny_run(seed=0, recipe=TINY, **kwargs):
    data = tiny_data(recipe)
    torch.manual_seed(seed)
    model = build_recipe_model(recipe, data["train"])
    return model, fit(model, data, recipe, device="cpu", seed=seed, progress=False, **kwargs)


# --- augmentation --------------------------------------------------------------------------------

def test_augment_keeps_shape_and_dtype():
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    y = augment(x, translate=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert not torch.equal(y, x)  # 5 images, some shifted or flipped
    assert torch.equal(augment(x, translate=0, flip=False), x)


def test_augment_shifts_by_at_most_translate_and_flips_exactly():
    x = torch.zeros(200, 1, 9, 9, dtype=torch.uint8)
    x[:, 0, 4, 4] = 255  # one bright pixel in the centre
    y = augment(x, translate=2, flip=False, generator=torch.Generator().manual_seed(1))
    pos = y.flatten(1).argmax(1)
    rows, cols = pos // 9, pos % 9
    assert (y.flatten(1).max(1).values == 255).all()  # a shift of <= 2 never loses the centre pixel
    assert rows.min() == 2 and rows.max() == 6 and cols.min() == 2 and cols.max() == 6
    x = torch.arange(4 * 4, dtype=torch.uint8).view(1, 1, 4, 4).repeat(100, 1, 1, 1)
    y = augment(x, translate=0, flip=True, generator=torch.Generator().manual_seed(2))
    flipped = (y == x.flip(-1)).flatten(1).all(1)
    same = (y == x).flatten(1).all(1)
    assert (flipped ^ same).all() and 20 < int(flipped.sum()) < 80


def test_augment_draws_on_the_generators_device_and_follows_the_images():
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    on_cpu = augment(x, generator=torch.Generator().manual_seed(3))
    on_meta = augment(x.to("meta"), generator=torch.Generator().manual_seed(3))  # CPU draws, meta images
    assert on_meta.device.type == "meta" and on_meta.shape == on_cpu.shape and on_meta.dtype == torch.uint8
    if torch.cuda.is_available():  # a CUDA generator draws on the GPU
        y = augment(x.cuda(), generator=torch.Generator("cuda").manual_seed(3))
        assert y.is_cuda and y.shape == x.shape


# --- evaluation ----------------------------------------------------------------------------------

class MirrorOdd(torch.nn.Module):
    """logits = [odd + even, -odd]: `odd` changes sign under a horizontal flip, `even` (the mean) does not,
    so averaging the logits of an image and its mirror gives exactly [even, 0]."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.ramp = torch.nn.Parameter(torch.arange(width) - (width - 1) / 2)  # antisymmetric in x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        odd, even = (x * self.ramp).sum((1, 2, 3)), x.mean((1, 2, 3))
        return torch.stack([odd + even, -odd], dim=1)


def test_evaluate_with_flip_averages_the_mirrored_logits():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 1, 4, 4), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 2, (10,), generator=g)
    model = MirrorOdd(4)
    x = (images.float() - 100.0) / 50.0
    with torch.no_grad():
        plain = model(x)
    averaged = torch.stack([x.mean((1, 2, 3)), torch.zeros(10)], dim=1)
    for logits, flip in [(plain, False), (averaged, True)]:
        loss, acc = training.evaluate(model, images, labels, [100.0], [50.0], batch_size=3, flip=flip)
        assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-5)
        assert acc == pytest.approx(float((logits.argmax(1) == labels).float().mean()))
    # mean/std as C x 1 x 1 tensors (how fit passes them) give the same numbers as lists
    as_tensors = training.evaluate(model, images, labels, torch.tensor([100.0]).view(1, 1, 1),
                                   torch.tensor([50.0]).view(1, 1, 1), flip=True)
    assert as_tensors == pytest.approx(training.evaluate(model, images, labels, [100.0], [50.0], flip=True))
    assert training.evaluate(model, images, labels, [100.0], [50.0], flip=False) != as_tensors


# --- recipes and datasets --------------------------------------------------------------------------

def test_recipes_are_keyed_by_dataset():
    assert get_recipe("cpu").dataset == "cifar10" and get_recipe("smoke").epochs == 1
    assert get_recipe("cpu", "long-range").model == "LongRangeCNN"
    assert get_recipe("cpu", epochs=2).epochs == 2 and get_recipe("cpu").epochs == 12  # changes make a copy
    with pytest.raises(ValueError, match="recipes for 'cifar10': .*cpu"):
        get_recipe("tiny")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("no-such-data")


def test_learning_rate_rises_then_falls_to_zero():
    lrs = [training.learning_rate(s, 100, 0.2, 0.2) for s in range(100)]
    assert max(lrs) == pytest.approx(0.2) and lrs.index(max(lrs)) == 19
    assert lrs[0] < 0.02 and lrs[-1] < 0.003 and all(b <= a for a, b in zip(lrs[19:], lrs[20:]))


def test_split_data_holds_out_a_fixed_validation_split():
    data, again = tiny_data(), tiny_data()
    assert len(data["val"]) == 16 and len(data["train"]) == 80 and len(data["test"]) == 32
    assert torch.equal(data["val"].images, again["val"].images)
    both = torch.cat([data["train"].images, data["val"].images]).flatten(1)
    assert len(torch.unique(both, dim=0)) == 96  # no image in both splits
    assert data["val"].mean == data["train"].mean  # one set of statistics for all splits


def test_attention_cnn_checks_its_arguments_and_records_gamma():
    with pytest.raises(ValueError, match="only 2 stages"):
        AttentionCNN(widths=[8, 8], attention_at=[3])
    assert sh.attention.attention_gammas(AttentionCNN(widths=[8, 8], attention_at=[1, 2])) == {
        "features.7": 0.0, "features.15": 0.0}
    assert sh.attention.attention_gammas(AttentionCNN(widths=[8, 8], attention=False)) == {}


# --- the loop: learning, checkpoints, resuming --------------------------------------------------------

def test_a_model_without_attention_trains_and_logs_no_attention():
    recipe = replace(TINY, model_config=dict(TINY.model_config, attention=False))
    _, result = tiny_run(recipe=recipe)
    assert result["test_accuracy"] > 0.8
    assert all(h["attention"] == [] and h["gammas"] == {} for h in result["history"])


def test_training_learns_and_logs_every_epoch():
    _, result = tiny_run()
    assert result["test_accuracy"] > 0.8  # the stripes are easy; chance is 0.5
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3]
    assert all(set(h["gammas"]) == {"features.7"} for h in result["history"])
    assert result["history"][-1]["gammas"]["features.7"] != 0.0  # gamma has been trained


@pytest.mark.parametrize("recipe", [TINY, TINY_DROPOUT], ids=["deterministic-model", "dropout-model"])
def test_interrupted_run_resumes_from_the_saved_epoch(tmp_path, monkeypatch, recipe):
    full_model, full = tiny_run(recipe=recipe, checkpoint=tmp_path / "full.pt")
    real_save = training.save_checkpoint

    def save_then_crash(path, model, **meta):
        real_save(path, model, **meta)
        if meta["epoch"] == 2:
            raise KeyboardInterrupt  # the learner pressed stop after epoch 2 was saved

    monkeypatch.setattr(training, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(recipe=recipe, checkpoint=tmp_path / "run.pt")
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    assert training.read_checkpoint(tmp_path / "run.pt")["meta"]["epoch"] == 2
    model, resumed = tiny_run(recipe=recipe, checkpoint=tmp_path / "run.pt")
    assert resumed["resumed_from"] == 2 and len(resumed["history"]) == 3
    # shuffling, augmentation and the global RNG (dropout) are seeded per epoch, so the resumed run ends
    # where the unbroken one did
    for a, b in zip(full_model.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert resumed["test_accuracy"] == full["test_accuracy"]


def test_fit_keeps_the_maps_of_fixed_test_images_after_every_epoch(tmp_path, monkeypatch):
    """The replay: epoch 0 (untrained) to the last, each the maps the model gives those images then; it
    survives an interruption; and keeping it changes nothing in training."""
    monkeypatch.setattr(training, "REPLAY_IMAGES", 4)
    data = tiny_data()
    model, result = tiny_run(checkpoint=tmp_path / "run.pt")
    replay = training.read_checkpoint(tmp_path / "run.pt")["meta"]["replay"]
    assert replay["split"] == "test" and replay["images"] == [0, 1, 2, 3]
    assert [s["epoch"] for s in replay["snapshots"]] == [0, 1, 2, 3]
    last, first = replay["snapshots"][-1], replay["snapshots"][0]
    assert last["layers"][0].shape == (4, 1, 16, 16) and last["layers"][0].dtype == torch.float16
    x = sh.normalise(data["test"].images[:4], data["train"].mean, data["train"].std)
    logits, weights, sizes = sh.collect_attention(model, x)
    torch.testing.assert_close(last["layers"][0].float(), weights[0], atol=1e-3, rtol=1e-2)  # float16
    assert last["predicted"] == logits.argmax(1).tolist() and last["sizes"] == [list(sizes[0])]
    torch.manual_seed(0)
    untrained = build_recipe_model(TINY, data["train"])
    torch.testing.assert_close(first["layers"][0].float(), sh.collect_attention(untrained, x)[1][0],
                               atol=1e-3, rtol=1e-2)
    assert not torch.allclose(first["layers"][0].float(), last["layers"][0].float(), atol=1e-3)
    # the same weights as a run that keeps no replay
    monkeypatch.setattr(training, "REPLAY_IMAGES", 0)
    plain_model, _ = tiny_run()
    for a, b in zip(plain_model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    # interrupted after epoch 2 and resumed: the same replay as the unbroken run
    monkeypatch.setattr(training, "REPLAY_IMAGES", 4)
    real_save = training.save_checkpoint

    def save_then_crash(path, model, **meta):
        real_save(path, model, **meta)
        if meta["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(checkpoint=tmp_path / "broken.pt")
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    tiny_run(checkpoint=tmp_path / "broken.pt")
    again = training.read_checkpoint(tmp_path / "broken.pt")["meta"]["replay"]
    assert [s["epoch"] for s in again["snapshots"]] == [0, 1, 2, 3]
    for s1, s2 in zip(again["snapshots"], replay["snapshots"]):
        assert torch.equal(s1["layers"][0], s2["layers"][0])


def test_the_replay_of_a_pooling_network_and_of_one_without_maps(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "REPLAY_IMAGES", 3)
    recipe = replace(TINY, model_config=dict(widths=[8, 8], attention=False, pool="attention", pool_heads=2))
    model, _ = tiny_run(recipe=recipe, checkpoint=tmp_path / "pool.pt")
    replay = training.read_checkpoint(tmp_path / "pool.pt")["meta"]["replay"]
    last = replay["snapshots"][-1]
    assert last["layers"] == [] and last["pool"].shape == (3, 2, 4) and last["pool_size"] == [2, 2]
    data = tiny_data(recipe)
    x = sh.normalise(data["test"].images[:3], data["train"].mean, data["train"].std)
    torch.testing.assert_close(last["pool"].float(), sh.collect_pooling(model, x)[1], atol=1e-3, rtol=1e-2)
    plain = replace(TINY, model_config=dict(widths=[8, 8], attention=False))
    tiny_run(recipe=plain, checkpoint=tmp_path / "plain.pt")
    assert "replay" not in training.read_checkpoint(tmp_path / "plain.pt")["meta"]  # nothing to replay


def test_finished_checkpoint_is_reused_unless_forced(tmp_path):
    path = tmp_path / "run.pt"
    _, first = tiny_run(checkpoint=path)
    _, again = tiny_run(checkpoint=path)
    assert again["reused_checkpoint"] == str(path) and again["test_accuracy"] == first["test_accuracy"]
    _, forced = tiny_run(checkpoint=path, force=True)
    assert "reused_checkpoint" not in forced and forced["resumed_from"] == 0
    with pytest.raises(CheckpointError, match="another run"):
        tiny_run(seed=1, checkpoint=path)
    model, meta = load_model(path)
    assert type(model).__name__ == "AttentionCNN" and meta["finished"] and not model.training


def test_a_reworded_recipe_description_keeps_the_checkpoint_but_a_changed_setting_does_not(tmp_path):
    path = tmp_path / "run.pt"
    _, first = tiny_run(checkpoint=path)
    _, again = tiny_run(recipe=replace(TINY, description="reworded"), checkpoint=path)
    assert again["reused_checkpoint"] == str(path) and again["test_accuracy"] == first["test_accuracy"]
    with pytest.raises(CheckpointError, match="another run"):
        tiny_run(recipe=replace(TINY, lr=TINY.lr / 2), checkpoint=path)


# --- the CLI ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--recipe", "nope"], "no recipe 'nope' for dataset 'cifar10'"),
    (["--dataset", "nope"], "unknown --dataset 'nope'"),
    (["--model", "Nope"], "unknown --model 'Nope'"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--heads", "0"], "--heads must be at least 1"),
    (["--position", "absolute"], "invalid choice: 'absolute'"),
    (["--seed", "x"], "invalid int value"),
    (["--data-dir", "/no/such/folder"], "is not a folder"),
])
def test_cli_rejects_bad_flags_with_exit_code_2(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_missing_data_says_where_it_looked(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--recipe", "smoke", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "CIFAR-10 not found" in err and str(tmp_path) in err


@pytest.mark.slow  # over 5 s: a fresh process (left out of the fast run, pytest -m "not slow")
def test_cli_smoke_run_writes_the_json_schema(cli_smoke_run):
    result = cli_smoke_run["result"]
    for key, kind in [("model", str), ("dataset", str), ("recipe", str), ("device", str), ("epochs", int),
                      ("seed", int), ("test_accuracy", float), ("train_seconds", float),
                      ("images_per_second", float), ("history", list)]:
        assert isinstance(result[key], kind), key
    assert (result["model"], result["dataset"], result["recipe"], result["device"]) == (
        "AttentionCNN", "cifar10", "smoke", "cpu")
    assert result["epochs"] == len(result["history"]) == 1
    assert {"train_loss", "val_accuracy", "gammas", "attention"} <= set(result["history"][0])
    assert "test accuracy" in cli_smoke_run["stdout"]
    # the reported accuracy is the saved model's, scored again here (flip-averaged, as the recipe says)
    model, meta = load_model(cli_smoke_run["checkpoint"])
    test = load_cifar10(train=False, download=False)
    n = result["test_images"]
    _, accuracy = evaluate(model, test.images[:n], test.labels[:n], meta["mean"], meta["std"], flip=True)
    assert accuracy == pytest.approx(result["test_accuracy"], abs=1.5 / n)  # at most one image (thread rounding)


# --- bugs found in review: each test failed before its fix ------------------------------------------

def test_a_refused_resume_leaves_the_callers_weights_alone(tmp_path):
    path = tmp_path / "run.pt"
    tiny_run(seed=0, checkpoint=path)
    data = tiny_data()
    torch.manual_seed(1)
    model = build_recipe_model(TINY, data["train"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="another run"):
        fit(model, data, TINY, device="cpu", seed=1, progress=False, checkpoint=path)
    for k, v in model.state_dict().items():  # not the other run's weights
        assert torch.equal(v, before[k]), k


def test_evaluate_restores_the_training_mode():
    model = AttentionCNN(widths=[8, 8], attention_at=[1], image_size=8)
    images, labels = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8), torch.tensor([0, 1] * 3)
    model.train()
    training.evaluate(model, images, labels, [100.0] * 3, [50.0] * 3)
    assert all(m.training for m in model.modules())
    model.eval()
    training.evaluate(model, images, labels, [100.0] * 3, [50.0] * 3)
    assert not any(m.training for m in model.modules())


def test_a_checkpoint_carries_what_is_needed_to_feed_its_model(tmp_path):
    from sacnn_helpers import normalise
    _, result = tiny_run(checkpoint=tmp_path / "run.pt")
    model, meta = load_model(tmp_path / "run.pt")
    data = tiny_data()
    assert meta["mean"] == data["train"].mean and meta["std"] == data["train"].std
    assert meta["classes"] == ["top", "bottom"] == result["classes"]
    x = normalise(data["test"].images, meta["mean"], meta["std"])
    accuracy = float((model(x).argmax(1) == data["test"].labels).float().mean())
    assert accuracy == pytest.approx(training.evaluate(model, data["test"].images, data["test"].labels,
                                                       meta["mean"], meta["std"])[1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_takes_a_numbered_cuda_device(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--device", "cuda:1", "--recipe", "smoke"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid choice" not in err and "'cuda:1' was asked for but torch sees no CUDA" in err


def test_get_device_checks_the_gpu_number(monkeypatch):
    from sacnn_helpers import get_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert get_device("cuda:1") == torch.device("cuda", 1) and get_device("cuda") == torch.device("cuda")
    with pytest.raises(RuntimeError, match="sees 2 CUDA GPU.*cuda:0..cuda:1"):
        get_device("cuda:2")


# --- the GPU path, exercised on the CPU ------------------------------------------------------------------

class ReadBackCounter:
    """Counts the ways a tensor's value can reach Python (each one waits for a GPU to finish its work)."""

    def __init__(self, monkeypatch):
        self.count = 0
        for name in ("item", "tolist", "__bool__", "__int__", "__float__"):
            real = getattr(torch.Tensor, name)

            def counted(tensor, *args, _real=real, **kwargs):
                self.count += 1
                return _real(tensor, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, counted)


def test_an_epoch_reads_values_back_only_at_logging_intervals(monkeypatch):
    data = tiny_data()
    model = build_recipe_model(TINY, data["train"])
    optimizer = training.make_optimizer(model, TINY)
    train = dict(images=data["train"].images, labels=data["train"].labels,
                 mean=torch.tensor(data["train"].mean).view(-1, 1, 1), std=torch.tensor(data["train"].std).view(-1, 1, 1))
    for progress, log_every, expected in [(False, 10, 1), (True, 100, 3), (True, 2, 4)]:
        recipe = replace(TINY, log_every=log_every)  # 80 images, batch 16: 5 steps
        counter = ReadBackCounter(monkeypatch)
        training.train_one_epoch(model, optimizer, train, recipe, epoch=0, total_steps=15, seed=0, progress=progress)
        monkeypatch.undo()
        # one read at the end of the epoch; with a progress bar also at steps 0, 2, 4 (log_every=2) or 0 and 4
        assert counter.count == expected, (progress, log_every)


def test_bf16_autocast_trains_with_float32_batchnorm_and_softmax():
    recipe = replace(TINY, amp=True)
    model, result = tiny_run(recipe=recipe)
    assert result["amp"] is True and result["test_accuracy"] > 0.8
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(t.dtype == torch.float32 for m in norms for t in (*m.parameters(), *m.buffers())
                         if t.is_floating_point())
    from sacnn_helpers import attention_weights
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attention_weights(torch.randn(2, 3, 3, dtype=torch.bfloat16)).dtype == torch.float32


@pytest.mark.parametrize("device, amp, expected", [("cuda", None, True), ("cpu", None, False), ("mps", None, False),
                                                   ("cuda", False, False), ("cpu", True, True)])
def test_amp_is_on_for_cuda_only_by_default(device, amp, expected):
    assert sh.runtime.use_amp(torch.device(device), amp) is expected
    if device == "cpu" and amp is None:  # and fit decides with it
        _, result = tiny_run()
        assert result["amp"] is False and TINY.amp is None


@pytest.mark.slow  # over 5 s: left out of the fast run (pytest -m "not slow")
def test_torch_compile_trains_the_same_model():
    pytest.importorskip("torch._dynamo")
    plain_model, plain = tiny_run(recipe=replace(TINY, epochs=1))
    compiled_model, compiled = tiny_run(recipe=replace(TINY, epochs=1, compile=True))
    assert compiled["compile"] is True and type(compiled_model).__name__ == "AttentionCNN"
    for a, b in zip(plain_model.state_dict().values(), compiled_model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)  # fused kernels round differently


# --- the gpu recipe's parts, on the CPU ------------------------------------------------------------------

def test_the_whitening_init_decorrelates_2x2_patches():
    from sacnn_helpers.models import init_whitening_conv
    g = torch.Generator().manual_seed(0)
    base = torch.randn(64, 1, 12, 12, generator=g)
    images = torch.cat([base, 0.8 * base + 0.2 * torch.randn(64, 1, 12, 12, generator=g),
                        torch.randn(64, 1, 12, 12, generator=g)], dim=1)  # correlated channels
    layer = torch.nn.Conv2d(3, 24, 2, bias=False)
    init_whitening_conv(layer, images, eps=0.0)
    out = layer(images)[:, :12].detach()  # the first 12 filters; the other 12 are their negatives
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    torch.testing.assert_close(flat.T @ flat / len(flat), torch.eye(12), atol=1e-3, rtol=0)
    torch.testing.assert_close(layer.weight[12:], -layer.weight[:12])


def test_fit_sets_a_whitening_layer_from_the_training_images(real_cifar10):
    """A model's `fit_to_data` hook: Airbench94Net's frozen whitening conv, trained by `fit`'s own loop, is set
    from the first 5,000 normalised training images before the first epoch, and not trained."""
    from sacnn_helpers import load_recipe_data, normalise
    from sacnn_helpers.models import Airbench94Net, init_whitening_conv
    recipe = get_recipe("cpu", train_limit=256, test_limit=128, epochs=1, batch_size=64, val_size=0,
                        model="Airbench94Net", model_config=dict(widths=[8, 16, 16], attention=False))
    data = load_recipe_data(recipe)
    torch.manual_seed(0)
    model = build_recipe_model(recipe, data["train"])
    result = fit(model, data, recipe, device="cpu", progress=False)
    assert result["amp"] is False and result["history"][0]["val_accuracy"] is None  # amp: CUDA only by default
    expected = torch.nn.Conv2d(3, 24, 2)
    init_whitening_conv(expected, normalise(data["train"].images, data["train"].mean, data["train"].std))
    torch.testing.assert_close(model[0].weight, expected.weight)  # set from the images, not trained
    assert isinstance(model, Airbench94Net) and not model[0].weight.requires_grad


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_will_not_train_the_gpu_recipe_on_the_cpu_unasked(capsys, monkeypatch):

    monkeypatch.setattr(sh.data, "load_recipe_data", lambda *a, **k: pytest.fail("no data may be loaded"))
    with pytest.raises(SystemExit) as e:
        main(["--recipe", "gpu"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "torch sees no CUDA GPU" in err and "--device cpu" in err


@pytest.mark.parametrize("env, device, expected", [
    ({}, "cpu", ("cpu", None)), ({}, "cuda", ("gpu", None)), ({}, "mps", ("cpu", None)),
    ({"SACNN_SMOKE": "1"}, "cpu", ("smoke", 1024)), ({"SACNN_SMOKE": "1"}, "cuda", ("gpu", 512)),
    ({"SACNN_RECIPE": "gpu"}, "cpu", ("gpu", None)), ({"SACNN_RECIPE": "gpu", "SACNN_SMOKE": "1"}, "cpu", ("gpu", 512)),
    ({"SACNN_RECIPE": "cpu"}, "cuda", ("cpu", None)),
])
def test_notebooks_choose_their_recipe_by_device_unless_told(env, device, expected, monkeypatch):
    monkeypatch.delenv("SACNN_SMOKE", raising=False)
    monkeypatch.delenv("SACNN_RECIPE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    recipe = sh.choose_recipe(torch.device(device))
    assert (recipe.name, recipe.train_limit) == expected
    if recipe.name == "gpu" and recipe.train_limit:  # toy size, with the gpu recipe's own settings
        assert (recipe.lr, recipe.trainer, recipe.val_size) == (11.5, "airbench94", 0)
    assert sh.choose_recipe(torch.device(device), "long-range").name in ("cpu", "smoke")  # it has no gpu recipe
    monkeypatch.setenv("SACNN_RECIPE", "gpuu")
    with pytest.raises(ValueError, match="'gpuu' names no recipe"):
        sh.choose_recipe(torch.device(device))


def test_evaluate_refuses_an_empty_split_and_says_which():
    with pytest.raises(ValueError, match="empty split.*data\\['test'\\]"):
        training.evaluate(sh.AttentionCNN(), torch.zeros(0, 3, 32, 32, dtype=torch.uint8),
                          torch.zeros(0, dtype=torch.long), [0.0] * 3, [1.0] * 3)
