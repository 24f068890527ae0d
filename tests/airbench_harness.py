"""Test harness: run the PyPI package `airbench`'s own CUDA-only code on the CPU, for the equivalence tests
(tests/test_speedrun.py) and the GPU benchmark's dry run (benchmarks/gpu.py)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn


# --- airbench's own code, for checks on a machine without CUDA ---------------------------------------

class _NoTimer:
    """Stands in for torch.cuda.Event, with which airbench times its loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def record(self) -> None:
        pass

    def elapsed_time(self, other: Any) -> float:
        return 0.0


@contextmanager
def airbench_on_cpu(folder: str | os.PathLike) -> Iterator[None]:
    """Run the `airbench` package's own CUDA-only code on the CPU in float32, inside `folder` (where its
    loader looks for cifar10/train.pt and test.pt): `.half()` and `.cuda()` do nothing, its CUDA timers are
    dummies and its data files load onto the CPU. Everything is restored on exit. For the equivalence test
    and `benchmarks/gpu.py --dry-run`."""
    saved = [(nn.Module, "half", nn.Module.half), (nn.Module, "cuda", nn.Module.cuda),
             (torch.Tensor, "half", torch.Tensor.half), (torch.cuda, "Event", torch.cuda.Event),
             (torch.cuda, "synchronize", torch.cuda.synchronize), (torch, "load", torch.load)]
    real_load, here = torch.load, os.getcwd()
    nn.Module.half = lambda self: self
    nn.Module.cuda = lambda self, *a, **k: self
    torch.Tensor.half = lambda self, *a, **k: self.float()
    torch.cuda.Event = _NoTimer
    torch.cuda.synchronize = lambda *a, **k: None
    torch.load = lambda path, map_location=None, **k: real_load(path, map_location="cpu", **k)
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)
        for owner, name, value in saved:
            setattr(owner, name, value)


def write_airbench_data(folder: str | os.PathLike, train: Any, test: Any) -> None:
    """Write ImageSets as airbench's loader reads them: folder/cifar10/{train,test}.pt, N x H x W x C uint8."""
    (Path(folder) / "cifar10").mkdir(parents=True, exist_ok=True)
    for name, split in (("train", train), ("test", test)):
        torch.save({"images": split.images.permute(0, 2, 3, 1).contiguous(), "labels": split.labels,
                    "classes": list(split.classes)}, Path(folder) / "cifar10" / f"{name}.pt")
