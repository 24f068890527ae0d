"""Example tensors the notebooks start from: a real CIFAR-10 feature map, and queries, keys and values made from
it by seeded 1x1 convolutions (notebooks 01-03)."""
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
    """Draw from the CPU generator seeded with `seed` (as `torch.manual_seed(seed)` would), then give the
    caller back its own CPU random state. GPU generators are neither seeded nor touched."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def example_feature_map(index: int = 13, channels: int = 16, seed: int = 0
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The notebooks' real feature map: CIFAR-10 test image `index` (13 is a horse), normalised with
    the CIFAR-10 channel mean/std, through a seeded 3x3 conv (3 -> `channels`, padding 1), a batch norm
    over the image (each channel to mean 0, variance 1) and a ReLU.

    Returns (image 1 x 3 x 32 x 32 in [0, 1], features 1 x channels x 32 x 32), the same on every call.
    The caller's random state is left as it was (the conv is drawn inside `_seeded`).
    """
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
    """Query, key and value tokens of a feature map from seeded 1x1 convs, as notebook 01 builds them.

    features: B x C x H x W. Query/key convs map C -> `qk_channels`, the value conv keeps C. Their weights
    are drawn from N(0, std^2) (std 0.5 gives queries and keys with entries of order 1 on
    `example_feature_map`; PyTorch's default init is smaller and attends almost uniformly); biases keep
    PyTorch's default init. Returns (Q, K, V) as B x HW x channels tokens. The caller's random state is
    left as it was.
    """
    c = features.shape[1]
    with _seeded(seed), torch.no_grad():
        convs = [nn.Conv2d(c, qk_channels, 1), nn.Conv2d(c, qk_channels, 1), nn.Conv2d(c, c, 1)]
        for conv in convs:
            nn.init.normal_(conv.weight, std=std)
    with torch.no_grad():
        return tuple(to_tokens(conv(features)) for conv in convs)
