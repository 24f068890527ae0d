"""What an attention map says: how sharp it is, whether it depends on the query, and whether it matters.
The statistics take weights B x heads x N x N (row = query, N = H*W) and return one value per head."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import (AttentionPool, attention_layers, attention_pools, capture_attention, collect_attention,
                        collect_maps, uniform_attention)
from .runtime import model_device


def _check_weights(weights: torch.Tensor) -> None:
    if weights.dim() != 4 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"expected attention weights B x heads x N x N, got shape {tuple(weights.shape)}")


def peak_ratio(weights: torch.Tensor) -> torch.Tensor:
    """Per head: median over images and queries of (largest weight of the row) x N. Uniform gives 1."""
    _check_weights(weights)
    n = weights.shape[-1]
    peaks = weights.float().amax(-1) * n  # B x heads x N
    return peaks.transpose(0, 1).reshape(weights.shape[1], -1).median(dim=1).values


def entropy_ratio(weights: torch.Tensor) -> torch.Tensor:
    """Per head: mean over images and queries of entropy(row) / log N. Uniform gives 1, one key gives 0."""
    _check_weights(weights)
    n = weights.shape[-1]
    w = weights.float()
    entropy = -(w * torch.log(w.clamp_min(1e-30))).sum(-1)  # B x heads x N
    return entropy.mean(dim=(0, 2)) / math.log(n) if n > 1 else torch.zeros(weights.shape[1])


def query_dependence(weights: torch.Tensor) -> torch.Tensor:
    """Per head: mean total variation 0.5*sum|w_a - w_b| over query pairs a != b; 0: one map for all, 1: disjoint."""
    _check_weights(weights)
    b, heads, n, _ = weights.shape
    if n < 2:
        return torch.zeros(heads)
    w = weights.float().reshape(b * heads, n, n)
    tv = 0.5 * torch.cdist(w, w, p=1)  # (B*heads) x N x N, pairs of queries; the diagonal is 0
    per_map = tv.sum(dim=(1, 2)) / (n * (n - 1))
    return per_map.reshape(b, heads).mean(0)


def mean_attention_distance(weights: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """How far each head looks, in map pixels: sum over keys of weight x distance(query, key), mean over queries
    and leading axes of (..., heads, HW, HW); on the weights' device. Uniform gives `uniform_attention_distance`."""
    n = height * width
    if weights.shape[-2:] != (n, n):
        raise ValueError(f"expected weights ending in {n} x {n} for a {height}x{width} map, "
                         f"got shape {tuple(weights.shape)}")
    device = weights.device  # CUDA weights get CUDA distances: no copy of the weights to the CPU
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device),
                            indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1).float()  # HW x 2, row y*W + x
    dist = torch.cdist(pos, pos)  # HW x HW, query x key
    per_query = (weights.float() * dist).sum(-1)  # (..., heads, HW)
    return per_query.mean(-1).reshape(-1, weights.shape[-3]).mean(0)


def uniform_attention_distance(height: int, width: int) -> float:
    """Mean attention distance of a head that spreads its weight evenly over all H*W pixels."""
    uniform = torch.full((1, height * width, height * width), 1.0 / (height * width))
    return float(mean_attention_distance(uniform, height, width)[0])


def map_statistics(weights: torch.Tensor, height: int, width: int) -> dict[str, list[float]]:
    """All four statistics of one layer's weights (B x heads x HW x HW), one value per head each."""
    return dict(peak_ratio=peak_ratio(weights).tolist(), entropy_ratio=entropy_ratio(weights).tolist(),
                query_dependence=query_dependence(weights).tolist(),
                mean_distance=mean_attention_distance(weights, height, width).tolist())


@torch.no_grad()
def tta_logits(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
               tta_level: int = 0) -> torch.Tensor:
    """airbench's TTA: 0 plain logits, 1 mean with the mirror, 2 also two reflect-padded 1-pixel shifts and mirrors."""
    if tta_level == 0:
        return model(x)
    mirrored = 0.5 * model(x) + 0.5 * model(x.flip(-1))
    if tta_level == 1:
        return mirrored
    h, w = x.shape[-2:]
    padded = F.pad(x, (1,) * 4, "reflect")
    shifted = [padded[..., 0:h, 0:w], padded[..., 2:h + 2, 2:w + 2]]
    return 0.5 * mirrored + 0.5 * torch.stack([tta_logits(model, s, 1) for s in shifted]).mean(0)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 500, tta_level: int = 0) -> torch.Tensor:
    """Float32 CPU logits of `model` (eval mode, then restored) on normalised `images`, batched, via `tta_logits`."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    try:
        return torch.cat([tta_logits(model, images[i:i + batch_size].to(device), tta_level).float().cpu()
                          for i in range(0, len(images), batch_size)])
    finally:
        model.train(was_training)


def uniform_attention_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                               batch_size: int = 500, which: str = "all") -> dict[str, float]:
    """Accuracy on normalised `images` as trained and with `uniform_attention(model, which)`; `cost`: drop in points."""
    labels = labels.cpu()
    trained = float((predict(model, images, batch_size).argmax(1) == labels).float().mean())
    with uniform_attention(model, which):
        uniform = float((predict(model, images, batch_size).argmax(1) == labels).float().mean())
    return dict(accuracy=trained, uniform_accuracy=uniform, cost=100 * (trained - uniform))


def patch_mask(keys: torch.Tensor, map_size: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """B x 1 x H x W bool mask of the image patches under map pixels `keys` (B x k indices y*W + x on the map)."""
    b = keys.shape[0]
    (mh, mw), (ih, iw) = map_size, image_size
    mask = torch.zeros(b, mh * mw, dtype=torch.bool, device=keys.device)
    mask[torch.arange(b, device=keys.device)[:, None], keys] = True
    mask = mask.view(b, 1, mh, mw).float()
    return torch.nn.functional.interpolate(mask, size=(ih, iw), mode="nearest").bool()


@torch.no_grad()
def occlusion_check(model: nn.Module, images: torch.Tensor, k: int = 4, layer: int = 0, head: int | None = None,
                    seed: int = 0, batch_size: int = 250) -> dict[str, Any]:
    """Hide (set to 0, the normalised mean) the k map cells that one seeded random query per image of `layer`
    attends to most (mean over heads, or one `head`), and k random cells: does the first change the prediction
    more? Keys: `attended_drop`/`random_drop` (mean fall in the predicted class's probability), `*_changed` (share
    of changed predictions), `difference` (attended - random drop) and its 95 % `difference_ci95`."""
    g = torch.Generator().manual_seed(seed)
    drops: dict[str, list[torch.Tensor]] = {"attended": [], "random": []}
    flips: dict[str, list[torch.Tensor]] = {"attended": [], "random": []}
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        logits, weights, sizes = collect_attention(model, x)
        probs = logits.float().softmax(-1).cpu()
        pred = probs.argmax(1)
        w = weights[layer] if head is None else weights[layer][:, head:head + 1]
        w = w.mean(1)  # B x N x N
        (mh, mw), (ih, iw) = sizes[layer], x.shape[-2:]
        b, n = w.shape[0], w.shape[-1]
        query = torch.randint(n, (b,), generator=g)
        attended = w[torch.arange(b), query].topk(k, dim=-1).indices  # B x k key pixels
        random_keys = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(b)])
        for name, keys in (("attended", attended), ("random", random_keys)):
            mask = patch_mask(keys, (mh, mw), (ih, iw)).to(x.device)
            occluded = torch.where(mask, torch.zeros((), dtype=x.dtype, device=x.device), x)
            new = predict(model, occluded, batch_size).softmax(-1)
            drops[name].append(probs[torch.arange(b), pred] - new[torch.arange(b), pred])
            flips[name].append((new.argmax(1) != pred).float())
    out: dict[str, Any] = {"k": k, "images": len(images), "layer": layer, "head": head}
    for name in drops:
        out[f"{name}_drop"] = float(torch.cat(drops[name]).mean())
        out[f"{name}_changed"] = float(torch.cat(flips[name]).mean())
    diff = torch.cat(drops["attended"]) - torch.cat(drops["random"])
    half = 1.96 * float(diff.std()) / math.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    out["difference"] = float(diff.mean())
    out["difference_ci95"] = [out["difference"] - half, out["difference"] + half]
    return out


def forward_flops(model: nn.Module, image_size: int = 32, in_channels: int = 3) -> dict[str, int]:
    """FLOPs of one forward pass on one image (multiply-add = 2; training ~3x): "attention" (the `bmm`s) and "total".
    Inside `capture_attention`, as `FlopCounterMode` can't see into the fused kernel. Leaves the model in eval mode."""
    from torch.utils.flop_counter import FlopCounterMode
    model.eval()
    x = torch.zeros(1, in_channels, image_size, image_size, device=model_device(model))
    with FlopCounterMode(display=False) as counter, capture_attention(model), torch.no_grad():
        model(x)
    counts = {str(k).split(".")[-1]: v for k, v in counter.get_flop_counts()["Global"].items()}
    return {"attention": counts.get("bmm", 0), "total": counter.get_total_flops()}


@torch.no_grad()
def attention_report(model: nn.Module, images: torch.Tensor) -> list[dict[str, Any]]:
    """What `fit` logs each epoch, from one pass on normalised `images`. Per attention layer (kind "layer"): gamma,
    |W_q|, |W_k|, temperature and largest |position bias| where it has them, score std, `map_statistics`; then the
    `AttentionPool`'s row (kind "pool"): score std, largest |position bias|, peak and entropy ratio per head."""
    layers, pools = attention_layers(model), attention_pools(model)
    if not layers and not pools:
        return []
    scores: dict[nn.Module, torch.Tensor] = {}

    def keep_scores(module, args, _out):  # recompute the scores from the module's input (cheap at 8 x 8)
        x = args[0]
        s = (module.scores(x) if isinstance(module, AttentionPool)
             else module.scores(module._heads(module.query(x)), module._heads(module.key(x))))
        scores[module] = s.float().cpu()

    hooks = [m.register_forward_hook(keep_scores) for m in [*layers, *pools]]
    try:
        _, weights, sizes, pooled, _ = collect_maps(model, images)
    finally:
        for hook in hooks:
            hook.remove()
    rows: list[dict[str, Any]] = []
    for layer, w, (h, wd) in zip(layers, weights, sizes):
        row = dict(wq_norm=float(layer.query.weight.norm()), wk_norm=float(layer.key.weight.norm()))
        if layer.gamma is not None:
            row["gamma"] = float(layer.gamma)
        if layer.log_temperature is not None:
            row["temperature"] = [float(t) for t in layer.log_temperature.exp()]
        if layer.position_table is not None:
            row["position_bias_max"] = float(layer.position_table.abs().max())
        rows.append(dict(row, kind="layer", score_std=float(scores[layer].std(dim=-1).mean()),  # spread per query
                         **map_statistics(w, h, wd)))
    if pools:  # one map per image and head: B x heads x HW
        n = pooled.shape[-1]
        entropy = -(pooled * torch.log(pooled.clamp_min(1e-30))).sum(-1) / math.log(n)
        rows.append(dict(kind="pool", score_std=float(scores[pools[0]].std(dim=-1).mean()),
                         position_bias_max=float(pools[0].position_table.abs().max()),
                         peak_ratio=(pooled.amax(-1) * n).median(dim=0).values.tolist(),
                         entropy_ratio=entropy.mean(0).tolist()))
    return rows


@torch.no_grad()
def attention_snapshot(model: nn.Module, images: torch.Tensor, epoch: int) -> dict[str, Any]:
    """Maps of a few fixed normalised `images`, float16 on the CPU, for `AttentionExplorer`'s epoch slider: `epoch`,
    `layers` (N x heads x HW x HW each), `sizes`, `pool` (N x heads x HW or None), `pool_size`, `predicted`."""
    logits, weights, sizes, pool, pool_size = collect_maps(model, images)
    return dict(epoch=int(epoch), layers=[w.half() for w in weights], sizes=[list(hw) for hw in sizes],
                pool=None if pool is None else pool.half(), pool_size=None if pool_size is None else list(pool_size),
                predicted=logits.argmax(1).tolist())


def t_quantile_975(df: int) -> float:
    """Student's t 97.5 % quantile (95 % intervals): table values up to `df` 10, then Cornish-Fisher (error < 2e-4)."""
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
    if df < 1:
        raise ValueError(f"a t quantile needs at least 1 degree of freedom, got {df}")
    if df in table:
        return table[df]
    z = 1.959964
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))


def summarise(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of a 95 % t-interval) of a few numbers (seeds); half-width 0 for one number."""
    values = list(values)
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_quantile_975(n - 1) * sd / math.sqrt(n)
