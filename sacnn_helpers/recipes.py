"""Named training presets per data set. No torch here, so --help lists them at once; `models.build_recipe_model`
and `data.load_recipe_data` build what a recipe names."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SMOKE_ENV = "SACNN_SMOKE"

RECIPE_ENV = "SACNN_RECIPE"  # names the recipe a notebook trains with, whatever the device (SACNN_RECIPE=gpu)
# A recipe other than `cpu` in a smoke run: the same settings on a toy subset (full batches for airbench94's loop)
SMOKE_SIZES: dict[str, Any] = dict(train_limit=512, test_limit=256, batch_size=64, epochs=1)


@dataclass(frozen=True)
class Recipe:
    """A training preset for one data set, as `fit` trains it: SGD-Nesterov, weight decay on conv/linear weights only
    (not BatchNorm, biases, `gamma`, nor query/key weights unless `qk_weight_decay`), lr up linearly over the first
    `warmup` fraction of steps, then down to 0; shifts up to `translate` pixels and flips. `amp`: bf16 autocast, None =
    CUDA only. `trainer="airbench94"` (the gpu recipe) trains as airbench does instead (`speedrun`)."""

    name: str
    dataset: str = "cifar10"
    model: str = "AttentionCNN"
    model_config: dict[str, Any] = field(default_factory=dict)
    epochs: float = 10  # whole epochs for `fit`; airbench94 stops part-way into its last (9.9)
    batch_size: int = 256  # the global batch: split over the processes of a torchrun launch
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
    flip_test: bool = True  # average the logits of each image and its mirror, for validation and test alike
    qk_weight_decay: bool = True
    attention_lr_scale: float = 1.0  # learning rate of query/key, temperature and position table, times lr
    amp: bool | None = None
    compile: bool = False
    channels_last: bool = True
    tf32: bool = True
    deterministic: bool = False
    log_every: int = 10  # steps between progress-bar updates (the only time the loss is read back)
    trainer: str = "fit"  # "airbench94": airbench94's own loop (speedrun.py), fed this recipe's lr, momentum, ...
    description: str = ""

    def settings(self) -> dict[str, Any]:
        """The fields that decide a run's result (not description or speed switches), to compare with a checkpoint's."""
        skip = {"description", "log_every", "compile"}
        return {k: v for k, v in self.__dict__.items()
                if k not in skip and not (k == "trainer" and v == "fit")}  # runs saved before `trainer` existed


# The recommended attention on CIFAR-10 (benchmarks/attention_maps.md; notebooks 05, 07): cosine scores with a
# learned temperature, gamma from 0.5 (query/key get a gradient at once), a relative position bias; its score
# parameters: no weight decay, 10x lr (else the position table barely moves). cpu: 12 epochs (6: 83.4 %, 12: 86.5 %).
RECOMMENDED_ATTENTION: dict[str, Any] = dict(qk_norm=True, gamma_init=0.5, position="relative")
RECOMMENDED_TRAINING: dict[str, Any] = dict(qk_weight_decay=False, attention_lr_scale=10.0)

# recipes[dataset][name]: `--recipe cpu` means different settings on different data
RECIPES: dict[str, dict[str, Recipe]] = {
    "cifar10": {
        "cpu": Recipe(
            name="cpu", model="AttentionCNN",
            model_config=dict(widths=[32, 64, 128], attention_at=[2], heads=1, **RECOMMENDED_ATTENTION),
            epochs=12, batch_size=256, lr=0.2, **RECOMMENDED_TRAINING,
            description="4 to 10 minutes on a 2-core CPU: AttentionCNN 32-64-128, attention at 8x8, 12 epochs"),
        "gpu": Recipe(
            name="gpu", model="Airbench94Net", trainer="airbench94",
            model_config=dict(attention_after=2, heads=4, **RECOMMENDED_ATTENTION),
            # airbench94's settings (speedrun.HYP): decoupled lr and weight decay per 1,024 examples; peak at 23 %
            epochs=9.9, batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153, warmup=0.23,
            label_smoothing=0.2, val_size=0, attention_lr_scale=10.0,
            description="airbench94's training on one GPU (seconds; float16 on CUDA), its network with the "
                        "recommended attention layer, 4 heads, on the 7x7 map after group 2; not yet measured "
                        "on a GPU. Optimiser groups, schedule shape and TTA are airbench's (speedrun.py)"),
        "smoke": Recipe(
            name="smoke", model="AttentionCNN",
            model_config=dict(widths=[16, 32, 64], attention_at=[2], heads=1, **RECOMMENDED_ATTENTION),
            epochs=1, batch_size=64, lr=0.1, val_size=256, train_limit=1024, test_limit=512, **RECOMMENDED_TRAINING,
            description="seconds: a tiny subset for one epoch, to check that everything runs (CI)"),
    },
    "long-range": {
        "cpu": Recipe(
            name="cpu", dataset="long-range", model="LongRangeCNN",
            model_config=dict(depth=3, width=32, attention_after=1),
            epochs=3, batch_size=64, lr=0.05, label_smoothing=0.0, translate=0, flip=True, val_size=1000,
            description="about a minute on a 2-core CPU: LongRangeCNN depth 3 (receptive field 7 px), "
                        "attention after block 1, 9,000 12x12 images with marks 8-10 px apart, 3 epochs"),
        "smoke": Recipe(
            name="smoke", dataset="long-range", model="LongRangeCNN",
            model_config=dict(depth=3, width=8, attention_after=1),
            epochs=1, batch_size=64, lr=0.05, label_smoothing=0.0, translate=0, flip=True, val_size=200,
            train_limit=512, test_limit=256,
            description="seconds: a tiny subset for one epoch, to check that everything runs (CI)"),
    },
}


def learning_rate(step: int, total_steps: int, peak: float, warmup: float) -> float:
    """Triangular schedule: 0 -> `peak` over the first `warmup` fraction of steps, then linearly to 0."""
    up = max(1, round(warmup * total_steps))
    if step < up:
        return peak * (step + 1) / up
    return peak * max(0.0, (total_steps - step) / max(1, total_steps - up))


def is_smoke_run() -> bool:
    """True when $SACNN_SMOKE is set (CI and the test command): notebooks shrink data and epochs."""
    return os.environ.get(SMOKE_ENV, "") not in ("", "0", "false", "False")


def get_recipe(name: str, dataset: str = "cifar10", **changes: Any) -> Recipe:
    """The recipe `name` for `dataset`, with any field changed by keyword (a clear error lists the recipes)."""
    if name not in RECIPES.get(dataset, {}):
        known = ", ".join(sorted(RECIPES.get(dataset, {}))) or "none"
        raise ValueError(f"no recipe {name!r} for dataset {dataset!r}; recipes for {dataset!r}: {known}")
    return replace(RECIPES[dataset][name], **changes)


def choose_recipe(device: torch.device, dataset: str = "cifar10") -> Recipe:
    """The recipe a notebook trains with on `device`: `gpu` on CUDA where `dataset` has one, else `cpu`. $SACNN_RECIPE
    forces one on any device (`SACNN_RECIPE=gpu`: how tests run GPU branches on a CPU) unless `dataset` lacks it; an
    unknown name is an error. In a smoke run `smoke` stands for `cpu`, and other recipes shrink to `SMOKE_SIZES`."""
    ours = RECIPES.get(dataset, {})
    forced = os.environ.get(RECIPE_ENV)
    if forced and not any(forced in by_name for by_name in RECIPES.values()):
        known = ", ".join(sorted({n for by_name in RECIPES.values() for n in by_name}))
        raise ValueError(f"${RECIPE_ENV}={forced!r} names no recipe (known: {known}); unset it to choose by device")
    if forced in ours:  # a recipe of another data set only (gpu for long-range) leaves the choice to the device
        name = forced
    else:
        name = "gpu" if device.type == "cuda" and "gpu" in ours else "cpu"
    if not is_smoke_run():
        return get_recipe(name, dataset)
    return get_recipe("smoke", dataset) if name in ("cpu", "smoke") else get_recipe(name, dataset, **SMOKE_SIZES)
