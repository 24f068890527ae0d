"""Training: device choice, seeding, checkpoints, dataset and recipe registries, augmentation, the loop `fit`."""
from __future__ import annotations

import inspect
import itertools
import math
import os
import pickle
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .analysis import attention_report
from .models import MODELS, build_model

CHECKPOINT_FORMAT = "sacnn-checkpoint-v1"
SMOKE_ENV = "SACNN_SMOKE"


def is_smoke_run() -> bool:
    """True when $SACNN_SMOKE is set (CI and the test command): notebooks shrink data and epochs."""
    return os.environ.get(SMOKE_ENV, "") not in ("", "0", "false", "False")


def get_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; other names are checked and returned."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device 'mps' was asked for but Apple MPS is not available; use 'auto' or 'cpu'")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}: expected auto, cpu, cuda or mps")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class CheckpointError(ValueError):
    """A file is not one of our checkpoints, or holds weights for another architecture."""


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **meta: Any) -> None:
    """Save `model`'s weights with its class, its `config` (if any) and `meta` (epoch, optimizer, ...).

    Written to a temporary file and renamed, so an interrupted save never leaves half a checkpoint.
    Values in `meta` must be tensors, numbers, strings, lists or dicts of them (weights_only loading).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": CHECKPOINT_FORMAT, "architecture": type(model).__name__,
            "config": getattr(model, "config", {}), "state_dict": model.state_dict(), "meta": meta}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file safely (`weights_only=True`) and check that it is ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path} is not a sacnn_helpers checkpoint, or is corrupt or unsafe, and was "
                              f"not loaded ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a sacnn_helpers checkpoint (no '{CHECKPOINT_FORMAT}' marker); "
                              f"save one with save_checkpoint(path, model)")
    return blob


def load_checkpoint(path: str | os.PathLike, model: nn.Module) -> dict[str, Any]:
    """Load weights saved by `save_checkpoint` into `model`; returns the saved `meta`.

    Raises `CheckpointError` for a file that is not our checkpoint or was saved from another
    architecture or configuration.
    """
    return _load_blob(read_checkpoint(path), path, model)


def _load_blob(blob: dict[str, Any], path: str | os.PathLike, model: nn.Module) -> dict[str, Any]:
    """Load the weights of `blob` (from `read_checkpoint(path)`) into `model` after checking that its
    architecture and config match; returns the saved `meta`. `path` is only named in errors."""
    arch, config = type(model).__name__, getattr(model, "config", {})
    if blob["architecture"] != arch or blob["config"] != config:
        raise CheckpointError(f"{path} holds a {blob['architecture']} with config {blob['config']}, "
                              f"but the model is a {arch} with config {config}; build the model the "
                              f"checkpoint was saved from")
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit this {arch}: {e}") from e
    return blob["meta"]


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint was saved from, load its weights; returns (model in eval mode, meta)."""
    blob = read_checkpoint(path)
    model = build_model(blob["architecture"], **blob["config"])
    meta = _load_blob(blob, path, model)
    return model.to(device).eval(), meta


# === Datasets ======================================================================================
# A dataset is a function `loader(data_dir) -> ImageData` registered under a name; `prepare_data` then
# holds out the validation split and takes the subsets a recipe asks for. Any dataset whose images fit
# in memory as one uint8 tensor can plug in:
#
#     @register_dataset("my-data")
#     def load_my_data(data_dir: str | None = None) -> ImageData:
#         return ImageData(train_images=..., train_labels=..., test_images=..., test_labels=...,
#                          classes=[...], source="where it came from")
#
#     register_recipe(Recipe(name="cpu", dataset="my-data", model_config={...}, epochs=...))


@dataclass
class ImageData:
    """A dataset held as whole tensors: images N x C x H x W uint8 (0..255), labels N int64.

    `mean` and `std` are per-channel statistics in 0..255 units used to normalise batches; left as
    None they are computed from the training images. `val_*` is filled in by `prepare_data`.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    source: str = ""
    mean: list[float] | None = None
    std: list[float] | None = None
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("train_images", "test_images"):
            t = getattr(self, name)
            if t.dtype != torch.uint8 or t.dim() != 4:
                raise ValueError(f"ImageData.{name} must be an N x C x H x W uint8 tensor, got "
                                 f"{t.dim()}-D {t.dtype} with shape {tuple(t.shape)}")
        if self.mean is None or self.std is None:
            x = self.train_images.float()
            self.mean = x.mean(dim=(0, 2, 3)).tolist()
            self.std = x.std(dim=(0, 2, 3)).clamp_min(1.0).tolist()


DATASETS: dict[str, Callable[..., ImageData]] = {}


def register_dataset(name: str) -> Callable[[Callable[..., ImageData]], Callable[..., ImageData]]:
    """Decorator: register `loader(data_dir=None) -> ImageData` under `name` (for `--dataset NAME`)."""
    def decorate(loader: Callable[..., ImageData]) -> Callable[..., ImageData]:
        DATASETS[name] = loader
        return loader
    return decorate


@register_dataset("cifar10")
def load_cifar10_tensors(data_dir: str | os.PathLike | None = None, download: bool = False) -> ImageData:
    """CIFAR-10 as whole uint8 tensors (50,000 training and 10,000 test images).

    Normalised with `data.CIFAR10_MEAN` / `CIFAR10_STD` rounded to 0.1 (125.3, 123.0, 113.9 and 63.0, 62.1,
    66.7): the values the shipped weights and the benchmarks were trained with.
    """
    from .data import CIFAR10_MEAN, CIFAR10_STD, load_cifar10
    train = load_cifar10(data_dir, train=True, download=download)
    test = load_cifar10(data_dir, train=False, download=download)
    return ImageData(train.images, train.targets, test.images, test.targets, list(train.classes),
                     source=train.source, mean=[round(m, 1) for m in CIFAR10_MEAN],
                     std=[round(s, 1) for s in CIFAR10_STD])


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> ImageData:
    """Load a registered dataset by name."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](data_dir)


# === Recipes =======================================================================================

@dataclass(frozen=True)
class Recipe:
    """A named training preset for one dataset: model, data sizes, optimiser and schedule.

    Recipes are registered per dataset, `RECIPES[(dataset, name)]`, so `--recipe cpu` can mean
    different settings on different data. Optimiser: SGD with Nesterov momentum; weight decay on
    conv/linear weights only (not on BatchNorm, biases or attention `gamma`); the learning rate rises
    linearly from 0 to `lr` over the first `warmup` fraction of steps and falls linearly back to 0.
    Augmentation: random shifts of up to `translate` pixels (zero-padding, a random crop) and
    horizontal flips, done on uint8 batches on the training device (`augment`).
    """

    name: str
    dataset: str = "cifar10"
    model: str = "AttentionCNN"
    model_config: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    warmup: float = 0.2
    translate: int = 2
    flip: bool = True
    val_size: int = 5000
    train_limit: int | None = None  # use only this many training images (smoke runs)
    test_limit: int | None = None
    flip_test: bool = True  # test-time augmentation: average the logits of the image and its mirror
    qk_weight_decay: bool = True  # False: the query/key weights of attention layers get no weight decay
    attention_lr_scale: float = 1.0  # learning rate of the attention scores' parameters, times lr
    description: str = ""


RECIPES: dict[tuple[str, str], Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    """Add `recipe` to `RECIPES` under (recipe.dataset, recipe.name)."""
    RECIPES[(recipe.dataset, recipe.name)] = recipe
    return recipe


def get_recipe(name: str, dataset: str = "cifar10") -> Recipe:
    """The recipe `name` for `dataset`; a clear error lists the ones that exist."""
    if (dataset, name) not in RECIPES:
        known = sorted(n for d, n in RECIPES if d == dataset)
        raise ValueError(f"no recipe {name!r} for dataset {dataset!r}; recipes for {dataset!r}: "
                         f"{', '.join(known) or 'none'}")
    return RECIPES[(dataset, name)]


register_recipe(Recipe(
    name="cpu", model="AttentionCNN",
    model_config=dict(widths=[32, 64, 128], attention_at=[2], heads=1),
    epochs=6, batch_size=256, lr=0.2,
    description="5-8 minutes on a 2-core CPU: AttentionCNN 32-64-128, attention at 8x8, 6 epochs"))
register_recipe(Recipe(
    name="smoke", model="AttentionCNN",
    model_config=dict(widths=[16, 32, 64], attention_at=[2], heads=1),
    epochs=1, batch_size=64, lr=0.1, val_size=256, train_limit=1024, test_limit=512,
    description="seconds: a tiny subset for one epoch, to check that everything runs (CI)"))


# === Data on the device ============================================================================

def prepare_data(data: ImageData, recipe: Recipe, split_seed: int = 0) -> ImageData:
    """Hold out `recipe.val_size` training images for validation and apply the recipe's limits.

    The split uses its own fixed seed (`split_seed`), so every run and seed validates on the same images.
    """
    n = len(data.train_labels)
    if recipe.val_size >= n:
        raise ValueError(f"recipe {recipe.name!r} holds out val_size={recipe.val_size} images but the "
                         f"training set has only {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    val, train = order[:recipe.val_size], order[recipe.val_size:]
    if recipe.train_limit is not None:
        train = train[:recipe.train_limit]
    test = slice(None) if recipe.test_limit is None else slice(0, recipe.test_limit)
    return replace(data, train_images=data.train_images[train], train_labels=data.train_labels[train],
                   val_images=data.train_images[val], val_labels=data.train_labels[val],
                   test_images=data.test_images[test], test_labels=data.test_labels[test])


def augment(images: torch.Tensor, translate: int = 2, flip: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Random shifts by up to `translate` pixels and random horizontal flips of a uint8 batch.

    images: B x C x H x W (any dtype; uint8 stays uint8). Each image is zero-padded by `translate` and
    cropped back to H x W at a random offset (the classic "random crop with padding"), then mirrored
    with probability 1/2. Pure tensor ops, on whatever device `images` lives on.

    The random offsets and flips are drawn from `generator` (the global CPU RNG when None) on the
    generator's own device, then moved to the images' device: a CPU generator gives the same
    augmentation whichever device the images are on, and a CUDA generator works too.
    """
    b, c, h, w = images.shape
    dev = images.device
    draw = generator.device if generator is not None else torch.device("cpu")
    if translate > 0:
        padded = F.pad(images, (translate,) * 4)
        dy = torch.randint(0, 2 * translate + 1, (b,), generator=generator, device=draw).to(dev)
        dx = torch.randint(0, 2 * translate + 1, (b,), generator=generator, device=draw).to(dev)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, :, None]  # B x H x 1
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, :]  # B x 1 x W
        # advanced indexing puts the broadcast B x H x W axes first: B x H x W x C -> B x C x H x W
        images = padded[torch.arange(b, device=dev)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mirror = (torch.rand(b, generator=generator, device=draw) < 0.5).to(dev)
        images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
    return images.contiguous(memory_format=torch.channels_last)


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 batch -> float32, per-channel (x - mean) / std (mean and std in 0..255 units, C x 1 x 1)."""
    return (images.float() - mean) / std


# === Training ======================================================================================

def attention_gammas(model: nn.Module) -> dict[str, float]:
    """The residual weight `gamma` of every attention layer, by module name (how much attention is used)."""
    from .attention import SelfAttention
    return {name: float(m.gamma.detach()) for name, m in model.named_modules()
            if isinstance(m, SelfAttention) and m.gamma is not None}


def learning_rate(step: int, total_steps: int, peak: float, warmup: float) -> float:
    """Triangular schedule: 0 -> `peak` over the first `warmup` fraction of steps, then linearly to 0."""
    up = max(1, round(warmup * total_steps))
    if step < up:
        return peak * (step + 1) / up
    return peak * max(0.0, (total_steps - step) / max(1, total_steps - up))


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD-Nesterov; weight decay only on weights with 2+ dimensions (convs, linear layers).

    The parameters that shape the attention scores (query/key projections, temperature, position table)
    can get their own learning rate (`recipe.attention_lr_scale` x lr) and, with
    `recipe.qk_weight_decay=False`, no weight decay. `fit` sets each group's lr to the schedule's value
    times the group's `lr_scale`.
    """
    from .attention import attention_layers
    score_params = set()
    for layer in attention_layers(model):
        for p in [*layer.query.parameters(), *layer.key.parameters(), layer.log_temperature,
                  layer.position_table]:
            if p is not None:
                score_params.add(p)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        scores = p in score_params
        decay = p.dim() > 1 and (recipe.qk_weight_decay or not scores)
        groups.setdefault((scores, decay), []).append(p)
    return torch.optim.SGD([{"params": params, "weight_decay": recipe.weight_decay if decay else 0.0,
                             "lr_scale": recipe.attention_lr_scale if scores else 1.0}
                            for (scores, decay), params in groups.items()],
                           lr=recipe.lr, momentum=recipe.momentum, nesterov=True)


def _model_device(model: nn.Module) -> torch.device:
    """The device of `model`'s first parameter (or buffer); the CPU for a model that has neither."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             mean: torch.Tensor | Sequence[float], std: torch.Tensor | Sequence[float], batch_size: int = 500,
             flip: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in 0..1) of `model` on uint8 `images`; `flip` averages mirrored logits.

    Runs in eval mode on the model's device (`images` and `labels` are moved there batch by batch).
    `mean` and `std` are per-channel statistics in 0..255 units (like `ImageData.mean`), given as C x 1 x 1
    tensors or as lists of C numbers.
    """
    model.eval()
    device = _model_device(model)
    mean, std = (torch.as_tensor(v, device=device).reshape(-1, 1, 1) for v in (mean, std))
    total_loss, correct = 0.0, 0
    for i in range(0, len(labels), batch_size):
        x = normalise(images[i:i + batch_size].to(device), mean, std).contiguous(
            memory_format=torch.channels_last)
        y = labels[i:i + batch_size].to(device)
        logits = model(x)
        if flip:
            logits = (logits + model(x.flip(-1))) / 2
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    return total_loss / len(labels), correct / len(labels)


def _machine() -> dict[str, Any]:
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=str(torch.__version__),
                load_average=load)


def _settings(identity: dict[str, Any] | None) -> dict[str, Any] | None:
    """What decides a run's result: the identity saved in a checkpoint, less the recipe's description."""
    if identity is None:
        return None
    recipe = {k: v for k, v in identity.get("recipe", {}).items() if k != "description"}
    return dict(identity, recipe=recipe)


def fit(model: nn.Module, data: ImageData, recipe: Recipe, *, device: str | torch.device = "auto",
        seed: int = 0, epochs: int | None = None, checkpoint: str | os.PathLike | None = None,
        force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train `model` on `data` (from `prepare_data`) with `recipe`; returns the result as a dict.

    (Called `fit` because `sacnn_helpers.train` is the command-line module, `python -m sacnn_helpers.train`.)

    - One `tqdm.auto` bar per epoch shows loss and accuracy; `history` gets one entry per epoch with
      train/val loss and accuracy, the learning rate, seconds, images/s and every attention `gamma`.
    - The test set is evaluated once, after the last epoch.
    - With `checkpoint`, the model, optimizer, epoch (which fixes the position in the learning-rate
      schedule) and history are saved after every epoch. An unfinished checkpoint is resumed from its last
      epoch; a finished one is loaded and its result returned without training again, unless `force=True`.

    Result keys: model, model_config, dataset, recipe, device, epochs, seed, test_accuracy (0..1),
    test_loss, train_seconds (training steps + validation, summed over epochs, this run and any resumed
    part), images_per_second (training images per second of training steps), history, machine, resumed_from.
    """
    from tqdm.auto import tqdm
    device = get_device(device) if isinstance(device, str) else device
    epochs = recipe.epochs if epochs is None else epochs
    if data.val_images is None:
        raise ValueError("data has no validation split; pass it through prepare_data(data, recipe) first")
    identity = dict(recipe=asdict(recipe), seed=seed, epochs=epochs)

    model.to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe)
    n = len(data.train_labels)
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    total_steps = steps_per_epoch * epochs
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if checkpoint is not None and Path(checkpoint).is_file() and not force:
        meta = load_checkpoint(checkpoint, model)
        if _settings(meta.get("identity")) != _settings(identity):
            raise CheckpointError(f"{checkpoint} was saved by another run (recipe, seed or epochs differ); "
                                  f"pass force=True (--force) to overwrite it, or choose another path")
        history = list(meta["history"])
        if meta.get("finished"):
            if progress:
                print(f"reusing the finished checkpoint {checkpoint} (force=True retrains)", file=sys.stderr)
            model.to(device).eval()
            return dict(meta["result"], reused_checkpoint=str(checkpoint))
        optimizer.load_state_dict(meta["optimizer"])
        start_epoch = int(meta["epoch"])
        model.to(device)

    mean = torch.tensor(data.mean, device=device).view(-1, 1, 1)
    std = torch.tensor(data.std, device=device).view(-1, 1, 1)
    train_images, train_labels = data.train_images.to(device), data.train_labels.to(device)
    probe = normalise(data.val_images[:256].to(device), mean, std)  # for the per-epoch attention report

    for epoch in range(start_epoch, epochs):
        # each epoch has its own generator and reseeds the global RNG (dropout and other random layers), so
        # a resumed run shuffles, augments and draws exactly as an unbroken one
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        torch.manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=gen).to(device)
        model.train()
        t0 = time.perf_counter()
        seen, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   leave=True, dynamic_ncols=True)
        for i in bar:
            step = epoch * steps_per_epoch + i
            lr = learning_rate(step, total_steps, recipe.lr, recipe.warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            x = normalise(augment(train_images[idx], recipe.translate, recipe.flip, gen), mean, std)
            y = train_labels[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            if i % 10 == 0 or i == steps_per_epoch - 1:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        step_seconds = time.perf_counter() - t0
        val_loss, val_acc = evaluate(model, data.val_images, data.val_labels, mean, std)
        seconds = time.perf_counter() - t0
        history.append(dict(epoch=epoch + 1, train_loss=loss_sum / seen, train_accuracy=correct / seen,
                            val_loss=val_loss, val_accuracy=val_acc, lr=lr, seconds=seconds,
                            step_seconds=step_seconds, images_per_second=seen / step_seconds,
                            gammas=attention_gammas(model), attention=attention_report(model, probe)))
        if progress:
            bar.write(f"epoch {epoch + 1}/{epochs}: train loss {loss_sum / seen:.3f} acc {correct / seen:.3f}"
                      f" | val loss {val_loss:.3f} acc {val_acc:.3f} | {seconds:.0f} s", file=sys.stderr)
        bar.close()
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, identity=identity, epoch=epoch + 1, history=history,
                            optimizer=optimizer.state_dict(), finished=False)

    test_loss, test_acc = evaluate(model, data.test_images, data.test_labels, mean, std,
                                   flip=recipe.flip_test)
    train_seconds = sum(h["seconds"] for h in history)
    step_seconds_total = sum(h["step_seconds"] for h in history)
    result = dict(model=type(model).__name__, model_config=getattr(model, "config", {}),
                  parameters=sum(p.numel() for p in model.parameters()), dataset=recipe.dataset,
                  recipe=recipe.name, device=str(device), epochs=epochs, seed=seed,
                  test_accuracy=test_acc, test_loss=test_loss, train_seconds=train_seconds,
                  images_per_second=n * len(history) / step_seconds_total,
                  train_images=n, val_images=len(data.val_labels), test_images=len(data.test_labels),
                  data_source=data.source,
                  history=history, machine=_machine(), resumed_from=start_epoch)
    if checkpoint is not None:
        save_checkpoint(checkpoint, model, identity=identity, epoch=epochs, history=history,
                        optimizer=optimizer.state_dict(), finished=True, result=result)
    if progress:
        print(f"test accuracy {test_acc:.4f} after {epochs} epochs, {train_seconds:.0f} s of training",
              file=sys.stderr)
    model.eval()
    return result


def build_recipe_model(recipe: Recipe, data: ImageData | None = None, model: str | None = None,
                       **overrides: Any) -> nn.Module:
    """Build the recipe's model (or registered class `model`, with its defaults) sized for `data`.

    With `data`: `num_classes` is set from its classes, and `image_size` from its (square) images when the
    model's constructor takes an `image_size` argument (`CNNWithSelfAttention`'s Linear layer depends on it).
    `overrides` win over both.
    """
    name = model or recipe.model
    config = dict(recipe.model_config) if name == recipe.model else {}
    if data is not None:
        config.setdefault("num_classes", len(data.classes))
        if name == recipe.model and "in_channels" not in config and data.train_images.shape[1] != 3:
            config["in_channels"] = int(data.train_images.shape[1])
        height, width = data.train_images.shape[-2:]
        if (name in MODELS and "image_size" in inspect.signature(MODELS[name]).parameters
                and "image_size" not in config and height == width):
            config["image_size"] = int(height)
    config.update(overrides)
    return build_model(name, **config)


# === The long-range "same colour?" task (notebook 08) ==============================================

@register_dataset("long-range")
def load_long_range_tensors(data_dir: str | os.PathLike | None = None, train_size: int = 10_000,
                            test_size: int = 2_000, **params: Any) -> ImageData:
    """The synthetic two-marks task (`make_long_range`), generated in memory; `data_dir` is not used.

    Training images come from seed 0, test images from seed 1 (the same task, other images).
    """
    from .data import make_long_range
    train = make_long_range(train_size, seed=0, **params)
    test = make_long_range(test_size, seed=1, **params)
    return ImageData(train.images, train.targets, test.images, test.targets, list(train.classes),
                     source=f"{train.source}; test: {test.source}")


register_recipe(Recipe(
    name="cpu", dataset="long-range", model="LongRangeCNN",
    model_config=dict(depth=3, width=32, attention_after=1),
    epochs=3, batch_size=64, lr=0.05, label_smoothing=0.0, translate=0, flip=True, val_size=1000,
    description="about a minute on a 2-core CPU: LongRangeCNN depth 3 (receptive field 7 px), "
                "attention after block 1, 9,000 12x12 images, 3 epochs"))
register_recipe(Recipe(
    name="smoke", dataset="long-range", model="LongRangeCNN",
    model_config=dict(depth=3, width=8, attention_after=1),
    epochs=1, batch_size=64, lr=0.05, label_smoothing=0.0, translate=0, flip=True, val_size=200,
    train_limit=512, test_limit=256,
    description="seconds: a tiny subset for one epoch, to check that everything runs (CI)"))
