"""Pictures: attention heatmaps and per-pixel maps, image grids, a network drawing (the explorer is `explorer.py`)."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .attention import SelfAttention, attention_map
from .runtime import model_device


def show_heatmaps(matrices: torch.Tensor | np.ndarray, xlabel: str = "keys", ylabel: str = "queries",
                  titles: Sequence[str] | Sequence[Sequence[str]] | None = None,
                  figsize: tuple[float, float] | None = None, cmap: str = "Reds",
                  colorbar: bool = True, vmin: float | None = None, vmax: float | None = None,
                  label: str = "") -> tuple[Figure, np.ndarray]:
    """A grid of heatmaps (after d2l's `show_heatmaps`) on ONE colour scale; returns (figure, axes). `matrices`:
    (rows, cols, n, m), (cols, n, m) or (n, m), on any device. `titles` labels the first row (a list of lists: every
    panel). All panels share `vmin`..`vmax` (default: the data's range) and one colour bar (`label`)."""
    m = torch.as_tensor(matrices).detach().float().cpu()
    if m.dim() < 2 or m.dim() > 4:
        raise ValueError(f"show_heatmaps expects 2-D to 4-D matrices (rows x cols x n x m), got shape "
                         f"{tuple(m.shape)}")
    while m.dim() < 4:
        m = m.unsqueeze(0)
    rows, cols = m.shape[:2]
    vmin = float(m.min()) if vmin is None else vmin
    vmax = float(m.max()) if vmax is None else vmax
    figsize = figsize or (2.6 * cols + 0.6, 2.4 * rows)
    fig, axes = plt.subplots(rows, cols, figsize=figsize, sharex=True, sharey=True, squeeze=False)
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            im = ax.imshow(m[i, j].numpy(), cmap=cmap, vmin=vmin, vmax=vmax)
            if i == rows - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
            if titles is not None:
                title = titles[i][j] if isinstance(titles[0], (list, tuple)) else (titles[j] if i == 0 else None)
                if title:
                    ax.set_title(title)
    if colorbar:
        fig.colorbar(im, ax=axes, shrink=0.6, label=label)
    return fig, axes


def show_images(images: torch.Tensor, labels: Sequence[int] | torch.Tensor | None = None,
                classes: Sequence[str] | None = None, ncols: int = 8, size: float = 1.3
                ) -> tuple[Figure, np.ndarray]:
    """A grid of N x C x H x W images (uint8 or 0..1 floats), titled by `labels` (named by `classes`);
    `ncols` per row, `size` inches each. Returns (figure, axes)."""
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


# --- between image pixels and attention-map pixels ------------------------------------------------

def map_pixel(y: int, x: int, image_size: tuple[int, int], map_size: tuple[int, int]) -> tuple[int, int]:
    """The map pixel that covers image pixel (y, x): with a 32 x 32 image and an 8 x 8 map, 0..3 -> 0, 4..7 -> 1."""
    (ih, iw), (mh, mw) = image_size, map_size
    if not (0 <= y < ih and 0 <= x < iw):
        raise ValueError(f"image pixel (y={y}, x={x}) is outside the {ih}x{iw} image")
    return y * mh // ih, x * mw // iw


def map_cell(y: int, x: int, map_size: tuple[int, int], image_size: tuple[int, int]
             ) -> tuple[float, float, float, float]:
    """The image area that map pixel (y, x) covers: (top, left, height, width) in image pixels."""
    (mh, mw), (ih, iw) = map_size, image_size
    if not (0 <= y < mh and 0 <= x < mw):
        raise ValueError(f"map pixel (y={y}, x={x}) is outside the {mh}x{mw} map")
    return y * ih / mh, x * iw / mw, ih / mh, iw / mw


def upsample_map(amap: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """H x W map -> `size`, nearest neighbour (each map pixel becomes its block); detached float32 on the CPU."""
    if amap.dim() != 2:
        raise ValueError(f"upsample_map expects one H x W map, got shape {tuple(amap.shape)}")
    amap = amap.detach().cpu()
    return torch.nn.functional.interpolate(amap[None, None].float(), size=size, mode="nearest")[0, 0]


def to_display(image: torch.Tensor) -> np.ndarray:
    """C x H x W image (uint8 0..255, or float in 0..1) -> H x W x 3 float array for `imshow`."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"to_display expects one C x H x W image with 1 or 3 channels, got {tuple(image.shape)}")
    img = image.detach().cpu().float()
    if image.dtype == torch.uint8:
        img = img / 255
    return img.clamp(0, 1).permute(1, 2, 0).expand(-1, -1, 3).numpy()


def overlay(image: np.ndarray, amap: torch.Tensor, vmax: float, cmap: str = "inferno",
            alpha: float = 0.65) -> np.ndarray:
    """A grey H x W x 3 `image` (0..1) blended with the upsampled map coloured 0..`vmax` in x uniform (weight
    times H*W): the colours of `imshow(amap * H*W, cmap=cmap, vmin=0, vmax=vmax)`."""
    n = amap.numel()
    colour = plt.get_cmap(cmap)((upsample_map(amap, image.shape[:2]) * n / vmax).clamp(0, 1).numpy())[..., :3]
    grey = image.mean(-1, keepdims=True)
    return (1 - alpha) * grey + alpha * colour


def _query_map(weights: torch.Tensor, y: int, x: int, map_size: tuple[int, int]) -> torch.Tensor:
    """Query pixel (y, x)'s H x W map, detached float32 on the CPU (so weights on a GPU or with grads can be drawn)."""
    return attention_map(weights.detach(), y, x, *map_size).float().cpu()


def weight_range(amap: torch.Tensor) -> str:
    """'weights 0.8x..1.3x uniform': a map's smallest and largest weight relative to 1/(H*W)."""
    n = amap.numel()
    return f"weights {float(amap.min()) * n:.1f}x..{float(amap.max()) * n:.1f}x uniform"


def shared_scale(weights: torch.Tensor | Sequence[torch.Tensor], at_least: float = 2.0) -> float:
    """Top of one colour scale in x uniform: the largest weight times N in `weights` (tensors whose last axis holds
    a query's N = H*W keys; not H x W maps), at least `at_least` so near-uniform maps look flat."""
    tensors = [weights] if isinstance(weights, torch.Tensor) else list(weights)
    return max([at_least] + [float(w.detach().amax()) * w.shape[-1] for w in tensors])


UNIFORM_LABEL = "weight × H·W  (1 = uniform)"


def _box(ax: Axes, top: float, left: float, h: float, w: float, width: float = 2) -> None:
    ax.add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False, edgecolor="cyan", linewidth=width))


def plot_query(ax_image: Axes, ax_map: Axes, ax_overlay: Axes, image: torch.Tensor, weights: torch.Tensor,
               y: int, x: int, map_size: tuple[int, int], title: str = "", vmax: float | None = None):
    """Draw one query pixel into three axes: the image with its cell marked, its H x W map, the overlay. image:
    C x H x W; weights: HW x HW of one image and head; (y, x): a map pixel. Scale 0..`vmax` x uniform (default this
    map's `shared_scale`; one `vmax` to compare maps). Returns the map's image, for `colorbar(label=UNIFORM_LABEL)`."""
    amap = _query_map(weights, y, x, map_size)
    vmax = shared_scale(amap.reshape(-1)) if vmax is None else vmax
    img = to_display(image)
    top, left, h, w = map_cell(y, x, map_size, img.shape[:2])
    ax_image.imshow(img)
    _box(ax_image, top, left, h, w)
    ax_image.set_title(title, fontsize=9)
    mappable = ax_map.imshow(amap.numpy() * amap.numel(), cmap="inferno", vmin=0, vmax=vmax)
    _box(ax_map, y, x, 1, 1)
    ax_map.set_title(f"{map_size[0]}x{map_size[1]} map = row {y * map_size[1] + x}", fontsize=9)
    ax_overlay.imshow(overlay(img, amap, vmax))
    _box(ax_overlay, top, left, h, w)
    ax_overlay.set_title(f"overlay\n{weight_range(amap)}", fontsize=9)
    for ax in (ax_image, ax_overlay):
        ax.set_xticks([])
        ax.set_yticks([])
    ax_map.set_xticks(range(0, map_size[1], 2))  # the map's own axes are map cells
    ax_map.set_yticks(range(0, map_size[0], 2))
    ax_map.tick_params(labelsize=7)
    ax_map.set_xlabel("x (map cell)", fontsize=7, labelpad=1)
    ax_map.set_ylabel("y (map cell)", fontsize=7, labelpad=1)
    return mappable


def plot_attention_grid(images: torch.Tensor, weights: torch.Tensor, pixels: Sequence[tuple[int, int]],
                        map_size: tuple[int, int], head: int = 0, row_titles: Sequence[str] | None = None,
                        vmax: float | None = None) -> Figure:
    """One row per image: the image, then the overlay for each query pixel (y, x) of `pixels` (map cells).
    images: B x C x H x W; weights: B x heads x HW x HW. One scale, 0..`vmax` x uniform (default `shared_scale`)."""
    b = images.shape[0]
    maps = [[_query_map(weights[i, head], y, x, map_size) for (y, x) in pixels] for i in range(b)]
    # each H x W map is one row of H*W keys: flattened, so shared_scale multiplies by H*W, not by W
    vmax = shared_scale([m.reshape(-1) for row in maps for m in row]) if vmax is None else vmax
    # ~1.8-inch panels, 8-9 pt text: a 5-column grid is ~10 inches, so shrunk to fit its text stays ~7 pt
    fig, axes = plt.subplots(b, len(pixels) + 1, figsize=(1.85 * (len(pixels) + 1) + 0.9, 1.9 * b + 0.35),
                             squeeze=False, layout="constrained")
    for i in range(b):
        img = to_display(images[i])
        axes[i, 0].imshow(img)
        axes[i, 0].set_title(row_titles[i] if row_titles else f"image {i}", fontsize=9)
        for j, (y, x) in enumerate(pixels, start=1):
            amap = maps[i][j - 1]
            axes[i, j].imshow(overlay(img, amap, vmax))
            _box(axes[i, j], *map_cell(y, x, map_size, img.shape[:2]), width=1.5)
            axes[i, j].set_xlabel(weight_range(amap), fontsize=8, labelpad=2)
            if i == 0:
                axes[i, j].set_title(f"query (y={y}, x={x})", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    ih, iw = images.shape[-2:]
    for ax in axes[-1, 1:]:  # the overlays' axes in map cells: cell c is the patch around pixel (c + 0.5) * size
        _cell_ticks(ax, "x", map_size[1], iw)
    _cell_ticks(axes[b // 2, 1], "y", map_size[0], ih)
    mappable = plt.cm.ScalarMappable(norm=plt.Normalize(0, vmax), cmap="inferno")
    fig.colorbar(mappable, ax=axes, shrink=0.8, label=UNIFORM_LABEL)
    return fig


def plot_pool_maps(images: torch.Tensor, weights: torch.Tensor, map_size: tuple[int, int],
                   titles: Sequence[str] | None = None, vmax: float | None = None) -> Figure:
    """Where an `AttentionPool` looks: per image, the image and each head's map over it, on one x-uniform scale.
    images: N x C x H x W; weights: N x heads x HW (`collect_pooling`); map_size: the pooled map's (H, W)."""
    n, heads = weights.shape[:2]
    vmax = shared_scale(weights) if vmax is None else vmax
    fig, axes = plt.subplots(n, heads + 1, figsize=(1.25 * (heads + 1) + 0.9, 1.3 * n + 0.3), squeeze=False)
    for i in range(n):
        img = to_display(images[i])
        axes[i, 0].imshow(img)
        if titles is not None:
            axes[i, 0].set_title(titles[i], fontsize=8)
        for h in range(heads):
            axes[i, h + 1].imshow(overlay(img, weights[i, h].reshape(map_size), vmax))
            if i == 0:
                axes[i, h + 1].set_title(f"head {h}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    bar = plt.cm.ScalarMappable(norm=plt.Normalize(0, vmax), cmap="inferno")
    fig.colorbar(bar, ax=axes, shrink=0.7, label=UNIFORM_LABEL)
    return fig


def _cell_ticks(ax: Axes, axis: str, cells: int, pixels: int, step: int = 2) -> None:
    """Label an image axis in map cells (every `step`-th), for `cells` cells over `pixels` image pixels."""
    size = pixels / cells
    positions = [(c + 0.5) * size - 0.5 for c in range(0, cells, step)]
    labels = [str(c) for c in range(0, cells, step)]
    if axis == "x":
        ax.set_xticks(positions, labels, fontsize=7)
        ax.set_xlabel(ax.get_xlabel() + "\nx (map cell)", fontsize=8, labelpad=2)
    else:
        ax.set_yticks(positions, labels, fontsize=7)
        ax.set_ylabel("y (map cell)", fontsize=8, labelpad=2)


# --- a drawing of a network -----------------------------------------------------------------------

def network_layers(model: nn.Module, example: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """What `draw_network` draws: (name, output shape without batch) of each leaf module in forward order on `example`
    (eval mode, then restored); steps outside modules show as "reshape" or "pool"."""
    rows: list[tuple[str, tuple[int, ...]]] = []
    last = [tuple(example.shape[1:])]

    def record(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
        given = tuple(args[0].shape[1:])
        if given != last[0]:  # something outside the modules changed the shape
            same_size = torch.Size(given).numel() == torch.Size(last[0]).numel()
            rows.append(("reshape" if same_size else "pool", given))
        rows.append((type(mod).__name__, tuple(out.shape[1:])))
        last[0] = tuple(out.shape[1:])

    leaves = [m for m in model.modules() if not list(m.children()) or isinstance(m, SelfAttention)]
    inside = {id(c) for m in leaves if list(m.children()) for c in m.modules() if c is not m}
    hooks = [m.register_forward_hook(record) for m in leaves if id(m) not in inside]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(example.to(model_device(model)))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return rows


def draw_network(model: nn.Module, example: torch.Tensor, title: str = "", per_row: int = 8) -> Figure:
    """`model` as boxes in forward order, each a layer and its output shape on `example`; attention highlighted."""
    rows = network_layers(model, example)
    steps = [("input", tuple(example.shape[1:]))] + rows
    n_rows = -(-len(steps) // per_row)
    fig, ax = plt.subplots(figsize=(1.45 * min(per_row, len(steps)) + 0.3, 1.25 * n_rows + 0.3))
    for i, (name, shape) in enumerate(steps):
        r, c = divmod(i, per_row)
        x, y = c * 1.45, -r * 1.25
        colour = "#f4a261" if "Attention" in name else "#e9ecef" if name == "input" else "#a8dadc"
        ax.add_patch(Rectangle((x, y), 1.2, 0.8, facecolor=colour, edgecolor="black", lw=0.8))
        ax.text(x + 0.6, y + 0.55, name, ha="center", va="center", fontsize=7.5, weight="bold")
        ax.text(x + 0.6, y + 0.25, " × ".join(str(s) for s in shape), ha="center", va="center", fontsize=7)
        if i + 1 < len(steps):
            if c + 1 < per_row:
                ax.annotate("", (x + 1.45, y + 0.4), (x + 1.2, y + 0.4), arrowprops=dict(arrowstyle="->", lw=0.8))
            else:  # the next row starts on the left
                ax.annotate("", (0.6, y - 0.45), (x + 0.6, y), arrowprops=dict(arrowstyle="->", lw=0.8,
                                                                              connectionstyle="arc3,rad=0.05"))
    ax.set_xlim(-0.1, 1.45 * min(per_row, len(steps)))
    ax.set_ylim(-1.25 * (n_rows - 1) - 0.1, 0.9)
    ax.axis("off")
    ax.set_title(title or f"{type(model).__name__}: each box a layer and its output shape", fontsize=9)
    return fig
