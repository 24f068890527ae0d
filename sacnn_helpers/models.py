"""Convolutional networks with (and without) a self-attention layer."""
from __future__ import annotations

import torch
import torch.nn as nn

from .attention import SelfAttention

# Architectures by class name, so a checkpoint (which stores the name and config) can rebuild its model.
MODELS: dict[str, type[nn.Module]] = {}


def register_model(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: make `cls` buildable by name with `build_model`."""
    MODELS[cls.__name__] = cls
    return cls


def build_model(architecture: str, **config) -> nn.Module:
    """Build a registered model from its class name and constructor arguments."""
    if architecture not in MODELS:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[architecture](**config)


@register_model
class CNNWithSelfAttention(nn.Module):
    """The tutorial's network, with attention over pixels (not channels).

    conv 3->64 (3x3, padding 1), ReLU, SelfAttention(64), conv 64->128 (3x3, padding 1), ReLU,
    flatten, Linear(128*32*32, num_classes). Attention runs at full 32x32 resolution: 1,024 pixel
    tokens and a 1,024 x 1,024 weight matrix per image and head.

    Args:
        num_classes: output classes.
        attention: False gives the same network without the attention layer (`nn.Identity`).
        heads, qk_channels, residual: passed to `SelfAttention`.
        image_size: side of the square input images (sets the linear layer's width).
    """

    def __init__(self, num_classes: int = 10, attention: bool = True, heads: int = 1,
                 qk_channels: int | None = None, residual: bool = True, image_size: int = 32) -> None:
        super().__init__()
        self.config = dict(num_classes=num_classes, attention=attention, heads=heads,
                           qk_channels=qk_channels, residual=residual, image_size=image_size)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, padding=1)
        self.attention = (SelfAttention(64, heads=heads, qk_channels=qk_channels, residual=residual)
                          if attention else nn.Identity())
        self.conv2 = nn.Conv2d(64, 128, kernel_size=3, padding=1)
        self.fc = nn.Linear(128 * image_size * image_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = self.attention(x)
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


@register_model
class CNNWithoutAttention(CNNWithSelfAttention):
    """`CNNWithSelfAttention` with the attention layer left out, for comparisons."""

    def __init__(self, num_classes: int = 10, image_size: int = 32) -> None:
        super().__init__(num_classes=num_classes, attention=False, image_size=image_size)
        self.config = dict(num_classes=num_classes, image_size=image_size)
