"""CNNs with and without a self-attention layer. Every model takes `num_classes`, `in_channels` and `image_size`,
and keeps its constructor arguments in `self.config` (so a checkpoint can rebuild it)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from .analysis import attention_report, attention_snapshot
from .attention import AttentionPool, SelfAttention

if TYPE_CHECKING:
    from .data import ImageSet
    from .recipes import Recipe


class ReportsAttention:
    """What `fit` logs each epoch: `attention_report` on probe images and the maps of a few fixed test images."""

    def epoch_report(self, probe: torch.Tensor) -> list[dict[str, Any]]:
        return attention_report(self, probe)

    def epoch_snapshot(self, images: torch.Tensor, epoch: int) -> dict[str, Any]:
        """Maps of a few fixed test images after `epoch` epochs (0 = untrained), for the explorer's epoch slider."""
        return attention_snapshot(self, images, epoch)


class CNNWithSelfAttention(ReportsAttention, nn.Module):
    """The written summary's network, attention over pixels (not channels) with a residual gate: conv 3->64, ReLU,
    SelfAttention(64), conv 64->128, ReLU, flatten, Linear(128*32*32); convs 3x3, padding 1. Attention at full 32x32:
    a 1,024 x 1,024 matrix per image and head. `attention=False` swaps it for `nn.Identity`; `heads`, `qk_channels`,
    `residual` go to `SelfAttention`; `image_size` (square images) sets the Linear layer's width."""

    def __init__(self, num_classes: int = 10, attention: bool = True, heads: int = 1,
                 qk_channels: int | None = None, residual: bool = True, in_channels: int = 3,
                 image_size: int = 32) -> None:
        super().__init__()
        self.config = dict(num_classes=num_classes, attention=attention, heads=heads,
                           qk_channels=qk_channels, residual=residual, in_channels=in_channels,
                           image_size=image_size)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
        self.attention = (SelfAttention(64, heads=heads, qk_channels=qk_channels, residual=residual)
                          if attention else nn.Identity())
        self.conv2 = nn.Conv2d(64, 128, kernel_size=3, padding=1)
        self.fc = nn.Linear(128 * image_size * image_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config["image_size"]
        if tuple(x.shape[-2:]) != (size, size):
            h, w = x.shape[-2:]
            fix = (f"build it with image_size={h}" if h == w else
                   f"it takes square images only: resize or crop them to {size}x{size}")
            raise ValueError(f"{type(self).__name__} was built for {size}x{size} images (image_size={size} sets "
                             f"the width of its Linear layer), got {h}x{w} in shape {tuple(x.shape)}; {fix}")
        x = torch.relu(self.conv1(x))
        x = self.attention(x)
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


class CNNWithoutAttention(CNNWithSelfAttention):
    """`CNNWithSelfAttention` with the attention layer left out, for comparisons."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__(num_classes=num_classes, attention=False, in_channels=in_channels, image_size=image_size)
        self.config = dict(num_classes=num_classes, in_channels=in_channels, image_size=image_size)


class AttentionCNN(ReportsAttention, nn.Module):
    """The network the series recommends for real training: downsample first, attend on a small map.

    Each stage, conv 3x3 -> max-pool 2 -> BatchNorm -> GELU -> conv 3x3 -> BatchNorm -> GELU (the block of Keller
    Jordan's cifar10-airbench), halves the map: 32 -> 16 -> 8 -> 4. A residual `SelfAttention` follows each stage
    in `attention_at` (1-based): after stage 2 it sees 8 x 8 = 64 tokens, a 64 x 64 matrix instead of 1,024 x 1,024.
    `widths`: channels per stage (its length is the number of stages). `heads`, `qk_channels`, `gamma_init`,
    `qk_norm`, `temperature_init`, `position` go to `SelfAttention`; `image_size` sizes its position table.
    `replace_conv`: attention replaces the stage's second conv (BoTNet, Srinivas et al. 2021). `uniform_attention`:
    every map (and the pool) fixed to uniform, the control for whether *where* it looks matters. `pool`: "max",
    "avg" or "attention" (an `AttentionPool` of `pool_heads` heads; uniform weights give "avg"), then one Linear."""

    def __init__(self, num_classes: int = 10, widths: list[int] | tuple[int, ...] = (32, 64, 128),
                 attention: bool = True, attention_at: list[int] | tuple[int, ...] = (2,), heads: int = 1,
                 qk_channels: int | None = None, in_channels: int = 3, image_size: int = 32,
                 gamma_init: float = 0.0, qk_norm: bool = False, temperature_init: float = 10.0,
                 position: str | None = None, replace_conv: bool = False,
                 uniform_attention: bool = False, pool: str = "max", pool_heads: int = 8) -> None:
        super().__init__()
        if pool not in ("max", "avg", "attention"):
            raise ValueError(f"pool must be 'max', 'avg' or 'attention', got {pool!r}")
        if pool != "attention" and pool_heads != 8:  # else two identical networks would differ in their configs
            raise ValueError(f"pool_heads={pool_heads} is only used with pool='attention', got pool={pool!r}")
        widths, attention_at = [int(w) for w in widths], [int(a) for a in attention_at]
        bad = [a for a in attention_at if not 1 <= a <= len(widths)]
        if bad:
            raise ValueError(f"attention_at={attention_at} names stages {bad}, but there are only "
                             f"{len(widths)} stages (1..{len(widths)}); pick stages from that range")
        self.config = dict(num_classes=num_classes, widths=widths, attention=attention,
                           attention_at=attention_at, heads=heads, qk_channels=qk_channels,
                           in_channels=in_channels, image_size=image_size, gamma_init=gamma_init,
                           qk_norm=qk_norm, temperature_init=temperature_init, position=position,
                           replace_conv=replace_conv, uniform_attention=uniform_attention,
                           pool=pool, pool_heads=pool_heads)
        layers: list[nn.Module] = []
        c_in, side = in_channels, image_size
        for stage, width in enumerate(widths, start=1):
            side //= 2
            layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.MaxPool2d(2),
                       nn.BatchNorm2d(width), nn.GELU()]
            here = stage in attention_at
            # the layers before this one draw the same weights whatever `replace_conv`; later ones draw others
            second = [] if replace_conv and here else [nn.Conv2d(width, width, 3, padding=1, bias=False)]
            attend = [SelfAttention(width, heads=heads, qk_channels=qk_channels, gamma_init=gamma_init,
                                    qk_norm=qk_norm, temperature_init=temperature_init, position=position,
                                    size=(side, side), uniform=uniform_attention)] if attention and here else []
            if replace_conv and here:
                layers += attend + [nn.BatchNorm2d(width), nn.GELU()]
            else:
                layers += second + [nn.BatchNorm2d(width), nn.GELU()] + attend
            c_in = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)
        # built last, so a seed gives every other layer the same weights whatever the pooling
        self.pool = (AttentionPool(c_in, heads=pool_heads, size=(side, side), uniform=uniform_attention)
                     if pool == "attention" else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if self.pool is not None:
            return self.head(self.pool(x))
        return self.head(torch.mean(x, dim=(2, 3)) if self.config["pool"] == "avg" else torch.amax(x, dim=(2, 3)))


class LongRangeCNN(ReportsAttention, nn.Module):
    """A plain stack of 3x3 convolutions (no pooling) with one optional `SelfAttention` layer (notebook 10).

    `depth` blocks of conv 3x3 -> BatchNorm -> ReLU, `width` channels, any image size; the residual attention layer
    follows block `attention_after` (1-based). The head mean- or max-pools each channel over the map, then one Linear,
    so without attention each feature sees only a `receptive_field`-wide square. `gamma_init` 1.0, not SAGAN's 0: with
    the SGD recipe a gate from 0 stayed off (50% after 6 epochs), from 1 it solves the task in 2-3 epochs. `pool`:
    "mean" sums one score per mark (no comparison); "max" asks "is this colour anywhere?", one mark at a time."""

    def __init__(self, num_classes: int = 2, depth: int = 3, width: int = 32, attention: bool = True,
                 attention_after: int = 1, heads: int = 1, qk_channels: int | None = None,
                 in_channels: int = 3, gamma_init: float = 1.0, image_size: int = 12, pool: str = "mean") -> None:
        super().__init__()
        if not 1 <= attention_after <= depth:
            raise ValueError(f"attention_after={attention_after} must name a block 1..depth={depth}")
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be 'mean' or 'max', got {pool!r}")
        self.config = dict(num_classes=num_classes, depth=depth, width=width, attention=attention,
                           attention_after=attention_after, heads=heads, qk_channels=qk_channels,
                           in_channels=in_channels, gamma_init=gamma_init, image_size=image_size, pool=pool)
        layers: list[nn.Module] = []
        for block in range(1, depth + 1):
            layers += [nn.Conv2d(in_channels if block == 1 else width, width, 3, padding=1),
                       nn.BatchNorm2d(width), nn.ReLU()]
            if attention and block == attention_after:
                layers.append(SelfAttention(width, heads=heads, qk_channels=qk_channels, gamma_init=gamma_init))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    @property
    def receptive_field(self) -> int:
        """Side of the square of input pixels one conv unit sees (without attention): 2 * depth + 1."""
        return 2 * self.config["depth"] + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.head(x.mean(dim=(2, 3)) if self.config["pool"] == "mean" else x.amax(dim=(2, 3)))


# --- airbench94's network (Keller Jordan, cifar10-airbench; PyPI `airbench` 0.1.8, lib_airbench94.py) ------

@torch.no_grad()
def init_whitening_conv(layer: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Set a 2x2 conv to whiten patches: covariance eigenvectors over sqrt(eigenvalue + eps), and their negatives.
    airbench's `init_whitening_conv`, but the eigh runs on the CPU for Apple MPS, which has none."""
    c, (h, w) = images.shape[1], layer.weight.shape[2:]
    patches = images.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).float()
    flat = patches.view(len(patches), -1)
    covariance = (flat.T @ flat) / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance.cpu() if covariance.is_mps else covariance, UPLO="U")
    eigenvalues = eigenvalues.flip(0).view(-1, 1, 1, 1).to(layer.weight.device)
    eigenvectors = eigenvectors.T.reshape(c * h * w, c, h, w).flip(0).to(layer.weight.device)
    scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
    layer.weight.data[:] = torch.cat((scaled, -scaled))


class Airbench94Net(ReportsAttention, nn.Sequential):
    """airbench94's network, layer for layer, with an optional `SelfAttention` after group `attention_after`:
    a frozen 2x2 whitening conv (trained bias; 32 -> 31), GELU, three conv groups of `widths` channels
    (31 -> 15 -> 7 -> 3), max-pool 3, a bias-free Linear, logits times 1/9. With `attention=False` it is
    `make_net94()` module for module (same names, same weights per seed); attention (after group 2: the 7 x 7
    map) is built last to keep those weights. `speedrun.train94` trains it as airbench94 does."""

    def __init__(self, num_classes: int = 10, widths: list[int] | tuple[int, ...] = (64, 256, 256),
                 batchnorm_momentum: float = 0.6, scaling_factor: float = 1 / 9, attention: bool = True,
                 attention_after: int = 2, heads: int = 1, qk_channels: int | None = None, gamma_init: float = 0.0,
                 qk_norm: bool = False, temperature_init: float = 10.0, position: str | None = None,
                 in_channels: int = 3, image_size: int = 32) -> None:
        widths = [int(w) for w in widths]
        if len(widths) != 3 or not 1 <= attention_after <= 3:
            raise ValueError(f"Airbench94Net has 3 groups: widths needs 3 numbers (got {widths}) and "
                             f"attention_after one of 1, 2, 3 (got {attention_after})")
        whiten_width = 2 * in_channels * 2 ** 2
        # airbench's own layers, imported only here: importing airbench loads torchvision and switches cuDNN's
        # autotuning on, which no other network needs (the switch is put back; `fit` sets it for training)
        benchmark = torch.backends.cudnn.benchmark
        from airbench.lib_airbench94 import Conv, ConvGroup, Mul
        torch.backends.cudnn.benchmark = benchmark
        layers = [Conv(in_channels, whiten_width, 2, padding=0, bias=True), nn.GELU(),
                  ConvGroup(whiten_width, widths[0], batchnorm_momentum),
                  ConvGroup(widths[0], widths[1], batchnorm_momentum),
                  ConvGroup(widths[1], widths[2], batchnorm_momentum),
                  nn.MaxPool2d(3), nn.Flatten(), nn.Linear(widths[2], num_classes, bias=False), Mul(scaling_factor)]
        if attention:  # built last: the airbench layers above drew their weights first
            side = image_size - 1
            for _ in range(attention_after):
                side //= 2
            layers.insert(2 + attention_after, SelfAttention(
                widths[attention_after - 1], heads=heads, qk_channels=qk_channels, gamma_init=gamma_init,
                qk_norm=qk_norm, temperature_init=temperature_init, position=position, size=(side, side)))
        super().__init__(*layers)
        self[0].weight.requires_grad = False
        self.config = dict(num_classes=num_classes, widths=widths, batchnorm_momentum=batchnorm_momentum,
                           scaling_factor=scaling_factor, attention=attention, attention_after=attention_after,
                           heads=heads, qk_channels=qk_channels, gamma_init=gamma_init, qk_norm=qk_norm,
                           temperature_init=temperature_init, position=position, in_channels=in_channels,
                           image_size=image_size)

    def fit_to_data(self, images: torch.Tensor) -> None:
        """Set the frozen whitening conv from normalised training images (`fit`'s own loop calls this once; the gpu
        recipe's `train94` sets it itself)."""
        init_whitening_conv(self[0], images)


# The architectures by class name, so a checkpoint (which stores the name and config) can rebuild its model.
MODELS: dict[str, type[nn.Module]] = {cls.__name__: cls for cls in
                                      (CNNWithSelfAttention, CNNWithoutAttention, AttentionCNN, LongRangeCNN,
                                       Airbench94Net)}


def build_model(architecture: str, **config: Any) -> nn.Module:
    """Build a model from its class name (a key of `MODELS`) and constructor arguments."""
    if architecture not in MODELS:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(sorted(MODELS))}")
    if config.pop("whiten", False):  # older checkpoints store whiten=False; the layer is gone
        raise ValueError("AttentionCNN(whiten=True) was removed: train Airbench94Net for a whitening layer")
    return MODELS[architecture](**config)


def build_recipe_model(recipe: Recipe, train: ImageSet | None = None, model: str | None = None,
                       **overrides: Any) -> nn.Module:
    """The recipe's model (or class `model` with its defaults), sized for `train` if given; `overrides` win."""
    name = model or recipe.model
    config = dict(recipe.model_config) if name == recipe.model else {}
    if train is not None:
        _, channels, height, width = train.images.shape
        if height != width:
            raise ValueError(f"the models take square images; these are {height}x{width}: crop or resize them")
        config.setdefault("num_classes", len(train.classes))
        config.setdefault("in_channels", int(channels))
        config.setdefault("image_size", int(height))
    config.update(overrides)
    return build_model(name, **config)
