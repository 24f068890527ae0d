"""Check cells for the notebooks' exercises: say whether an answer is right, without giving it away."""
from __future__ import annotations

from typing import Any

import torch


def check(answer: Any, expected: Any, name: str = "answer", atol: float = 1e-4) -> None:
    """Print whether `answer` matches `expected` ("correct" or "not yet (...)").

    Numbers and tensors compare with tolerance `atol`; tuples, lists, torch.Size, strings and bools
    compare exactly. An answer still set to None prints a reminder to fill it in.
    """
    if answer is None:
        print(f"{name}: not answered yet - replace None with your answer and run this cell again")
        return
    try:
        if isinstance(expected, torch.Tensor) or isinstance(answer, torch.Tensor):
            a, e = torch.as_tensor(answer, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
            ok = a.shape == e.shape and bool(torch.allclose(a, e, atol=atol, rtol=0))
            hint = f"expected shape {tuple(e.shape)}, got {tuple(a.shape)}" if a.shape != e.shape else "values differ"
        elif isinstance(expected, bool) or isinstance(expected, (str, tuple, list, torch.Size)):
            ok = (tuple(answer) == tuple(expected) if isinstance(expected, (tuple, list, torch.Size))
                  and isinstance(answer, (tuple, list, torch.Size)) else answer == expected)
            hint = f"got {answer!r}"
        else:
            ok = abs(float(answer) - float(expected)) <= atol
            hint = f"got {float(answer):.4g}"
    except (TypeError, ValueError) as e:
        ok, hint = False, f"could not compare ({type(e).__name__}: {e})"
    print(f"{name}: {'correct' if ok else 'not yet (' + hint + ')'}")
