"""Check cells for the notebooks' exercises: say whether an answer is right, without showing the answer.

    check("08.1", row_of_3_6)                  # a value the learner works out
    check("04.3", my_layer(x), x)              # a function the learner writes, compared on given inputs

Each exercise has an entry in EXPECTED: a function that computes the expected value (from the inputs the
check cell passes, if any). The check cell names the exercise, never the answer, so reading the cell does
not give the answer away (reading this file does: it is here for teachers).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

EXPECTED: dict[str, Callable[..., Any]] = {}
TOLERANCE: dict[str, float] = {}  # how far off an answer may be, for the exercises that ask "about how many"


def exercise(key: str, atol: float | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the function computes the expected answer of exercise `key` ("NN.k": notebook, number);
    `atol`: the accepted distance from it (default 1e-4)."""
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
    """Print whether `answer` to exercise `key` is right ("correct" or "not yet (hint)").

    `inputs` are passed to the exercise's expected-value function (for exercises where the learner writes
    a function and the check cell runs it on some inputs). An answer still None prints a reminder.
    """
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


# === The expected answers, notebook by notebook ======================================================
# (Each notebook's section is edited with that notebook.)

# --- notebook 00 ---
@exercise("00.1")
def _bytes_of_training_images():
    return 50_000 * 3 * 32 * 32  # uint8: one byte per number


@exercise("00.2")
def _mib_of_attention_weights_for_batch_256() -> float:
    """MiB of float32 attention weights B x heads x HW x HW for 256 images of 32 x 32 pixels, one head."""
    return 256 * 1 * (32 * 32) ** 2 * 4 / 2**20


# --- notebook 01 ---
@exercise("01.1")
def _score_shapes():
    from .attention import attention_scores, channel_attention_scores, to_tokens
    q = torch.zeros(4, 8, 16, 16)  # queries (and keys) of 4 maps of 64 x 16 x 16, 8 query channels
    return tuple(attention_scores(to_tokens(q), to_tokens(q)).shape), tuple(channel_attention_scores(q, q).shape)


@exercise("01.2")
def _tiny_score(q, k):
    from .attention import attention_scores, pixel_index
    return attention_scores(q, k)[0, pixel_index(1, 0, 2), pixel_index(0, 1, 2)].item()


@exercise("01.3", atol=2)
def _channel_score_growth():
    # a sum of N products with a non-zero average grows like N: 128*128 / (32*32) = 16; the solution's own
    # measurement gives 14.37 / 0.98 = 14.7 from 8x8 to 32x32, so any int from 14 to 18 is accepted
    return 16


@exercise("01.4")
def _pixel_scores(q_map, k_map):
    from .attention import attention_scores, to_tokens
    return attention_scores(to_tokens(q_map), to_tokens(k_map))


# --- notebook 02 ---
@exercise("02.1", atol=0.01)
def _score_for_half_the_weight_among_1024_keys() -> float:
    """One key scores s, the other 1,023 score 0: its weight e^s / (e^s + 1023) is 1/2 at s = ln 1023."""
    return math.log(32 * 32 - 1)


@exercise("02.2")
def _row_and_wrong_pixel():
    from .attention import pixel_index
    y, x, width = 31, 0, 32
    return pixel_index(y, x, width), divmod(x * y, width)  # the right row; the pixel row x*y belongs to


@exercise("02.3")
def _stable_softmax(row):
    return torch.softmax(row, dim=-1)


# --- notebook 03 ---
@exercise("03.1")
def _uniform_context() -> list[float]:
    """All four weights of a query row are 1/4: the context is the plain mean of the tiny map's values."""
    values = torch.tensor([[1., 0., 1.], [0., 1., 1.], [0., 1., 0.], [1., 0., 0.]])  # the 2x2 map's pixels
    return values.mean(0).tolist()


@exercise("03.2")
def _explicit_mib() -> float:
    """MiB of one float32 explicit weight matrix: batch 32, 4 heads, a 16 x 16 map."""
    from .attention import attention_bytes
    return attention_bytes(32, 4, 16, 16) / 2**20


@exercise("03.3")
def _pixel_context(weights: torch.Tensor, values: torch.Tensor, y: int, x: int, width: int) -> torch.Tensor:
    """Context vector of query pixel (y, x) of the first image: row y*W + x of the weights times the values."""
    return weights[0, y * width + x] @ values[0]


# --- notebook 04 ---
@exercise("04.1")
def _layer_parameters() -> int:
    """Parameters of SelfAttention(64, qk_channels=8): weights, biases and gamma."""
    from .attention import SelfAttention
    return sum(p.numel() for p in SelfAttention(64, qk_channels=8).parameters())


@exercise("04.2")
def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """B x (heads*d) x H x W -> B x heads x HW x d; head i takes channels i*d .. (i+1)*d - 1."""
    b, c, h, w = t.shape
    return t.reshape(b, heads, c // heads, h * w).transpose(-2, -1)


@exercise("04.3")
def _flip_equivariant() -> bool:
    """Is a (position-free) attention layer's output on a left-right flipped map the flipped output?"""
    from .attention import SelfAttention
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 8, 8, generator=g)
    layer = SelfAttention(16, heads=4)
    with torch.no_grad():
        layer.gamma.fill_(0.7)
        return bool(torch.allclose(layer(x.flip(-1)), layer(x).flip(-1), atol=1e-5))


# --- notebook 05 ---
@exercise("05.1")
def _table_entries() -> int:
    return 4 * (2 * 16 - 1) ** 2


@exercise("05.2")
def _slot_of_up_one_right_two() -> int:
    from .attention import relative_position_index
    return int(relative_position_index(8, 8)[1 * 8 + 0, 0 * 8 + 2])  # query (1, 0), key (0, 2)


@exercise("05.3")
def _copy_the_pixel_above(img: torch.Tensor) -> torch.Tensor:
    out = img.clone()
    out[..., 1:, :] = img[..., :-1, :]
    out[..., 0, :] = img.mean(dim=(-2, -1))[..., None]  # no pixel above: the average of all pixels
    return out


@exercise("05.4")
def _equal_features_equal_weight() -> bool:
    return False


# --- notebook 06 ---
@exercise("06.1")
def _summary_linear_at_64() -> int:
    """Parameters of the summary's final linear layer for 64 x 64 images (128 channels, 10 classes)."""
    from .models import CNNWithSelfAttention
    return sum(p.numel() for p in CNNWithSelfAttention(image_size=64).fc.parameters())


@exercise("06.2")
def _stage1_attention() -> tuple[int, int]:
    """(tokens, weight-matrix entries per image and head) of an AttentionCNN attending after stage 1."""
    from .attention import collect_attention
    from .models import AttentionCNN
    _, weights, _ = collect_attention(AttentionCNN(attention_at=[1]), torch.zeros(1, 3, 32, 32))
    n, m = weights[0].shape[-2:]
    return int(m), int(n * m)


@exercise("06.3")
def _attention_cost_after_stage_1_over_stage_2() -> float:
    """How many times the attention layer's matrix products (scores and mix) cost more after stage 1 (16 x 16
    map, 32 channels) than after stage 2 (8 x 8, 64 channels) in the cpu recipe's network."""
    from .analysis import forward_flops
    from .models import build_recipe_model
    from .recipes import get_recipe
    recipe = get_recipe("cpu")
    cost = {stage: forward_flops(build_recipe_model(recipe, None, attention_at=[stage]))["attention"]
            for stage in (1, 2)}
    return cost[1] / cost[2]


# --- notebook 07 ---
@exercise("07.1")
def _halved_vectors() -> tuple[float, float]:
    """(factor of a dot-product score, factor of a cosine score) when q and k are both halved."""
    return (0.25, 1.0)


@exercise("07.2", atol=0.01)
def _log_largest_weight_ratio(temperature: float) -> float:
    """Scores in [-T, T]: two keys' softmax weights differ by at most e^(2T)."""
    return 2 * temperature


# --- notebook 08 ---
@exercise("08.1")
def _optimizer_steps_of_the_cpu_recipe() -> int:
    from .recipes import get_recipe
    r = get_recipe("cpu")
    return math.ceil((50_000 - r.val_size) / r.batch_size) * r.epochs


@exercise("08.2")
def _augmented_versions_of_one_image() -> int:
    return (2 * 4 + 1) ** 2 * 2


@exercise("08.3")
def _step_of_the_peak_learning_rate() -> int:
    from .recipes import get_recipe
    from .training import learning_rate
    r = get_recipe("cpu")
    total = _optimizer_steps_of_the_cpu_recipe()
    lrs = [learning_rate(step, total, r.lr, r.warmup) for step in range(total)]
    return lrs.index(max(lrs))


@exercise("08.4", atol=0.01)
def _fraction_never_drawn_by_random_batches() -> float:
    """The plain loop draws 176 batches of 256 uniformly at random from 45,000 images: the chance that a given
    image is never drawn (about 1/e)."""
    draws = math.ceil(45_000 / 256) * 256
    return (1 - 1 / 45_000) ** draws


# --- notebook 09 ---
@exercise("09.1", atol=1e-3)
def _peak_and_entropy_of_a_map_on_4_of_64_pixels() -> tuple[float, float]:
    """(peak x uniform, entropy ratio) of a map with weight 1/4 on 4 of the 64 pixels of an 8x8 map."""
    from .analysis import entropy_ratio, peak_ratio
    weights = torch.zeros(1, 1, 64, 64)
    weights[..., :4] = 0.25  # every query's map: 1/4 on each of 4 pixels, 0 elsewhere
    return float(peak_ratio(weights)[0]), float(entropy_ratio(weights)[0])


@exercise("09.2")
def _token_of_image_pixel_17_30() -> tuple[int, int]:
    from .visualisation import map_pixel
    return map_pixel(17, 30, (32, 32), (8, 8))


@exercise("09.3")
def _query_dependence_of(weights: torch.Tensor) -> torch.Tensor:
    from .analysis import query_dependence
    return query_dependence(weights[None])


@exercise("09.4")
def _uniform_distance_on_2x2() -> float:
    from .analysis import uniform_attention_distance
    return uniform_attention_distance(2, 2)


# --- notebook 10 ---
@exercise("10.1", atol=0.05)
def _chance_band_on_2000_test_images() -> float:
    """Half-width, in points, of the 95 % band of a guesser's accuracy on 2,000 two-class test images: 1.96
    standard deviations of a binomial fraction with p = 1/2."""
    return 100 * 1.96 * math.sqrt(0.5 * 0.5 / 2000)


@exercise("10.2")
def _depth_to_see_a_pixel_of_marks_12_apart() -> int:
    # 2x2 marks up to 12 apart need an image of at least 12 + 2 = 14 pixels a side (the notebook says 16 x 16)
    return min(depth for depth in range(1, 50) if 12 - 2 + 1 <= 2 * depth)


@exercise("10.3", atol=0.005)
def _best_sum_rule_with_4_colours() -> float:
    """Accuracy of the best "same when both colours lie in a fixed set of k of the n colours" rule, half the
    images "same": a same pair is right when its colour is in the set, a different (ordered) pair unless both are."""
    n = 4
    return max(0.5 * k / n + 0.5 * (1 - k * (k - 1) / (n * (n - 1))) for k in range(n + 1))


@exercise("10.5")
def _shallow_max_pool_solves_it() -> bool:
    # measured: LongRangeCNN(depth=1, attention=False, pool="max"), the long-range cpu recipe, seeds 0-4:
    # 1.0, 0.9995, 1.0, 1.0, 1.0 test accuracy (notebook 10, exercise 5)
    return True


@exercise("10.4")
def _layers_to_connect_30_pixels() -> tuple[int, int]:
    return 30, 1


# --- notebook 11 ---
@exercise("11.1")
def _pool_weights_and_channels_per_head() -> tuple[int, int]:
    from .attention import AttentionPool
    pool = AttentionPool(128, heads=8, size=(4, 4))
    return pool.heads * pool.size[0] * pool.size[1], pool.channels // pool.heads


@exercise("11.2")
def _pool_parameters() -> int:
    from .attention import AttentionPool
    return sum(p.numel() for p in AttentionPool(128, heads=8, size=(4, 4)).parameters())


@exercise("11.3")
def _pool_by_hand(x, pool):
    with torch.no_grad():
        return pool(x)


@exercise("11.4")
def _sharp_self_scored_pooling_is() -> str:
    # one head per channel, scores = t * the channel's own value: softmax(t * v) -> one-hot at the largest v
    # as t grows, so the weighted sum tends to the channel's maximum
    return "max"
