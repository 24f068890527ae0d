"""Example tensors for notebooks 01-03: a real CIFAR-10 feature map, and Q, K, V made from it by seeded 1x1 convs."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import to_tokens
from .data import CIFAR10_MEAN, CIFAR10_STD, load_cifar10


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Draw from the CPU generator seeded with `seed`, then restore the caller's CPU random state (GPUs untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def example_feature_map(index: int = 13, channels: int = 16, seed: int = 0
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(image 1 x 3 x 32 x 32 in [0, 1], features 1 x channels x 32 x 32): CIFAR-10 test image `index` (13: a horse),
    normalised, through a seeded 3x3 conv, batch norm and ReLU; the same every call, random state untouched."""
    image = load_cifar10(train=False)[index][0].unsqueeze(0)
    # the statistics are in 0..255 units, the image in 0..1 (divided in float64: exactly 0.4914, ...)
    mean = torch.tensor([m / 255 for m in CIFAR10_MEAN]).view(1, 3, 1, 1)
    std = torch.tensor([s / 255 for s in CIFAR10_STD]).view(1, 3, 1, 1)
    with _seeded(seed):
        conv = nn.Conv2d(3, channels, kernel_size=3, padding=1)
    with torch.no_grad():
        features = F.relu(F.batch_norm(conv((image - mean) / std), None, None, training=True))
    return image, features


def example_qkv(features: torch.Tensor, qk_channels: int = 8, seed: int = 1, std: float = 0.5
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Q, K, V) tokens, B x HW x channels, of B x C x H x W `features` from seeded 1x1 convs (C -> `qk_channels`
    for Q and K, C -> C for V), as notebook 01 builds them. Weights ~ N(0, std^2): 0.5 gives entries of order 1
    on `example_feature_map` (PyTorch's smaller default init attends almost uniformly). Random state untouched."""
    c = features.shape[1]
    with _seeded(seed), torch.no_grad():
        convs = [nn.Conv2d(c, qk_channels, 1), nn.Conv2d(c, qk_channels, 1), nn.Conv2d(c, c, 1)]
        for conv in convs:
            nn.init.normal_(conv.weight, std=std)
    with torch.no_grad():
        return tuple(to_tokens(conv(features)) for conv in convs)
