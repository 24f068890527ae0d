"""Data as whole tensors (`ImageSet`): CIFAR-10 from the official python layout without trusting pickle,
notebook 10's long-range task, a recipe's splits, and augmentation on the training device."""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .runtime import memory_format

if TYPE_CHECKING:
    from .recipes import Recipe

log = logging.getLogger(__name__)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
DATA_DIR_ENV = "SACNN_DATA_DIR"
REPO_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
# Per-channel mean and std of the training images in 0..255 (0.4914, ... x 255); `load_cifar10` rounds them to 0.1.
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
    """Loads only numpy arrays and plain data: any other global (os.system, eval, ...) is refused before it runs."""

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


class ImageSet(Dataset):
    """Images and labels as whole tensors: the one container for every data set in the series.

    images: N x C x H x W uint8 (0..255); labels: N int64; classes: names, `classes[label]`; source: where the
    images came from; mean, std: per channel in 0..255, for `normalise` (from the images when not given). Further
    keywords: per-image tensors kept as attributes (the long-range task's `marks`), indexed along by `subset`."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], source: str = "",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 **per_image: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"ImageSet images must be an N x C x H x W uint8 tensor (0..255), got "
                             f"{images.dim()}-D {images.dtype} with shape {tuple(images.shape)}")
        labels = torch.as_tensor(labels, dtype=torch.int64)
        for name, t in {"labels": labels, **per_image}.items():
            if len(t) != len(images):
                raise ValueError(f"ImageSet has {len(images)} images but {len(t)} {name}; give one per image")
        self.images, self.labels, self.classes, self.source = images, labels, list(classes), source
        if mean is None or std is None:
            x = images.float()
            mean = x.mean(dim=(0, 2, 3)).tolist() if len(images) else [0.0] * images.shape[1]
            std = (x.std(dim=(0, 2, 3)).clamp_min(1.0).tolist() if len(images) > 1 else [1.0] * images.shape[1])
        self.mean, self.std = [float(m) for m in mean], [float(v) for v in std]
        self.per_image = list(per_image)
        for name, t in per_image.items():
            setattr(self, name, t)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """One float image in [0, 1] and its label (so a `DataLoader` can read the set too)."""
        return self.images[i].float() / 255, int(self.labels[i])

    def __repr__(self) -> str:
        return (f"ImageSet({len(self)} images {tuple(self.images.shape[1:])}, {len(self.classes)} classes: "
                f"{self.source})")

    def subset(self, index: torch.Tensor | slice, source: str | None = None) -> ImageSet:
        """The images (and labels, per-image tensors) at `index`, with the same classes and statistics."""
        return ImageSet(self.images[index], self.labels[index], self.classes,
                        self.source if source is None else source, self.mean, self.std,
                        **{name: getattr(self, name)[index] for name in self.per_image})


def _read_cifar10_folder(folder: Path, train: bool) -> ImageSet:
    files = [folder / name for name in (TRAIN_FILES if train else TEST_FILES)]
    images, labels = [], []
    for path in files:
        x, y = read_batch(path)
        images.append(x)
        labels += y
    official = all(_md5(p) == OFFICIAL_MD5[p.name] for p in files)
    if not official and folder not in _NOTED:  # say it once per folder, at INFO level
        _NOTED.add(folder)
        log.info("%s: md5 sums differ from the official CIFAR-10 files (an offline copy?); read anyway", folder)
    kind = "official files" if official else "an offline copy (md5 sums differ from the official files)"
    data = ImageSet(torch.from_numpy(np.concatenate(images)), torch.tensor(labels), CIFAR10_CLASSES,
                    f"{len(labels)} {'training' if train else 'test'} images from {folder}: {kind}",
                    # the training set's statistics, rounded to 0.1 as the shipped weights were trained with
                    mean=[round(m, 1) for m in CIFAR10_MEAN], std=[round(v, 1) for v in CIFAR10_STD])
    data.official_md5 = official
    return data


def load_cifar10(root: str | os.PathLike | None = None, train: bool = True, download: bool = True) -> ImageSet:
    """CIFAR-10's training (50,000 images) or test set (10,000) from `root`, else $SACNN_DATA_DIR, else `<repo>/data`;
    downloaded through torchvision when missing and `download`. Offline copies with other md5 sums are read too."""
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
    return _read_cifar10_folder(folder, train)


# === A synthetic task that needs long-range attention (notebook 10) ================================

# Eight colours far apart from each other (RGB 0..255); `make_long_range` uses the first `num_colours`.
LONG_RANGE_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
                      (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230)]
LONG_RANGE_CLASSES = ["different", "same"]


def make_long_range(n: int, seed: int = 0, image_size: int = 12, mark_size: int = 2, min_distance: int = 8,
                    max_distance: int | None = None, num_colours: int = 6, noise: int = 24) -> ImageSet:
    """The "same colour?" task: two `mark_size` squares in palette colours on dark noise (0..`noise`), label 1
    when their colours are the same (exactly ceil(n/2) images), else 0. The marks' top-left pixels are
    `min_distance`..`max_distance` apart (Chebyshev), the pair drawn uniformly from all pairs that qualify.
    Per-image tensors: `marks` (N x 2 x 2, top-left (y, x)), `colours` (N x 2 palette indices), `distances` (N).
    L 3x3 convs see a pixel of both marks only if distance - mark_size + 1 <= 2L (`LongRangeCNN.receptive_field`):
    the defaults are out of reach at depth 3 (notebook 10). Deterministic: one `torch.Generator` from `seed`."""
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
    source = (f"{n} synthetic long-range images generated in memory (seed {seed}, {image_size}x{image_size}, "
              f"{mark_size}x{mark_size} marks, distance {lo}..{max_distance}, {num_colours} colours)")
    return ImageSet(images, targets.long(), LONG_RANGE_CLASSES, source, marks=marks, colours=colours,
                    distances=(marks[:, 0] - marks[:, 1]).abs().amax(dim=1))


def load_long_range(data_dir: str | os.PathLike | None = None, download: bool = True, train_size: int = 10_000,
                    test_size: int = 2_000, **params: Any) -> tuple[ImageSet, ImageSet]:
    """Notebook 10's task in memory: training images from seed 0, test images from seed 1; the test set carries
    the training set's mean and std. `data_dir` and `download` are unused (the signature of `DATASETS`)."""
    train = make_long_range(train_size, seed=0, **params)
    test = make_long_range(test_size, seed=1, **params)
    test.mean, test.std = train.mean, train.std
    return train, test


# The data sets the training command knows, by name: name -> function(data_dir, download) -> (train, test).
DATASETS: dict[str, Callable[..., tuple[ImageSet, ImageSet]]] = {
    "cifar10": lambda data_dir, download: (load_cifar10(data_dir, True, download),
                                           load_cifar10(data_dir, False, download)),
    "long-range": load_long_range,
}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = True
                 ) -> tuple[ImageSet, ImageSet]:
    """(training set, test set) of a data set in `DATASETS`."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](data_dir, download=download)


def split_data(train: ImageSet, test: ImageSet, val_size: int, train_limit: int | None = None,
               test_limit: int | None = None, split_seed: int = 0) -> dict[str, ImageSet]:
    """{"train", "val", "test"}: `val_size` training images held out (the same for a `split_seed`), at most
    `train_limit` of the rest kept for training and the first `test_limit` test images."""
    n = len(train)
    if not 0 <= val_size < n:
        raise ValueError(f"val_size={val_size} images held out for validation, but the training set has only "
                         f"{n}; hold out fewer")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    val, rest = order[:val_size], order[val_size:]
    if train_limit is not None:
        rest = rest[:train_limit]
    return {"train": train.subset(rest, f"{len(rest)} of {train.source}"),
            "val": train.subset(val, f"{len(val)} held out of {train.source}"),
            "test": test if test_limit is None else test.subset(slice(0, test_limit),
                                                                f"the first {test_limit} of {test.source}")}


def normalise(images: torch.Tensor, mean: torch.Tensor | Sequence[float],
              std: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Per channel (x - mean) / std, the package's one normalisation: uint8 becomes float32 (mean, std in 0..255
    units); float images keep their dtype and units (airbench's 0..1 images in float16). Lists or C x 1 x 1."""
    x = images if images.is_floating_point() else images.float()
    mean, std = (torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(-1, 1, 1) for v in (mean, std))
    return (x - mean) / std


def draw_augmentation(n: int, translate: int = 2, flip: bool = True, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random offsets dy, dx in 0..2*translate and mirror flags for `n` images, on `generator`'s device (else CPU)."""
    device = generator.device if generator is not None else torch.device("cpu")
    dy = dx = torch.zeros(n, dtype=torch.int64, device=device)
    if translate > 0:
        dy = torch.randint(0, 2 * translate + 1, (n,), generator=generator, device=device)
        dx = torch.randint(0, 2 * translate + 1, (n,), generator=generator, device=device)
    mirror = (torch.rand(n, generator=generator, device=device) < 0.5) if flip else torch.zeros(
        n, dtype=torch.bool, device=device)
    return dy, dx, mirror


def shift_and_flip(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, mirror: torch.Tensor,
                   translate: int = 2) -> torch.Tensor:
    """Zero-pad each image by `translate`, crop H x W back out at offset (dy, dx), mirror where `mirror`."""
    b, c, h, w = images.shape
    dev = images.device
    dy, dx, mirror = dy.to(dev), dx.to(dev), mirror.to(dev)  # no copy when drawn on the same device
    if translate > 0:
        padded = F.pad(images, (translate,) * 4)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, :, None]  # B x H x 1
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, :]  # B x 1 x W
        # advanced indexing puts the broadcast B x H x W axes first: B x H x W x C -> B x C x H x W
        images = padded[torch.arange(b, device=dev)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
    return images.contiguous(memory_format=memory_format(dev))


def augment(images: torch.Tensor, translate: int = 2, flip: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crops after zero-padding by `translate` and, when `flip`, mirrors with probability 1/2, of a
    B x C x H x W batch (uint8 stays uint8), as tensor operations on the images' device."""
    dy, dx, mirror = draw_augmentation(len(images), translate, flip, generator)
    return shift_and_flip(images, dy, dx, mirror, translate)


def load_recipe_data(recipe: Recipe, data_dir: str | None = None, download: bool = True) -> dict[str, ImageSet]:
    """The recipe's data set, split as it trains on it (`load_dataset`, then `split_data`)."""
    train, test = load_dataset(recipe.dataset, data_dir, download=download)
    return split_data(train, test, recipe.val_size, recipe.train_limit, recipe.test_limit)
