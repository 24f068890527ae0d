"""CIFAR-10 that loads offline: the official python layout, read without trusting pickle."""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Callable

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
# Per-channel mean and standard deviation of the CIFAR-10 training images in 0..255 units (the usual
# 0.4914, 0.4822, 0.4465 and 0.2470, 0.2435, 0.2616 times 255; divide by 255 for images in 0..1).
# Training normalises with them rounded to 0.1 (`training.load_cifar10_tensors`).
CIFAR10_MEAN = (125.307, 122.961, 113.8575)
CIFAR10_STD = (62.985, 62.0925, 66.708)
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
            why = (f"the download failed ({type(error).__name__}: {error})" if error
                   else "nothing was downloaded (download=False)")
            fetch = ("" if error else "; or, with network access, call sacnn_helpers.load_cifar10(download=True) "
                     "from Python, which downloads it through torchvision")
            raise CIFAR10NotFoundError(
                f"CIFAR-10 not found: looked in {folder} (missing {missing}) and {why}. To get it: download "
                f"{CIFAR10_URL} and unpack it into {root} (the archive holds {CIFAR10_FOLDER}/); or put an "
                f"existing {CIFAR10_FOLDER}/ folder into a data folder and point the environment variable "
                f"{DATA_DIR_ENV} (or root=..., or --data-dir of the training command) at that folder{fetch}"
            ) from error
    return CIFAR10(folder, train=train, transform=transform)


# === A synthetic task that needs long-range attention (notebook 08) ================================

# Eight colours far apart from each other (RGB 0..255); `make_long_range` uses the first `num_colours`.
LONG_RANGE_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
                      (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230)]
LONG_RANGE_CLASSES = ["different", "same"]


class LongRangeImages(Dataset):
    """Images with two coloured square marks; label 1 if the marks have the same colour, else 0.

    Attributes: `images` (N x 3 x H x W uint8), `targets` (N int64, 0 = different, 1 = same),
    `marks` (N x 2 x 2 int64: for each mark the (y, x) of its top-left pixel), `colours` (N x 2 int64
    indices into `LONG_RANGE_PALETTE`), `distances` (N int64: Chebyshev distance between the two marks'
    top-left pixels, max(|dy|, |dx|)), `classes`, `params` (the arguments that made it), `source`.
    Items are (3 x H x W float tensor in [0, 1], label), like `load_cifar10`'s. Made by `make_long_range`;
    the constructor takes the attributes of the same names and computes `distances` from `marks`.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, marks: torch.Tensor,
                 colours: torch.Tensor, params: dict[str, Any]) -> None:
        self.images, self.targets, self.marks, self.colours, self.params = images, targets, marks, colours, params
        self.distances = (marks[:, 0] - marks[:, 1]).abs().amax(dim=1)
        self.classes = list(LONG_RANGE_CLASSES)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].float() / 255, int(self.targets[i])

    @property
    def source(self) -> str:
        """One line saying how the images were made (seed, sizes, distances, colours), for a notebook to print."""
        p = self.params
        return (f"{len(self)} synthetic long-range images generated in memory (seed {p['seed']}, "
                f"{p['image_size']}x{p['image_size']}, {p['mark_size']}x{p['mark_size']} marks, "
                f"distance {p['min_distance']}..{p['max_distance']}, {p['num_colours']} colours)")


def make_long_range(n: int, seed: int = 0, image_size: int = 12, mark_size: int = 2, min_distance: int = 6,
                    max_distance: int | None = None, num_colours: int = 6, noise: int = 24) -> LongRangeImages:
    """Generate the "same colour?" data set: two square marks at random positions, far apart.

    Each image is a dark background (uniform noise 0..`noise` per pixel and channel) with two
    `mark_size` x `mark_size` squares painted in palette colours. The label is 1 when the two colours
    are the same, 0 when they differ; exactly half the images (n // 2 rounded up) are "same". The
    marks' top-left pixels are `min_distance`..`max_distance` apart in Chebyshev distance
    (max(|dy|, |dx|)); the pair of positions is drawn uniformly from all pairs that qualify. Marks
    never overlap (the distance is at least `mark_size`).

    Why it needs long range: a stack of L 3x3 convolutions (no pooling) sees a (2L+1)-pixel window,
    so one unit sees pixels of both marks only if distance + mark_size <= 2L + 1. Beyond that, every
    feature depends on one mark only, and a global average pool + linear head adds the two marks'
    contributions: it cannot tell "same" from "different" (see notebook 08).

    Deterministic: the same arguments give the same tensors (one `torch.Generator` seeded with `seed`).
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of images, got {n}")
    if not 2 <= num_colours <= len(LONG_RANGE_PALETTE):
        raise ValueError(f"num_colours must be 2..{len(LONG_RANGE_PALETTE)} (the palette's size), got {num_colours}")
    if not 0 <= noise <= 255:
        raise ValueError(f"noise is the background's largest value, 0..255; got {noise}")
    if not 1 <= mark_size < image_size:
        raise ValueError(f"mark_size must be 1..image_size-1 = {image_size - 1}, got {mark_size}")
    max_distance = image_size - mark_size if max_distance is None else max_distance
    lo = max(min_distance, mark_size)
    g = torch.Generator().manual_seed(seed)
    side = image_size - mark_size + 1  # top-left positions per axis
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    positions = torch.stack([ys.flatten(), xs.flatten()], dim=1)  # P x 2
    dist = (positions[:, None] - positions[None]).abs().amax(dim=-1)  # P x P
    pairs = ((dist >= lo) & (dist <= max_distance)).nonzero()
    if len(pairs) == 0:
        raise ValueError(f"no two {mark_size}x{mark_size} marks fit {lo}..{max_distance} pixels apart in a "
                         f"{image_size}x{image_size} image (the largest possible distance is "
                         f"{image_size - mark_size}); lower min_distance or enlarge image_size")
    pick = pairs[torch.randint(len(pairs), (n,), generator=g)]
    marks = torch.stack([positions[pick[:, 0]], positions[pick[:, 1]]], dim=1)  # N x 2 x 2
    targets = torch.randperm(n, generator=g) < (n + 1) // 2  # exactly ceil(n/2) "same", shuffled
    first = torch.randint(num_colours, (n,), generator=g)
    shift = torch.randint(1, num_colours, (n,), generator=g)  # a different colour, uniform over the others
    colours = torch.stack([first, torch.where(targets, first, (first + shift) % num_colours)], dim=1)
    images = (torch.randint(0, noise + 1, (n, 3, image_size, image_size), generator=g, dtype=torch.uint8)
              if noise else torch.zeros(n, 3, image_size, image_size, dtype=torch.uint8))
    palette = torch.tensor(LONG_RANGE_PALETTE, dtype=torch.uint8)
    offsets = torch.arange(mark_size)
    rows = torch.arange(n)[:, None, None]
    for m in range(2):  # paint mark m of every image at once
        yy = (marks[:, m, 0, None] + offsets)[:, :, None]  # N x s x 1
        xx = (marks[:, m, 1, None] + offsets)[:, None, :]  # N x 1 x s
        images.permute(0, 2, 3, 1)[rows, yy, xx] = palette[colours[:, m]][:, None, None, :]
    params = dict(n=n, seed=seed, image_size=image_size, mark_size=mark_size, min_distance=lo,
                  max_distance=max_distance, num_colours=num_colours, noise=noise)
    return LongRangeImages(images, targets.long(), marks, colours, params)
