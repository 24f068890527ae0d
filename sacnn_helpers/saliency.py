"""Attention against other explanations (notebook 09): three ways to rank the cells of the attention layer's map by
how much the prediction should depend on them, and the deletion/insertion test that scores a ranking.

- `attention_received`: the weight each key cell receives, averaged over all query cells;
- `grad_cam`: Grad-CAM (Selvaraju et al. 2017) at the attention layer's output. Where the gradient-weighted sum of
  the channels is negative everywhere, the ReLU leaves an *empty* map that ranks nothing, so rankings are compared
  on the images where Grad-CAM is not empty (`saliency_areas`, `summarise_areas(..., where=...)`);
- `input_x_gradient`: |input x gradient of the predicted logit|, summed over colours and over each cell's patch.
`deletion_insertion` is the causal test of Petsiuk et al. 2018 (RISE): hide the most important cells first (a good
ranking makes the predicted probability fall fast: small area) or reveal them on a blank image (it rises fast: large
area). Hidden pixels are 0, the mean of normalised images; a random order is the baseline."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .analysis import patch_mask, summarise
from .attention import attention_layers, collect_attention
from .runtime import model_device


def _check(model: nn.Module) -> nn.Module:
    layers = attention_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no SelfAttention layer: the saliency maps are taken at its "
                         f"resolution; load a model built with attention=True")
    return layers[0]


def attention_received(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """B x h x w (CPU, sum 1): the weight each key cell of the first attention layer gets, mean over queries, heads."""
    _, weights, sizes = collect_attention(model, images)
    h, w = sizes[0]
    return weights[0].float().mean(dim=(1, 2)).reshape(-1, h, w)


def _predicted_logit_gradient(model: nn.Module, images: torch.Tensor, hook_layer: nn.Module | None
                              ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(input gradient, the hooked layer's output, its gradient) of the predicted class's logit summed over
    the batch, in eval mode (restored afterwards). `torch.autograd.grad`: no `.grad` left on the model."""
    was_training = model.training
    model.eval()
    kept: list[torch.Tensor] = []
    hook = (hook_layer.register_forward_hook(lambda _m, _a, out: kept.append(out) and None)
            if hook_layer is not None else None)
    x = images.to(model_device(model)).detach().requires_grad_(True)
    try:
        logits = model(x)
        score = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
        grads = torch.autograd.grad(score, [x, *kept])
    finally:
        if hook is not None:
            hook.remove()
        model.train(was_training)
    if not kept:
        return grads[0], None, None
    return grads[0], kept[0].detach(), grads[1]


def grad_cam(model: nn.Module, images: torch.Tensor, return_empty: bool = False
             ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """B x h x w Grad-CAM maps (CPU, sum 1) at the first attention layer's output for each image's predicted class;
    an empty map (all zero after the ReLU) comes back uniform, and `return_empty=True` also returns which (bool B)."""
    layer = _check(model)
    _, features, grads = _predicted_logit_gradient(model, images, layer)
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * features).sum(1)).float().cpu()  # B x h x w
    total = cam.sum(dim=(1, 2), keepdim=True)
    empty = total[:, 0, 0] <= 0
    maps = torch.where(total > 0, cam / total.clamp_min(1e-12), torch.full_like(cam, 1 / cam[0].numel()))
    return (maps, empty) if return_empty else maps


def input_x_gradient(model: nn.Module, images: torch.Tensor, map_size: tuple[int, int]) -> torch.Tensor:
    """B x h x w: |input x gradient| of the predicted logit, summed over colour channels and over each map
    cell's patch, normalised to sum 1. On the CPU."""
    grad, _, _ = _predicted_logit_gradient(model, images, None)
    attribution = (images.to(grad.device) * grad).abs().sum(1, keepdim=True).float().cpu()  # B x 1 x H x W
    cells = torch.nn.functional.adaptive_avg_pool2d(attribution, map_size)[:, 0]
    return cells / cells.sum(dim=(1, 2), keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def deletion_insertion(model: nn.Module, images: torch.Tensor, order: torch.Tensor, map_size: tuple[int, int],
                       steps: int = 16, batch_size: int = 250) -> dict[str, torch.Tensor]:
    """Per image, the area (0..1, the mean over steps + 1 points) under the probability of the class predicted
    on the intact image as cells are hidden (deletion) or revealed on a blank image (insertion) in `order` (B x N
    cell indices y*W + x, most important first). Returns {"deletion": B, "insertion": B} on the CPU."""
    b, n = order.shape
    if n != map_size[0] * map_size[1]:
        raise ValueError(f"order has {n} cells per image, the map {map_size[0]}x{map_size[1]} has "
                         f"{map_size[0] * map_size[1]}; pass a full ranking of every cell")
    was_training = model.training
    model.eval()
    device = model_device(model)
    counts = [round(k * n / steps) for k in range(steps + 1)]
    out = {"deletion": torch.zeros(b), "insertion": torch.zeros(b)}
    try:
        for start in range(0, b, batch_size):
            x = images[start:start + batch_size].to(device)
            o = order[start:start + batch_size].to(device)
            target = model(x).argmax(1, keepdim=True)
            curves = {"deletion": [], "insertion": []}
            for k in counts:
                shown = patch_mask(o[:, :k], map_size, tuple(x.shape[-2:])) if k else torch.zeros(
                    len(x), 1, *x.shape[-2:], dtype=torch.bool, device=device)
                for name, keep in (("deletion", ~shown), ("insertion", shown)):
                    probs = model(torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=device))).float()
                    curves[name].append(probs.softmax(1).gather(1, target)[:, 0].cpu())
            for name in curves:
                out[name][start:start + len(x)] = torch.stack(curves[name], 1).mean(1)
    finally:
        model.train(was_training)
    return out


def saliency_areas(model: nn.Module, images: torch.Tensor, steps: int = 16, seed: int = 0
                   ) -> tuple[dict[str, dict[str, torch.Tensor]], torch.Tensor]:
    """Deletion and insertion areas of each ranking (attention received, Grad-CAM, input x gradient, random) on
    normalised `images`: ({ranking: {"deletion": B, "insertion": B}}, the images whose Grad-CAM map is empty)."""
    _check(model)
    received = attention_received(model, images)
    map_size = tuple(received.shape[-2:])
    cam, empty = grad_cam(model, images, return_empty=True)
    g = torch.Generator().manual_seed(seed)
    rankings: dict[str, Callable[[], torch.Tensor]] = {
        "attention (weight received)": lambda: received,
        "Grad-CAM": lambda: cam,
        "input x gradient": lambda: input_x_gradient(model, images, map_size),
        "random order": lambda: torch.rand(received.shape, generator=g),
    }
    areas = {}
    for name, scores in rankings.items():
        order = scores().flatten(1).argsort(dim=1, descending=True, stable=True)
        areas[name] = deletion_insertion(model, images, order, map_size, steps)
    return areas, empty


def summarise_areas(areas: dict[str, dict[str, torch.Tensor]], where: torch.Tensor | None = None
                    ) -> dict[str, dict[str, float]]:
    """Mean and 95 % half-width over images of each ranking's `saliency_areas`, where the bool mask `where` is True."""
    table = {}
    for name, kinds in areas.items():
        table[name] = {}
        for kind, values in kinds.items():
            kept = values if where is None else values[where]
            mean, half = summarise(kept.tolist())
            table[name][kind] = mean
            table[name][f"{kind}_ci95"] = half
    return table
