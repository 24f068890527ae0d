"""Self-attention over the pixels of a feature map, one step per function, and the layer they add up to
(`SelfAttention`). B x C x H x W is read as B sequences of HW tokens:

    scores  = Q Kᵀ / sqrt(d_k)        (B x heads x HW x HW)
    weights = softmax(scores, dim=-1)  (each row sums to 1; row y*W + x belongs to pixel (y, x))
    context = weights V                (B x heads x HW x d_v -> B x C x H x W)"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from .runtime import model_device

MAX_EXPLICIT_ATTENTION_GIB = 4.0  # a larger explicit attention matrix is refused, not allocated


class AttentionMemoryError(MemoryError):
    """An explicit HW x HW attention matrix was requested that would not fit in memory."""


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """B x C x H x W feature map -> B x HW x C pixel tokens, pixel (y, x) at index y*W + x."""
    if x.dim() != 4:
        raise ValueError(f"to_tokens expects a 4-D B x C x H x W feature map, got {x.dim()}-D with shape "
                         f"{tuple(x.shape)}; add a batch axis with x.unsqueeze(0) for one C x H x W map")
    b, c, h, w = x.shape
    return x.reshape(b, c, h * w).transpose(1, 2)


def from_tokens(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """B x HW x C pixel tokens -> B x C x H x W feature map (the inverse of `to_tokens`)."""
    b, n, c = tokens.shape
    if n != height * width:
        raise ValueError(f"expected {height}*{width}={height * width} tokens, got {n}")
    return tokens.transpose(1, 2).reshape(b, c, height, width)


def attention_scores(q: torch.Tensor, k: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Q Kᵀ / sqrt(d_k): (..., N, d_k) x (..., M, d_k) -> (..., N, M); `scale` replaces 1/sqrt(d_k) if given.
    q is scaled before the product so float16 scores (max 65504) can't overflow to inf first."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return (q * scale) @ k.transpose(-2, -1)


def attention_weights(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the keys (last axis): each row sums to 1. In float32, so small differences survive bf16 autocast."""
    return torch.softmax(scores.float(), dim=-1)


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit attention that also returns the weights: q (..., N, d_k), k (..., M, d_k), v (..., M, d_v) ->
    (context (..., N, d_v), weights (..., N, M)). Same context as `F.scaled_dot_product_attention(q, k, v)`."""
    weights = attention_weights(attention_scores(q, k))
    return weights.to(v.dtype) @ v, weights


def pixel_index(y: int, x: int, width: int) -> int:
    """Row of the HW x HW attention matrix that belongs to query pixel (y, x): y*W + x (not x*y)."""
    return y * width + x


def attention_map(weights: torch.Tensor, y: int, x: int, height: int, width: int) -> torch.Tensor:
    """One query pixel's attention over the image: row `y*W + x` of (..., HW, HW), reshaped to H x W."""
    if weights.shape[-1] != height * width or weights.shape[-2] != height * width:
        raise ValueError(f"expected weights ending in {height * width} x {height * width} "
                         f"for a {height}x{width} map, got shape {tuple(weights.shape)}")
    if not (0 <= y < height and 0 <= x < width):
        raise ValueError(f"pixel (y={y}, x={x}) is outside the {height}x{width} map")
    return weights[..., pixel_index(y, x, width), :].reshape(*weights.shape[:-2], height, width)


def attention_bytes(batch: int, heads: int, height: int, width: int,
                    dtype: torch.dtype = torch.float32) -> int:
    """Bytes of one explicit B x heads x HW x HW attention matrix (flash attention never builds it)."""
    n = height * width
    return batch * heads * n * n * torch.empty((), dtype=dtype).element_size()


# --- 2-D relative position (notebook 05) ------------------------------------------------------

def relative_position_index(height: int, width: int) -> torch.Tensor:
    """HW x HW long tensor: entry (query, key) is the slot of offset (dy, dx) = key - query in a (2H-1) x (2W-1)
    table, (dy + H - 1) * (2W - 1) + (dx + W - 1). A bias looked up through it depends only on the offset."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    y, x = ys.flatten(), xs.flatten()  # position of token y*W + x
    dy = y[None, :] - y[:, None]  # key row minus query row, -(H-1)..H-1
    dx = x[None, :] - x[:, None]
    return (dy + height - 1) * (2 * width - 1) + (dx + width - 1)


class SelfAttention(nn.Module):
    """Self-attention over the H*W pixels of a B x C x H x W map (SAGAN-style, with heads); values keep C channels.

    Args:
        heads: attention heads; `in_channels` and `qk_channels` must divide by it.
        qk_channels: query/key channels (default C; SAGAN uses C // 8); d_k = qk_channels // heads.
        residual: out = gamma * context + x with a learned `gamma` from `gamma_init`; False: out = context (the
            tutorial's written summary). `gamma_init` 0 (SAGAN) starts as the identity, but then query, key and
            value get no gradient until gamma moves (notebook 04).
        qk_norm: cosine scores times a learned per-head multiplier, the temperature (Swin V2's 1/tau: larger is
            sharper; from `temperature_init`, capped at 100), so sharpness doesn't depend on the size of the features.
        position: "relative" (needs `size` = (H, W)): a learned per-head bias per offset (dy, dx), as in Swin
            (Liu et al. 2021); Shaw et al. 2018 and Bello et al. 2019 use offset embeddings q·r instead.
        uniform: every weight 1/HW, in training too (the trained-uniform control, Wiegreffe & Pinter 2019).

    `forward(x)` uses `F.scaled_dot_product_attention`; `forward(x, return_attention=True)` the explicit path, also
    returning the weights, B x heads x HW x HW."""

    def __init__(self, in_channels: int, heads: int = 1, qk_channels: int | None = None,
                 residual: bool = True, gamma_init: float = 0.0, qk_norm: bool = False,
                 temperature_init: float = 10.0, position: str | None = None,
                 size: tuple[int, int] | None = None, uniform: bool = False) -> None:
        super().__init__()
        qk_channels = in_channels if qk_channels is None else qk_channels
        if heads < 1:
            raise ValueError(f"heads must be >= 1 and divide in_channels={in_channels} and "
                             f"qk_channels={qk_channels}, got heads={heads}; use heads=1 for one head")
        for name, value in (("in_channels", in_channels), ("qk_channels", qk_channels)):
            if value % heads:
                raise ValueError(f"{name}={value} must be divisible by heads={heads}")
        if position not in (None, "relative"):
            raise ValueError(f"position must be None or 'relative', got {position!r}")
        if position is not None and size is None:
            raise ValueError("position='relative' needs size=(H, W), the size of the map the layer attends "
                             "over: its table holds one bias per offset (dy, dx) on that map")
        self.in_channels, self.heads, self.qk_channels = in_channels, heads, qk_channels
        self.qk_norm, self.position = qk_norm, position
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.query = nn.Conv2d(in_channels, qk_channels, kernel_size=1)
        self.key = nn.Conv2d(in_channels, qk_channels, kernel_size=1)
        self.value = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.full((1,), float(gamma_init))) if residual else None
        self.log_temperature = (nn.Parameter(torch.full((heads,), math.log(temperature_init)))  # log: stays > 0
                                if qk_norm else None)
        if position == "relative":
            h, w = self.size
            self.position_table = nn.Parameter(torch.zeros(heads, (2 * h - 1) * (2 * w - 1)))
            self.register_buffer("position_index", relative_position_index(h, w), persistent=False)
        else:
            self.position_table = None
        self._captured: list[torch.Tensor] | None = None  # set by `capture_attention`
        self.uniform = uniform  # always attend uniformly, in training too (the trained-uniform control)
        self._uniform = uniform  # set by `uniform_attention` (restored to `uniform` after it)
        if uniform:  # the scores are never computed: freeze what only they use (DDP and the optimiser skip it)
            for p in [*self.query.parameters(), *self.key.parameters(), self.log_temperature, self.position_table]:
                if p is not None:
                    p.requires_grad_(False)
        self.use_sdpa = True  # False: always the explicit path (what SDPA's math fallback does), for timing

    def extra_repr(self) -> str:
        extras = "".join([", qk_norm=True" if self.qk_norm else "",
                          f", position={self.position!r}, size={self.size}" if self.position else "",
                          ", uniform=True" if self.uniform else ""])
        return (f"in_channels={self.in_channels}, heads={self.heads}, qk_channels={self.qk_channels}, "
                f"residual={self.gamma is not None}{extras}")

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"SelfAttention expects a 4-D B x C x H x W tensor, got {x.dim()}-D with "
                             f"shape {tuple(x.shape)}; add a batch axis with x.unsqueeze(0) for one image")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"SelfAttention expects {self.in_channels} channels (dim 1), got {x.shape[1]} "
                             f"in shape {tuple(x.shape)}; is the tensor channels-last (B x H x W x C)?")
        if self.position is not None and tuple(x.shape[-2:]) != self.size:
            raise ValueError(f"this layer's relative-position table was built for {self.size[0]}x{self.size[1]} "
                             f"maps, got {x.shape[-2]}x{x.shape[-1]} in shape {tuple(x.shape)}; build it with "
                             f"size=({x.shape[-2]}, {x.shape[-1]})")

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """B x (heads*d) x H x W -> B x heads x HW x d, stride 1 along d for fused SDPA: a view if channels-last."""
        b, c, h, w = t.shape
        t = t.reshape(b, self.heads, c // self.heads, h * w).transpose(-2, -1)
        return t if t.stride(-1) == 1 else t.contiguous()

    def position_bias(self) -> torch.Tensor | None:
        """heads x HW x HW: the learned bias added to the scores (None without position='relative')."""
        if self.position_table is None:
            return None
        return self.position_table[:, self.position_index]

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """B x heads x HW x HW scores of head-split queries and keys, position bias included."""
        q, k, scale = self._prepare_qk(q, k)
        s = attention_scores(q, k, scale=scale)
        bias = self.position_bias()
        return s if bias is None else s + bias

    def _prepare_qk(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float | None]:
        """Cosine attention folds the temperature into q (so SDPA can use scale=1); else q, k, 1/sqrt(d_k)."""
        if not self.qk_norm:
            return q, k, None
        temperature = self.log_temperature.clamp(max=math.log(100.0)).exp().view(-1, 1, 1)
        return F.normalize(q, dim=-1) * temperature.to(q.dtype), F.normalize(k, dim=-1), 1.0

    def forward(self, x: torch.Tensor, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self._check_input(x)
        b, c, h, w = x.shape
        explicit = return_attention or self._captured is not None or not self.use_sdpa
        if explicit:  # check before allocating anything
            need = attention_bytes(b, self.heads, h, w, torch.float32)
            if need > MAX_EXPLICIT_ATTENTION_GIB * 2**30:
                raise AttentionMemoryError(
                    f"the explicit attention matrix for a batch of {b} at {h}x{w} pixels with {self.heads} "
                    f"head(s) needs about {need / 2**30:.1f} GiB (limit {MAX_EXPLICIT_ATTENTION_GIB} GiB): "
                    f"pass fewer images, downsample the map before attention, or call without "
                    f"return_attention (a fused SDPA kernel, where one is eligible, does not store the matrix)")
        v = self._heads(self.value(x))
        if self._uniform:  # `uniform_attention`: every weight exactly 1/HW, scores and biases ignored
            context = v.mean(dim=-2, keepdim=True).expand_as(v)
            weights = (torch.full((b, self.heads, h * w, h * w), 1.0 / (h * w), device=x.device)
                       if explicit else None)
        else:
            q, k = self._heads(self.query(x)), self._heads(self.key(x))
            if explicit:
                weights = attention_weights(self.scores(q, k))
                context = weights.to(v.dtype) @ v
            else:
                q, k, scale = self._prepare_qk(q, k)
                bias = self.position_bias()
                context = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=None if bias is None else bias.to(q.dtype), scale=scale)
                weights = None
        if self._captured is not None:
            self._captured.append(weights.detach())
        context = context.transpose(-2, -1).reshape(b, c, h, w)  # heads side by side along channels again
        out = context if self.gamma is None else self.gamma * context + x
        return (out, weights) if return_attention else out


class AttentionPool(nn.Module):
    """Attention pooling, B x C x H x W -> B x C, in place of average pooling: per head, one query from the mean
    pixel (CLIP's ResNet `AttentionPool2d`, Radford et al. 2021) weighs the pixels, so where to look can depend on
    the image. Scores: q·k / sqrt(d_k) plus a learned bias per head and cell. Each head pools its own C/heads
    channels with no value projection, so uniform weights are exactly average pooling. `channels`, `qk_channels`
    (default C) must divide by `heads`; `size` is the map's (H, W); `uniform` always averages (the trained-uniform
    control). `forward(x, return_attention=True)` also returns the weights, B x heads x HW."""

    def __init__(self, channels: int, heads: int = 8, size: tuple[int, int] = (4, 4),
                 qk_channels: int | None = None, uniform: bool = False) -> None:
        super().__init__()
        qk_channels = channels if qk_channels is None else qk_channels
        for name, value in (("channels", channels), ("qk_channels", qk_channels)):
            if heads < 1 or value % heads:
                raise ValueError(f"{name}={value} must be divisible by heads={heads} (heads >= 1)")
        self.channels, self.heads, self.qk_channels = channels, heads, qk_channels
        self.size = (int(size[0]), int(size[1]))
        self.query = nn.Linear(channels, qk_channels)
        self.key = nn.Conv2d(channels, qk_channels, kernel_size=1)
        self.position_table = nn.Parameter(torch.zeros(heads, self.size[0] * self.size[1]))
        self.uniform = uniform
        self._uniform = uniform  # set by `uniform_attention`
        self._captured: list[torch.Tensor] | None = None  # set by `collect_pooling`
        if uniform:
            for p in [*self.query.parameters(), *self.key.parameters(), self.position_table]:
                p.requires_grad_(False)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, heads={self.heads}, qk_channels={self.qk_channels}, size={self.size}"
                + (", uniform=True" if self.uniform else ""))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """B x heads x HW scores of the mean-pixel query against every pixel, position bias included."""
        b, _, h, w = x.shape
        d = self.qk_channels // self.heads
        q = self.query(x.mean(dim=(2, 3))).view(b, self.heads, 1, d)  # the mean pixel's query: B x heads x 1 x d
        k = self.key(x).reshape(b, self.heads, d, h * w).transpose(-2, -1)  # pixel keys: B x heads x HW x d
        scores = attention_scores(q, k) + self.position_table[:, None]  # B x heads x 1 x HW
        return scores.squeeze(-2)

    def forward(self, x: torch.Tensor, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.channels or tuple(x.shape[-2:]) != self.size:
            raise ValueError(f"AttentionPool expects B x {self.channels} x {self.size[0]} x {self.size[1]} maps, "
                             f"got shape {tuple(x.shape)}; build it with channels and size of the map it pools")
        b, c, h, w = x.shape
        values = x.reshape(b, self.heads, c // self.heads, h * w)  # each head pools its own channels
        if self._uniform:  # average pooling, computed as such
            weights = torch.full((b, self.heads, h * w), 1.0 / (h * w), dtype=torch.float32, device=x.device)
            pooled = x.mean(dim=(2, 3))
        else:
            weights = attention_weights(self.scores(x))  # float32 softmax over the pixels
            pooled = (values * weights.to(values.dtype)[:, :, None]).sum(-1).reshape(b, c)
        if self._captured is not None:
            self._captured.append(weights.detach())
        return (pooled, weights) if return_attention else pooled


def attention_layers(model: nn.Module) -> list[SelfAttention]:
    """Every `SelfAttention` in `model`, in the order `model.modules()` lists them."""
    return [m for m in model.modules() if isinstance(m, SelfAttention)]


def attention_gammas(model: nn.Module) -> dict[str, float]:
    """The residual weight `gamma` of every attention layer, by module name (how much attention is used)."""
    layers = set(attention_layers(model))
    return {name: float(m.gamma.detach()) for name, m in model.named_modules()
            if m in layers and m.gamma is not None}


def attention_pools(model: nn.Module) -> list[AttentionPool]:
    """Every `AttentionPool` in `model`, in the order `model.modules()` lists them."""
    return [m for m in model.modules() if isinstance(m, AttentionPool)]


def score_parameters(model: nn.Module) -> tuple[set[nn.Parameter], set[nn.Parameter]]:
    """(query/key parameters, temperature and position tables) of every attention layer and pool: what shapes
    the scores, which recipes train at their own learning rate. The tables are never weight-decayed."""
    qk, tables = set(), set()
    for layer in [*attention_layers(model), *attention_pools(model)]:
        qk.update([*layer.query.parameters(), *layer.key.parameters()])
        tables.update(p for p in (getattr(layer, "log_temperature", None), layer.position_table) if p is not None)
    return qk, tables


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside the block every `SelfAttention` takes its explicit path and appends its B x heads x HW x HW weights
    to the yielded list; outputs are unchanged."""
    layers = attention_layers(model)
    captured: list[torch.Tensor] = []
    for layer in layers:
        layer._captured = captured
    try:
        yield captured
    finally:
        for layer in layers:
            layer._captured = None


@contextmanager
def uniform_attention(model: nn.Module, which: str = "all") -> Iterator[nn.Module]:
    """Inside the block every `SelfAttention` weight is exactly 1/HW and every `AttentionPool` averages: the
    ablation "what if this layer only averaged?". `which`: "all", "layers" or "pools". Flags restored on exit."""
    if which not in ("all", "layers", "pools"):
        raise ValueError(f"which must be 'all', 'layers' or 'pools', got {which!r}")
    layers = (attention_layers(model) if which != "pools" else []) + (attention_pools(model) if which != "layers" else [])
    if which != "all" and not layers:
        raise ValueError(f"{type(model).__name__} has no {'SelfAttention layer' if which == 'layers' else 'AttentionPool'} "
                         f"to make uniform (which={which!r}); use which='all' or a model that has one")
    before = [layer._uniform for layer in layers]
    for layer in layers:
        layer._uniform = True
    try:
        yield model
    finally:
        for layer, flag in zip(layers, before):
            layer._uniform = flag


def collect_maps(model: nn.Module, images: torch.Tensor
                 ) -> tuple[torch.Tensor, list[torch.Tensor], list[tuple[int, int]], torch.Tensor | None,
                            tuple[int, int] | None]:
    """One eval-mode, no-grad pass keeping every map on the CPU: (logits, layer weights and map sizes as in
    `collect_attention`, pool weights B x heads x HW and pool map size, or None without an `AttentionPool`)."""
    if images.dim() != 4:
        raise ValueError(f"expected a B x C x H x W batch, got shape {tuple(images.shape)}; "
                         f"add a batch axis with images.unsqueeze(0) for one image")
    layers, pools = attention_layers(model), attention_pools(model)
    sizes: list[tuple[int, int]] = []
    hooks = [layer.register_forward_pre_hook(lambda _m, args: sizes.append(tuple(args[0].shape[-2:])))
             for layer in layers]
    pooled: list[torch.Tensor] = []
    for pool in pools:
        pool._captured = pooled
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), capture_attention(model) as weights:
            logits = model(images.to(model_device(model)))
    finally:
        for hook in hooks:
            hook.remove()
        for pool in pools:
            pool._captured = None
        for module, training in modes.items():
            module.training = training
    return (logits, [w.cpu() for w in weights], sizes, pooled[0].cpu() if pools else None,
            pools[0].size if pools else None)


def collect_attention(model: nn.Module, images: torch.Tensor
                      ) -> tuple[torch.Tensor, list[torch.Tensor], list[tuple[int, int]]]:
    """(logits on the model's device; weights, sizes on the CPU) of `model` on `images` (eval mode, no grad, then
    restored): `weights[i]` B x heads x HW x HW of the i-th `SelfAttention` in forward order, `sizes[i]` its (H, W)."""
    if not attention_layers(model):
        raise ValueError(f"{type(model).__name__} has no SelfAttention layer, so there is no attention to show; "
                         f"load a model built with attention=True")
    logits, weights, sizes, _, _ = collect_maps(model, images)
    return logits, weights, sizes


def collect_pooling(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """`collect_attention` for the `AttentionPool`: (logits, weights B x heads x HW, pooled map's (H, W))."""
    if not attention_pools(model):
        raise ValueError(f"{type(model).__name__} has no AttentionPool; build one with pool='attention'")
    logits, _, _, pool, size = collect_maps(model, images)
    return logits, pool, size


def channel_attention_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The written summary's scores `Q.view(B, C, -1) @ K.view(B, C, -1).transpose(-1, -2)`, before its / sqrt(C).
    q, k: B x C x H x W -> B x C x C: whole channel maps are compared, not pixels (that is B x HW x HW)."""
    if q.dim() != 4 or q.shape != k.shape:
        raise ValueError(f"expected two B x C x H x W maps of the same shape, got {tuple(q.shape)} and "
                         f"{tuple(k.shape)}")
    b, c = q.shape[:2]
    return q.view(b, c, -1) @ k.view(b, c, -1).transpose(-1, -2)


def flash_attention_bytes(batch: int, heads: int, height: int, width: int, head_dim: int,
                          dtype: torch.dtype = torch.float32) -> int:
    """Bytes a flash-style kernel keeps besides its inputs: the output (B x heads x HW x head_dim in
    `dtype`) and one float32 log-sum-exp per query row (for the backward pass). No HW x HW matrix."""
    n = height * width
    return batch * heads * n * (head_dim * torch.empty((), dtype=dtype).element_size() + 4)


def attention_memory_table(sizes: tuple[int, ...] = (8, 16, 32, 64), batch: int = 1, heads: int = 1,
                           head_dim: int = 64, dtype: torch.dtype = torch.float32) -> list[dict[str, int]]:
    """One dict per side s in `sizes`, an s x s map: side, pixels, explicit_bytes, flash_bytes."""
    return [dict(side=s, pixels=s * s, explicit_bytes=attention_bytes(batch, heads, s, s, dtype),
                 flash_bytes=flash_attention_bytes(batch, heads, s, s, head_dim, dtype)) for s in sizes]
