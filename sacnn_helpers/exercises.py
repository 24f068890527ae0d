"""Check cells for the notebooks' exercises: say whether an answer is right, without showing the answer.

    check("07.1", row_of_3_6)                  # a value the learner works out
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


def exercise(key: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the function computes the expected answer of exercise `key` ("NN.k": notebook, number)."""
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        EXPECTED[key] = fn
        return fn
    return register


def _same(answer: Any, expected: Any, atol: float) -> tuple[bool, str]:
    """(right?, a hint that does not reveal the expected value)."""
    if isinstance(expected, bool):  # True is not 1: a yes/no question wants True or False
        if not isinstance(answer, bool):
            return False, f"answer True or False, got {type(answer).__name__} {answer!r}"
        return answer is expected, "that is the other one"
    if isinstance(answer, bool):
        return False, f"expected a {type(expected).__name__}, got the bool {answer!r}"
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


def check(key: str, answer: Any, *inputs: Any, atol: float = 1e-4) -> None:
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
        ok, hint = _same(answer, EXPECTED[key](*inputs), atol)
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
def _class_of_image_1(train):
    return train.classes[int(train.labels[1])]


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


@exercise("01.3")
def _channel_score_growth():
    return 16  # a sum of N products with a non-zero average grows like N: 128*128 / (32*32)


@exercise("01.4")
def _pixel_scores(q_map, k_map):
    from .attention import attention_scores, to_tokens
    return attention_scores(to_tokens(q_map), to_tokens(k_map))


# --- notebook 02 ---
@exercise("02.1")
def _softmax_of_equal_scores():
    return torch.softmax(torch.full((4,), 3.0), dim=-1).tolist()


@exercise("02.2")
def _row_and_wrong_pixel():
    from .attention import pixel_index
    y, x, width = 31, 0, 32
    return pixel_index(y, x, width), divmod(x * y, width)  # the right row; the pixel row x*y belongs to


@exercise("02.3")
def _stable_softmax(row):
    return torch.softmax(row, dim=-1)


# --- notebook 03 ---
# --- notebook 04 ---
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
# --- notebook 07 ---
# --- notebook 08 ---
# --- notebook 09 ---
