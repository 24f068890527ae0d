"""Check cells for the notebooks' exercises: `check("08.1", answer)` or `check("04.2", split_heads(t, 4), t, 4)`
says whether an answer is right. EXPECTED maps each exercise to a function (of the cell's inputs, if any) that
computes the answer, so a check cell names the exercise, never the answer (this file is for teachers)."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .analysis import entropy_ratio, forward_flops, peak_ratio, query_dependence, uniform_attention_distance
from .attention import (AttentionPool, SelfAttention, attention_bytes, attention_scores, channel_attention_scores,
                        collect_attention, pixel_index, relative_position_index, to_tokens)
from .models import AttentionCNN, CNNWithSelfAttention, build_recipe_model
from .recipes import get_recipe, learning_rate
from .visualisation import map_pixel

EXPECTED: dict[str, Callable[..., Any]] = {}
TOLERANCE: dict[str, float] = {}  # how far off an answer may be, for the exercises that ask "about how many"


def exercise(key: str, atol: float | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the function computes exercise `key`'s answer ("NN.k"); `atol`: accepted distance (default 1e-4)."""
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        EXPECTED[key] = fn
        if atol is not None:
            TOLERANCE[key] = atol
        return fn
    return register


def tolerance(key: str) -> float:
    """The accepted distance from exercise `key`'s expected value."""
    return TOLERANCE.get(key, 1e-4)


def _same(answer: Any, expected: Any, atol: float) -> tuple[bool, str]:
    """(right?, a hint that does not reveal the expected value)."""
    if isinstance(expected, bool):  # True is not 1: a yes/no question wants True or False
        if not isinstance(answer, bool):
            return False, f"answer True or False, got {type(answer).__name__} {answer!r}"
        return answer is expected, "that is the other one"
    if isinstance(answer, bool):
        return False, f"expected a number, got the bool {answer!r}"
    if isinstance(expected, torch.Tensor) or isinstance(answer, torch.Tensor):
        if not isinstance(answer, torch.Tensor):
            return False, f"expected a tensor, got {type(answer).__name__}"
        a, e = answer.detach().cpu().double(), torch.as_tensor(expected).detach().cpu().double()
        if a.shape != e.shape:
            return False, f"expected shape {tuple(e.shape)}, got {tuple(a.shape)}"
        return bool(torch.allclose(a, e, atol=atol, rtol=0)), "same shape, but the values differ"
    if isinstance(expected, (tuple, list, torch.Size)):
        if not isinstance(answer, (tuple, list, torch.Size)):
            return False, f"expected a {type(expected).__name__} of {len(expected)} items, got {type(answer).__name__}"
        if len(answer) != len(expected):
            return False, f"expected {len(expected)} items, got {len(answer)}"
        return all(_same(a, e, atol)[0] for a, e in zip(answer, expected)), "at least one item is off"
    if isinstance(expected, str):
        return answer == expected, f"got {answer!r}"
    try:
        ok = math.isclose(float(answer), float(expected), abs_tol=atol, rel_tol=0)
    except (TypeError, ValueError):
        return False, f"expected a number, got {type(answer).__name__}"
    if isinstance(expected, int) and not isinstance(answer, int) and ok:
        return False, "right value, but give it as an int"
    return ok, "not this number"


def check(key: str, answer: Any, *inputs: Any, atol: float | None = None) -> None:
    """Print whether `answer` to exercise `key` is right ("correct" or "not yet (hint)"); `inputs` go to the
    expected-value function (when the learner writes a function). An answer still None prints a reminder."""
    if key not in EXPECTED:
        raise KeyError(f"no exercise {key!r}; known: {', '.join(sorted(EXPECTED))}")
    if answer is None:
        print(f"exercise {key}: not answered yet - replace None with your answer and run this cell again")
        return
    try:
        ok, hint = _same(answer, EXPECTED[key](*inputs), tolerance(key) if atol is None else atol)
    except Exception as e:  # a learner's half-finished answer should not crash the check
        ok, hint = False, f"could not compare ({type(e).__name__}: {e})"
    print(f"exercise {key}: {'correct' if ok else 'not yet (' + hint + ')'}")


# === The expected answers, notebook by notebook. Worked out by hand (the expression is the working) or measured ===
EXPECTED.update({
    "00.1": lambda: 50_000 * 3 * 32 * 32,  # uint8 training images: one byte per number
    "00.2": lambda: 256 * 1 * (32 * 32) ** 2 * 4 / 2**20,  # MiB of float32 B x heads x HW x HW weights
    # a sum of N products with non-zero mean grows like N: 128*128 / (32*32) = 16; measured 14.7: 14..18 pass
    "01.3": lambda: 16,
    "02.1": lambda: math.log(32 * 32 - 1),  # e^s / (e^s + 1023) = 1/2
    "02.3": lambda row: torch.softmax(row, dim=-1),
    "03.3": lambda weights, values, y, x, width: weights[0, y * width + x] @ values[0],
    "05.1": lambda: 4 * (2 * 16 - 1) ** 2,
    "05.4": lambda: False,
    "07.1": lambda: (0.25, 1.0),  # halving q and k: a dot-product score x 1/4, a cosine score unchanged
    "07.2": lambda temperature: 2 * temperature,  # scores in [-T, T]: weights differ by at most e^(2T)
    "08.2": lambda: (2 * 4 + 1) ** 2 * 2,
    # 176 random batches of 256 from 45,000 images: the chance an image is never drawn (about 1/e)
    "08.4": lambda: (1 - 1 / 45_000) ** (math.ceil(45_000 / 256) * 256),
    "10.1": lambda: 100 * 1.96 * math.sqrt(0.5 * 0.5 / 2000),  # 95 % band of a guesser on 2,000 images
    # 2x2 marks 12 apart: a unit sees a pixel of each when 12 - 2 + 1 <= 2 * depth
    "10.2": lambda: min(depth for depth in range(1, 50) if 12 - 2 + 1 <= 2 * depth),
    # measured: LongRangeCNN(depth=1, attention=False, pool="max"), seeds 0-4: 1.0, 0.9995, 1.0, 1.0, 1.0
    "10.5": lambda: True,
    "10.4": lambda: (30, 1),
    "11.3": lambda x, pool: pool(x).detach(),
    # one head per channel scoring its own value: softmax(t * v) tends to one-hot at the largest v
    "11.4": lambda: "max",
})
TOLERANCE.update({"01.3": 2, "02.1": 0.01, "07.2": 0.01, "08.4": 0.01, "10.1": 0.05})


# Answers computed with the package's own code.
def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _cpu_recipe_steps() -> int:
    r = get_recipe("cpu")
    return math.ceil((50_000 - r.val_size) / r.batch_size) * r.epochs


EXPECTED.update({
    "01.2": lambda q, k: attention_scores(q, k)[0, pixel_index(1, 0, 2), pixel_index(0, 1, 2)].item(),
    "01.4": lambda q_map, k_map: attention_scores(to_tokens(q_map), to_tokens(k_map)),
    # the right row of query (31, 0) on a 32-wide map, and the pixel that row x*y belongs to
    "02.2": lambda: (pixel_index(31, 0, 32), divmod(0 * 31, 32)),
    "03.2": lambda: attention_bytes(32, 4, 16, 16) / 2**20,  # batch 32, 4 heads, a 16 x 16 map
    "04.1": lambda: _parameters(SelfAttention(64, qk_channels=8)),
    "05.2": lambda: int(relative_position_index(8, 8)[1 * 8 + 0, 0 * 8 + 2]),  # query (1, 0), key (0, 2)
    "06.1": lambda: _parameters(CNNWithSelfAttention(image_size=64).fc),
    "08.1": _cpu_recipe_steps,
    "09.2": lambda: map_pixel(17, 30, (32, 32), (8, 8)),
    "09.3": lambda weights: query_dependence(weights[None]),
    "09.4": lambda: uniform_attention_distance(2, 2),
    "11.1": lambda: (8 * 4 * 4, 128 // 8),  # AttentionPool(128, heads=8, size=(4, 4)): weights, channels per head
    "11.2": lambda: _parameters(AttentionPool(128, heads=8, size=(4, 4))),
})


@exercise("01.1")
def _score_shapes():
    q = torch.zeros(4, 8, 16, 16)  # queries (and keys) of 4 maps of 64 x 16 x 16, 8 query channels
    return tuple(attention_scores(to_tokens(q), to_tokens(q)).shape), tuple(channel_attention_scores(q, q).shape)


@exercise("03.1")
def _uniform_context() -> list[float]:
    """Weights all 1/4: the context is the plain mean of the tiny map's values."""
    values = torch.tensor([[1., 0., 1.], [0., 1., 1.], [0., 1., 0.], [1., 0., 0.]])  # the 2x2 map's pixels
    return values.mean(0).tolist()


@exercise("04.2")
def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, c, h, w = t.shape  # head i takes channels i*d .. (i+1)*d - 1
    return t.reshape(b, heads, c // heads, h * w).transpose(-2, -1)


@exercise("04.3")
def _flip_equivariant() -> bool:
    """Is a position-free layer's output on a mirrored map the mirrored output?"""
    x = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    layer = SelfAttention(16, heads=4)
    with torch.no_grad():
        layer.gamma.fill_(0.7)
        return bool(torch.allclose(layer(x.flip(-1)), layer(x).flip(-1), atol=1e-5))


@exercise("05.3")
def _copy_the_pixel_above(img: torch.Tensor) -> torch.Tensor:
    out = img.clone()
    out[..., 1:, :] = img[..., :-1, :]
    out[..., 0, :] = img.mean(dim=(-2, -1))[..., None]  # no pixel above: the average of all pixels
    return out


@exercise("06.2")
def _stage1_attention() -> tuple[int, int]:
    """(tokens, weight-matrix entries per image and head) of an AttentionCNN attending after stage 1."""
    _, weights, _ = collect_attention(AttentionCNN(attention_at=[1]), torch.zeros(1, 3, 32, 32))
    n, m = weights[0].shape[-2:]
    return int(m), int(n * m)


@exercise("06.3")
def _attention_cost_after_stage_1_over_stage_2() -> float:
    """The attention layer's matrix products after stage 1 (16 x 16, 32 channels) over stage 2 (8 x 8, 64)."""
    cost = {stage: forward_flops(build_recipe_model(get_recipe("cpu"), None, attention_at=[stage]))["attention"]
            for stage in (1, 2)}
    return cost[1] / cost[2]


@exercise("08.3")
def _step_of_the_peak_learning_rate() -> int:
    r, total = get_recipe("cpu"), _cpu_recipe_steps()
    lrs = [learning_rate(step, total, r.lr, r.warmup) for step in range(total)]
    return lrs.index(max(lrs))


@exercise("09.1", atol=1e-3)
def _peak_and_entropy_of_a_map_on_4_of_64_pixels() -> tuple[float, float]:
    weights = torch.zeros(1, 1, 64, 64)
    weights[..., :4] = 0.25  # every query's map: 1/4 on each of 4 pixels, 0 elsewhere
    return float(peak_ratio(weights)[0]), float(entropy_ratio(weights)[0])


@exercise("10.3", atol=0.005)
def _best_sum_rule_with_4_colours() -> float:
    """Best "same when both colours are in a fixed set of k of n" rule, half the images "same": a same pair is
    right when its colour is in the set, a different (ordered) pair unless both are."""
    n = 4
    return max(0.5 * k / n + 0.5 * (1 - k * (k - 1) / (n * (n - 1))) for k in range(n + 1))
