"""Pictures: heatmaps of attention weights, per-pixel attention maps, image grids."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch


def show_heatmaps(matrices, xlabel: str = "keys", ylabel: str = "queries", titles=None,
                  figsize: tuple[float, float] | None = None, cmap: str = "Reds", colorbar: bool = True):
    """Draw a grid of heatmaps (after d2l's `show_heatmaps`); returns (figure, axes array).

    `matrices`: a tensor or array of shape (rows, cols, n, m), (cols, n, m) or (n, m); one panel per
    n x m matrix. Tensors may live on any device (they are moved to the CPU). `titles` labels the
    panels of the first row (or every panel when given as a list of lists).
    """
    m = torch.as_tensor(matrices).detach().float().cpu()
    if m.dim() < 2 or m.dim() > 4:
        raise ValueError(f"show_heatmaps expects 2-D to 4-D matrices (rows x cols x n x m), got shape "
                         f"{tuple(m.shape)}")
    while m.dim() < 4:
        m = m.unsqueeze(0)
    rows, cols = m.shape[:2]
    figsize = figsize or (2.6 * cols + 0.6, 2.4 * rows)
    fig, axes = plt.subplots(rows, cols, figsize=figsize, sharex=True, sharey=True, squeeze=False)
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            im = ax.imshow(m[i, j].numpy(), cmap=cmap)
            if i == rows - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
            if titles is not None:
                title = titles[i][j] if isinstance(titles[0], (list, tuple)) else (titles[j] if i == 0 else None)
                if title:
                    ax.set_title(title)
    if colorbar:
        fig.colorbar(im, ax=axes, shrink=0.6)
    return fig, axes


def show_images(images: torch.Tensor, labels=None, classes=None, ncols: int = 8, size: float = 1.3):
    """A labelled grid of images: N x 3 x H x W (uint8 0..255 or float 0..1); returns (figure, axes)."""
    images = torch.as_tensor(images).detach().cpu()
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"show_images expects N x 3 x H x W (or N x 1 x H x W) images, got shape "
                         f"{tuple(images.shape)}")
    if images.dtype == torch.uint8:
        images = images.float() / 255
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i].permute(1, 2, 0).clamp(0, 1).squeeze(-1).numpy())
            if labels is not None:
                label = int(labels[i])
                ax.set_title(classes[label] if classes is not None else str(label), fontsize=9)
    fig.tight_layout()
    return fig, axes
