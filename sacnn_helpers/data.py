"""CIFAR-10 that loads offline: the official python layout, read without trusting pickle."""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
DATA_DIR_ENV = "SACNN_DATA_DIR"
REPO_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]
# md5 sums of the official download (as torchvision lists them); other sums are read all the same.
OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}


class CIFAR10NotFoundError(FileNotFoundError):
    """The CIFAR-10 files are not there and could not be downloaded."""


class CorruptDataError(ValueError):
    """A data file is truncated, corrupt or holds something other than CIFAR-10."""


class _SafeUnpickler(pickle.Unpickler):
    """Admits only what the official batch files hold: numpy array reconstruction, dicts, lists,
    numbers and strings. Any other global (os.system, builtins.eval, ...) is refused before it runs."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"refused to load global {module}.{name}: CIFAR-10 batch files "
                                     f"hold only numpy arrays, lists, numbers and strings")


def _numpy_reconstruct():
    try:  # numpy >= 2 keeps it in numpy._core; importing numpy.core there warns
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("codecs").encode,  # how Python 3 writes bytes at protocol 2 (re-saved copies)
}


def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, list[int]]:
    """Read one official-layout batch file -> (N x 3 x 32 x 32 uint8 images, N labels)."""
    path = Path(path)
    fix = (f"delete the folder {path.parent} and download CIFAR-10 again "
           f"({CIFAR10_URL}), or recreate your offline copy")
    try:
        with open(path, "rb") as f:
            batch = _SafeUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        if "refused to load global" in str(e):
            raise CorruptDataError(f"{path} is not a CIFAR-10 batch file and was not loaded: {e}. "
                                   f"Do not use files from an untrusted source; {fix}") from e
        raise CorruptDataError(f"{path} is truncated or corrupt ({e}); {fix}") from e
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as e:
        raise CorruptDataError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); {fix}") from e
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise CorruptDataError(f"{path} does not hold the keys 'data' and 'labels' of a CIFAR-10 batch; {fix}")
    data, labels = batch["data"], batch["labels"]
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != 3 * 32 * 32 or len(labels) != data.shape[0]):
        shape = getattr(data, "shape", type(data).__name__)
        raise CorruptDataError(f"{path}: expected an N x 3072 uint8 'data' array with N labels, got "
                               f"{shape} and {len(labels)} labels; {fix}")
    if not all(isinstance(y, int) and 0 <= y < 10 for y in labels):
        raise CorruptDataError(f"{path}: labels must be integers 0..9; {fix}")
    return data.reshape(-1, 3, 32, 32), list(labels)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def resolve_data_dir(root: str | os.PathLike | None = None) -> Path:
    """Where the data lives: `root`, else $SACNN_DATA_DIR, else the repository's data/ folder."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else REPO_DATA_DIR


def _download(root: Path) -> None:
    """Fetch and unpack the official archive through torchvision (checks its md5)."""
    from torchvision.datasets import CIFAR10
    root.mkdir(parents=True, exist_ok=True)
    CIFAR10(str(root), train=True, download=True)


_NOTED: set[Path] = set()


class CIFAR10(Dataset):
    """CIFAR-10 from an official-layout `cifar-10-batches-py` folder, held in memory.

    Attributes: `images` (N x 3 x 32 x 32 uint8 tensor), `targets` (N int64 tensor), `classes`,
    `folder`, `official_md5` (False for a copy whose files differ from the official download).
    Items are (3 x 32 x 32 float tensor in [0, 1], label), passed through `transform` if given.
    """

    def __init__(self, folder: Path, train: bool = True,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.folder, self.train, self.transform = folder, train, transform
        files = [folder / name for name in (TRAIN_FILES if train else TEST_FILES)]
        images, labels = [], []
        for path in files:
            x, y = read_batch(path)
            images.append(x)
            labels += y
        self.images = torch.from_numpy(np.concatenate(images))
        self.targets = torch.tensor(labels, dtype=torch.int64)
        self.classes = list(CIFAR10_CLASSES)
        self.official_md5 = all(_md5(p) == OFFICIAL_MD5[p.name] for p in files)
        if not self.official_md5 and folder not in _NOTED:  # say it once per folder, at INFO level
            _NOTED.add(folder)
            log.info("%s: md5 sums differ from the official CIFAR-10 files (an offline copy?); read anyway",
                     folder)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i].float() / 255
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[i])

    @property
    def source(self) -> str:
        """One line saying where the data came from, for a notebook to print."""
        kind = "official files" if self.official_md5 else "an offline copy (md5 sums differ from the official files)"
        return f"{len(self)} {'training' if self.train else 'test'} images from {self.folder}: {kind}"


def load_cifar10(root: str | os.PathLike | None = None, train: bool = True, download: bool = True,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> CIFAR10:
    """CIFAR-10 training (`train=True`) or test set as a `Dataset` with `.classes`.

    Looks in `root`, else $SACNN_DATA_DIR, else `<repo>/data`, for `cifar-10-batches-py/`. When the
    files are missing and `download` is True it downloads them through torchvision. An existing folder
    is read even when its md5 sums are not the official ones (offline copies, cluster mirrors).
    """
    root = resolve_data_dir(root)
    folder = root / CIFAR10_FOLDER
    needed = [folder / n for n in (TRAIN_FILES if train else TEST_FILES)]
    if not all(p.is_file() for p in needed):
        error = None
        if download:
            try:
                _download(root)
            except Exception as e:  # no network, DNS failure, HTTP error, bad archive
                error = e
        if not all(p.is_file() for p in needed):
            missing = ", ".join(p.name for p in needed if not p.is_file())
            why = f"the download failed ({type(error).__name__}: {error})" if error else "download=False"
            raise CIFAR10NotFoundError(
                f"CIFAR-10 not found: looked in {folder} (missing {missing}) and {why}. "
                f"Download {CIFAR10_URL} and unpack it into {root}, or point the environment variable "
                f"{DATA_DIR_ENV} (or root=...) at a folder that holds {CIFAR10_FOLDER}/") from error
    return CIFAR10(folder, train=train, transform=transform)
