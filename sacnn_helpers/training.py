"""Device choice, seeding and checkpoints (the training loop builds on these)."""
from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .models import build_model

CHECKPOINT_FORMAT = "sacnn-checkpoint-v1"
SMOKE_ENV = "SACNN_SMOKE"


def is_smoke_run() -> bool:
    """True when $SACNN_SMOKE is set (CI and the test command): notebooks shrink data and epochs."""
    return os.environ.get(SMOKE_ENV, "") not in ("", "0", "false", "False")


def get_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; other names are checked and returned."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device 'mps' was asked for but Apple MPS is not available; use 'auto' or 'cpu'")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}: expected auto, cpu, cuda or mps")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class CheckpointError(ValueError):
    """A file is not one of our checkpoints, or holds weights for another architecture."""


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **meta: Any) -> None:
    """Save `model`'s weights with its class, its `config` (if any) and `meta` (epoch, optimizer, ...).

    Written to a temporary file and renamed, so an interrupted save never leaves half a checkpoint.
    Values in `meta` must be tensors, numbers, strings, lists or dicts of them (weights_only loading).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": CHECKPOINT_FORMAT, "architecture": type(model).__name__,
            "config": getattr(model, "config", {}), "state_dict": model.state_dict(), "meta": meta}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file safely (`weights_only=True`) and check that it is ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path} is not a sacnn_helpers checkpoint, or is corrupt or unsafe, and was "
                              f"not loaded ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a sacnn_helpers checkpoint (no '{CHECKPOINT_FORMAT}' marker); "
                              f"save one with save_checkpoint(path, model)")
    return blob


def load_checkpoint(path: str | os.PathLike, model: nn.Module) -> dict[str, Any]:
    """Load weights saved by `save_checkpoint` into `model`; returns the saved `meta`.

    Raises `CheckpointError` for a file that is not our checkpoint or was saved from another
    architecture or configuration.
    """
    blob = read_checkpoint(path)
    arch, config = type(model).__name__, getattr(model, "config", {})
    if blob["architecture"] != arch or blob["config"] != config:
        raise CheckpointError(f"{path} holds a {blob['architecture']} with config {blob['config']}, "
                              f"but the model is a {arch} with config {config}; build the model the "
                              f"checkpoint was saved from")
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit this {arch}: {e}") from e
    return blob["meta"]


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint was saved from, load its weights; returns (model in eval mode, meta)."""
    blob = read_checkpoint(path)
    model = build_model(blob["architecture"], **blob["config"])
    meta = load_checkpoint(path, model)
    return model.to(device).eval(), meta
