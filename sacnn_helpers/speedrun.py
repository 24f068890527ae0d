"""The `gpu` recipe: airbench94's training (Keller Jordan, github.com/KellerJordan/cifar10-airbench; PyPI `airbench`
0.1.8), 94 % on CIFAR-10 in about 4 s on an A100, run on any device. What decides the result is airbench's: its
hyperparameters (`hyp`), network layers, loader iteration and lookahead are imported, and the trainer below follows
its `train` line for line (decoupled lr and weight decay, BatchNorm biases at 64x lr, the 0.2 -> 1 -> 0.07 schedule,
lookahead every 5 steps, the whitening bias trained for 3 epochs, TTA level 2). Ours: the attention layer's score
parameters in their own group (10x lr, no decay), the seed reset before the first batch (runs with and without
attention see the same batches), and float32 on the CPU and MPS. `tests/test_speedrun.py` checks it against airbench."""
from __future__ import annotations

import copy
import dataclasses
import time
from math import ceil
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from airbench.lib_airbench94 import hyp
from airbench.utils import CifarLoader, LookaheadState  # airbench's own, device-agnostic code

from . import runtime
from .analysis import predict
from .attention import SelfAttention, score_parameters
from .data import CIFAR10_MEAN, CIFAR10_STD, normalise
from .models import Airbench94Net, init_whitening_conv

if TYPE_CHECKING:
    from .data import ImageSet
    from .recipes import Recipe

HYP: dict[str, Any] = copy.deepcopy(hyp)  # airbench94's own (lr and weight decay per 1,024 examples), copied
# in 0..1: our CIFAR-10 mean and std / 255, exactly airbench's (0.4914, 0.4822, 0.4465) and (0.2470, 0.2435, 0.2616)
MEAN_01, STD_01 = [m / 255 for m in CIFAR10_MEAN], [s / 255 for s in CIFAR10_STD]


def compute_dtype(device: torch.device) -> torch.dtype:
    """float16 on CUDA (airbench's choice: the whole network but BatchNorm), float32 on the CPU and MPS."""
    return torch.float16 if device.type == "cuda" else torch.float32


def prepare_net(model: nn.Module, device: torch.device, dtype: torch.dtype | None = None) -> nn.Module:
    """The network on `device` as airbench puts it: `compute_dtype` (or `dtype`), channels_last, BatchNorm in
    float32. Ours: attention stays float32 too (input cast up, output back): a float16 log-temperature at
    log 10 = 2.30 is spaced 0.002 apart, so every update, smaller than 0.001, would round away."""
    model = model.to(device, dtype=dtype or compute_dtype(device), memory_format=runtime.memory_format(device))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.float()
        if isinstance(m, SelfAttention):
            m.float()
            if not hasattr(m, "_float32_hooks"):  # once, however often the network is prepared
                m._float32_hooks = (m.register_forward_pre_hook(_attention_input_to_float32),
                                    m.register_forward_hook(_attention_output_to_input_dtype))
    return model


def _attention_input_to_float32(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    module._input_dtype = args[0].dtype
    return (args[0].float(), *args[1:])


def _attention_output_to_input_dtype(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    if isinstance(output, tuple):  # return_attention=True: (output, weights)
        return (output[0].to(module._input_dtype), *output[1:])
    return output.to(module._input_dtype)


# --- data: the whole set on the device, augmented in whole-tensor operations -------------------------

def to_float_images(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 N x C x H x W -> the device's dtype in 0..1, channels_last (airbench's `CifarLoader.images`)."""
    x = images.to(device)
    x = x.half() if compute_dtype(device) == torch.float16 else x.float()
    return (x / 255).to(memory_format=runtime.memory_format(device))


class Loader(CifarLoader):
    """airbench's `CifarLoader` (its `__iter__`: normalise, flip each image at random and pad once; per epoch a random
    crop of each, all mirrored on odd epochs, shuffled, full batches only), fed from tensors on any device."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, translate: int = 2,
                 flip: bool = True) -> None:
        self.epoch = 0  # first: CifarLoader lets images and labels be set only before epoch 1
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.aug = dict(flip=flip, translate=translate)
        self.drop_last, self.shuffle, self.altflip, self.proc_images = True, True, True, {}

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """airbench's normalisation of 0..1 images, in their own dtype (what its torchvision `Normalize` does)."""
        return normalise(images, MEAN_01, STD_01)


def make_optimizer(model: nn.Module, batch_size: int, lr: float, momentum: float, weight_decay: float,
                   bias_scaler: float, attention_lr_scale: float = 10.0) -> torch.optim.SGD:
    """airbench's SGD-Nesterov, decoupled (lr and weight decay per 1,024 examples), BatchNorm biases at
    `bias_scaler` x lr; plus our group for the attention score parameters (`attention_lr_scale` x lr, no decay)."""
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr = lr / kilostep_scale  # PyTorch's SGD learning rate
    wd = weight_decay * batch_size / kilostep_scale
    lr_biases = lr * bias_scaler
    qk, tables = score_parameters(model)
    scores = qk | tables
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    norm_biases = [p for k, p in named if "norm" in k]
    others = [p for k, p in named if "norm" not in k and p not in scores]
    groups = [dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
              dict(params=others, lr=lr, weight_decay=wd / lr)]
    if scores:
        groups.append(dict(params=[p for k, p in named if p in scores], lr=lr * attention_lr_scale,
                           weight_decay=0.0))
    return torch.optim.SGD(groups, momentum=momentum, nesterov=True)


def triangle(steps: int, start: float = 0, end: float = 0, peak: float = 0.5) -> torch.Tensor:
    """Piecewise-linear schedule over steps + 1 points: `start` -> 1 at `peak` x steps -> `end`."""
    xp = torch.tensor([0, int(peak * steps), steps])
    fp = torch.tensor([start, 1, end])
    x = torch.arange(1 + steps)
    m = (fp[1:] - fp[:-1]) / (xp[1:] - xp[:-1])
    b = fp[:-1] - (m * xp[:-1])
    indices = torch.clamp(torch.sum(torch.ge(x[:, None], xp[None, :]), 1) - 1, 0, len(m) - 1)
    return m[indices] * x + b[indices]


def train94(model: nn.Module, loader: Loader, epochs: float = HYP["opt"]["train_epochs"],
            label_smoothing: float = HYP["opt"]["label_smoothing"], lr: float = HYP["opt"]["lr"],
            bias_scaler: float = HYP["opt"]["bias_scaler"], momentum: float = HYP["opt"]["momentum"],
            weight_decay: float = HYP["opt"]["weight_decay"],
            whiten_bias_epochs: int = HYP["opt"]["whiten_bias_epochs"], attention_lr_scale: float = 10.0,
            progress: bool = False, epoch_end: Callable[[nn.Module], dict[str, Any]] | None = None,
            peak: float = 0.23) -> list[dict[str, Any]]:
    """airbench94's `train` on a `prepare_net`-ed `model` whose `model[0]` is the whitening conv (set here from
    5,000 images), drawing random numbers in airbench's order. One row per epoch: the last batch's mean loss,
    the seconds of its steps, and what `epoch_end(model)` adds."""
    from tqdm.auto import tqdm
    device = loader.images.device
    total_steps = ceil(len(loader) * epochs)
    if total_steps < 1:
        raise ValueError(f"airbench94's training takes full batches only: {len(loader.images)} training images "
                         f"give no batch of {loader.batch_size}; use more images or a smaller batch_size")
    optimizer = make_optimizer(model, loader.batch_size, lr, momentum, weight_decay, bias_scaler,
                               attention_lr_scale)
    schedule = triangle(total_steps, start=0.2, end=0.07, peak=peak)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: schedule[i])
    alpha_schedule = 0.95 ** 5 * (torch.arange(total_steps + 1) / total_steps) ** 3
    lookahead = LookaheadState(model)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction="none")
    init_whitening_conv(model[0], loader.normalize(loader.images[:5000]))
    bar = tqdm(total=total_steps, desc="airbench94 steps", disable=not progress, dynamic_ncols=True)
    history, step = [], 0
    for epoch in range(ceil(epochs)):
        runtime.synchronize(device)
        start = time.perf_counter()
        model[0].bias.requires_grad = epoch < whiten_bias_epochs
        model.train()
        for inputs, labels in loader:
            outputs = model(inputs)
            loss = loss_fn(outputs, labels).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            bar.update()
            if step % 5 == 0:
                lookahead.update(model, decay=alpha_schedule[step].item())
            if step >= total_steps:
                lookahead.update(model, decay=1.0)
                break
        runtime.synchronize(device)
        seconds = time.perf_counter() - start
        row = dict(epoch=epoch + 1, train_loss=loss.item() / loader.batch_size, step_seconds=seconds)
        history.append(dict(row, **(epoch_end(model) if epoch_end is not None else {})))
    bar.close()
    return history


def fit_airbench94(model: nn.Module, data: dict[str, ImageSet], recipe: Recipe, device: torch.device, seed: int = 0,
                   progress: bool = True, epoch_end: Callable[[nn.Module, torch.Tensor], dict[str, Any]] | None = None
                   ) -> tuple[list[dict[str, Any]], float, float, dict[str, Any]]:
    """What `fit` runs for the `gpu` recipe: airbench94's training of `model` (an `Airbench94Net`) on all of
    `data["train"]`, scored on `data["test"]` with TTA level 2. The global generator is reset from `seed` before the
    first batch, so runs with and without attention see the same batches. `epoch_end(model, probe)`: what `fit` logs
    after every epoch, on 256 normalised training images. Uses the recipe's `lr`, `momentum`, `weight_decay`
    (airbench's decoupled values), `warmup` (where the schedule peaks), `label_smoothing`, `batch_size`, `epochs`,
    `translate`, `flip`, `attention_lr_scale`, and refuses `fit`'s own switches. Returns (history, test loss, test
    accuracy, airbench-specific result entries); the model is left in float32, in eval mode."""
    if runtime.world_size() > 1:
        raise RuntimeError("the gpu recipe (airbench94's training) runs in one process; launch it without torchrun")
    if not isinstance(model, Airbench94Net):
        raise TypeError(f"the gpu recipe trains an Airbench94Net (airbench94's network), got {type(model).__name__}: "
                        f"build it with build_recipe_model(get_recipe('gpu'), train) or leave out --model")
    defaults = {f.name: f.default for f in dataclasses.fields(recipe)}  # the gpu recipe leaves them unset
    changed = [f for f in ("amp", "compile", "flip_test", "qk_weight_decay", "channels_last")
               if getattr(recipe, f) != defaults[f]]
    if changed:
        raise ValueError(f"the gpu recipe runs airbench94's own loop, which has no {', '.join(changed)} switch "
                         f"(float16 on CUDA, mirror-and-shift TTA, airbench's optimiser groups): leave them unset")
    train, test = data["train"], data["test"]
    model = prepare_net(model, device)
    loader = Loader(to_float_images(train.images, device), train.labels.to(device), recipe.batch_size,
                    recipe.translate, recipe.flip)
    probe = loader.normalize(loader.images[:256])
    torch.manual_seed(seed)
    history = train94(model, loader, epochs=recipe.epochs, label_smoothing=recipe.label_smoothing, lr=recipe.lr,
                      momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                      attention_lr_scale=recipe.attention_lr_scale, progress=progress, peak=recipe.warmup,
                      epoch_end=None if epoch_end is None else lambda net: epoch_end(net, probe))
    for row in history:  # no validation split: the keys `fit` logs, empty
        row.update(val_loss=None, val_accuracy=None, seconds=row["step_seconds"])
    logits = predict(model, loader.normalize(to_float_images(test.images, device)), batch_size=2000,
                     tta_level=HYP["net"]["tta_level"])
    test_acc = (logits.argmax(1) == test.labels).sum().item() / len(test)
    test_loss = F.cross_entropy(logits, test.labels).item()
    model.float().eval()  # float32 afterwards, so every helper (predict, the explorer) can feed it float32 images
    images = ceil(len(loader) * recipe.epochs) * loader.batch_size
    extra = dict(trainer="airbench94", dtype=str(compute_dtype(device)), tta_level=HYP["net"]["tta_level"],
                 images_per_second=images / sum(h["step_seconds"] for h in history), val_images=0,
                 mean=list(CIFAR10_MEAN), std=list(CIFAR10_STD))
    return history, test_loss, test_acc, extra
