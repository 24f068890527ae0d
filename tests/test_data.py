"""The CIFAR-10 reader on small official-layout folders written here, and on bad or hostile files."""
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import sacnn_helpers.data as data
from sacnn_helpers import CIFAR10NotFoundError, CorruptDataError, load_cifar10
from sacnn_helpers.data import CIFAR10_URL, read_batch


def write_batch(path: Path, images: np.ndarray, labels: list) -> None:
    """A batch in the official layout: a protocol-2 pickle of a dict with an N x 3072 uint8 'data' array."""
    batch = {"batch_label": "test batch", "labels": labels,
             "data": images.reshape(len(images), -1), "filenames": [f"{i}.png" for i in range(len(labels))]}
    path.write_bytes(pickle.dumps(batch, protocol=2))


@pytest.fixture
def tiny_cifar(tmp_path):
    """5 training batches of 3 images and a test batch of 2, with known pixels and labels."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in data.TRAIN_FILES + data.TEST_FILES:
        n = 2 if name == "test_batch" else 3
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        write_batch(folder / name, images, labels)
        batches[name] = (images, labels)
    return tmp_path, batches


def test_reads_official_layout(tiny_cifar):
    root, batches = tiny_cifar
    train = load_cifar10(root, train=True, download=False)
    test = load_cifar10(root, train=False, download=False)
    assert len(train) == 15 and len(test) == 2
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.classes[0] == "airplane" and len(train.classes) == 10
    # channel-major rows: red plane first, then green, then blue, each 32 rows of 32 pixels
    images, labels = batches["data_batch_2"]
    np.testing.assert_array_equal(train.images[3:6].numpy(), images)
    assert train.labels[3:6].tolist() == labels
    image, label = test[1]
    assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
    assert torch.allclose(image * 255, torch.from_numpy(batches["test_batch"][0][1]).float())
    assert label == batches["test_batch"][1][1]
    assert not train.official_md5 and "offline copy" in train.source


def test_environment_variable_sets_the_root(tiny_cifar, monkeypatch):
    root, _ = tiny_cifar
    monkeypatch.setenv("SACNN_DATA_DIR", str(root))
    assert len(load_cifar10(train=False, download=False)) == 2


def test_no_data_without_download_names_folder_variable_and_url(tmp_path):
    with pytest.raises(CIFAR10NotFoundError) as err:
        load_cifar10(tmp_path / "empty", download=False)
    message = str(err.value)
    for part in (str(tmp_path / "empty" / "cifar-10-batches-py"), "SACNN_DATA_DIR", CIFAR10_URL, "data_batch_1",
                 f"unpack it into {tmp_path / 'empty'}", "load_cifar10(download=True)"):
        assert part in message


def test_no_data_and_no_network_says_so(tmp_path, monkeypatch):
    def offline(root):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(CIFAR10NotFoundError, match="download failed.*name resolution") as err:
        load_cifar10(tmp_path, download=True)
    assert CIFAR10_URL in str(err.value) and "SACNN_DATA_DIR" in str(err.value)
    assert "download=True" not in str(err.value)  # it was tried: no point suggesting it


def test_truncated_batch_names_the_file_and_what_to_do(tiny_cifar):
    root, _ = tiny_cifar
    path = root / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptDataError, match="data_batch_3.*truncated or corrupt.*download CIFAR-10 again"):
        load_cifar10(root, download=False)


def test_wrong_contents_are_refused(tiny_cifar):
    root, _ = tiny_cifar
    path = root / "cifar-10-batches-py" / "test_batch"
    write_batch(path, np.zeros((2, 3, 16, 16), np.uint8), [0, 1])  # 16x16 images are not CIFAR-10
    with pytest.raises(CorruptDataError, match="N x 3072 uint8"):
        read_batch(path)


def test_booby_trapped_batch_is_refused_and_nothing_runs(tiny_cifar, planted):
    root, _ = tiny_cifar
    marker = root / "pwned"
    path = root / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": planted(marker), "labels": []}, protocol=2))
    with pytest.raises(CorruptDataError, match="data_batch_1.*not loaded: refused to load global"):
        load_cifar10(root, download=False)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the same file under plain pickle does run the code:
    assert marker.exists()


def test_real_cifar10_when_present(real_cifar10):
    test = load_cifar10(train=False, download=False)
    assert len(test) == 10_000
    assert torch.bincount(test.labels).tolist() == [1000] * 10


def test_one_set_of_cifar10_statistics_in_0_255_units(tiny_cifar):
    assert [m / 255 for m in data.CIFAR10_MEAN] == [0.4914, 0.4822, 0.4465]  # what example_feature_map uses
    assert [s / 255 for s in data.CIFAR10_STD] == [0.2470, 0.2435, 0.2616]
    loaded = load_cifar10(tiny_cifar[0], download=False)  # training: the same statistics rounded to 0.1
    assert loaded.mean == [125.3, 123.0, 113.9] and loaded.std == [63.0, 62.1, 66.7]


def test_load_dataset_downloads_like_load_cifar10(tmp_path, monkeypatch, tiny_cifar):
    """One rule for both: a learner who opens the training notebook first, on a machine with internet,
    gets CIFAR-10 downloaded by load_dataset("cifar10") too."""
    import shutil
    from sacnn_helpers import load_dataset, load_recipe_data, get_recipe
    calls = []

    def fake_download(root):  # stands in for torchvision's download: unpacks the tiny folder into root
        calls.append(root)
        shutil.copytree(tiny_cifar[0] / "cifar-10-batches-py", root / "cifar-10-batches-py")

    monkeypatch.setattr(data, "_download", fake_download)
    train, test = load_dataset("cifar10", tmp_path / "fresh")
    assert calls == [tmp_path / "fresh"] and len(train) == 15 and len(test) == 2
    shutil.rmtree(tmp_path / "fresh")
    split = load_recipe_data(get_recipe("smoke", val_size=5, train_limit=None), tmp_path / "fresh")
    assert len(calls) == 2 and len(split["val"]) == 5 and len(split["train"]) == 10
    with pytest.raises(CIFAR10NotFoundError):
        load_dataset("cifar10", tmp_path / "other", download=False)
    assert len(calls) == 2
