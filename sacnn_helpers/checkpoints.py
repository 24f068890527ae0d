"""Checkpoints: a model's weights with what is needed to rebuild and feed it, loaded with weights_only=True."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .models import build_model

CHECKPOINT_FORMAT = "sacnn-checkpoint-v1"


class CheckpointError(ValueError):
    """A file is not one of our checkpoints, holds weights for another architecture, or another run's."""


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **meta: Any) -> None:
    """Save `model`'s weights, class, `config` and `meta` (plain data, as weights_only loading admits) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": CHECKPOINT_FORMAT, "architecture": type(model).__name__,
            "config": getattr(model, "config", {}), "state_dict": model.state_dict(), "meta": meta}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file safely (`weights_only=True`: no code can run) and check that it is ours."""
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


def _same_architecture(blob: dict[str, Any], model: nn.Module) -> bool:
    """Same class and config (defaults filled in, built on the meta device) as `model`?"""
    if blob["architecture"] != type(model).__name__:
        return False
    try:
        with torch.device("meta"):
            saved = build_model(blob["architecture"], **blob["config"])
    except (TypeError, ValueError):
        return False
    return getattr(saved, "config", {}) == getattr(model, "config", {})


def load_weights(blob: dict[str, Any], model: nn.Module, path: str | os.PathLike = "checkpoint") -> dict[str, Any]:
    """Load `blob`'s weights into `model` after checking its architecture and config; returns `meta`."""
    if not _same_architecture(blob, model):
        raise CheckpointError(f"{path} holds a {blob['architecture']} with config {blob['config']}, but the "
                              f"model is a {type(model).__name__} with config {getattr(model, 'config', {})}; "
                              f"build the model the checkpoint was saved from (load_model does)")
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit this {type(model).__name__}: {e}") from e
    return blob["meta"]


def load_checkpoint(path: str | os.PathLike, model: nn.Module) -> dict[str, Any]:
    """Load weights saved by `save_checkpoint` into `model`; returns `meta` (`CheckpointError` if they differ)."""
    return load_weights(read_checkpoint(path), model, path)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(the model a checkpoint was saved from, with its weights, in eval mode; meta). From `fit`, meta holds
    `mean`/`std` to feed it (`normalise(images, meta["mean"], meta["std"])`), `classes`, `result`, `identity`."""
    blob = read_checkpoint(path)
    try:
        model = build_model(blob["architecture"], **blob["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} holds a {blob['architecture']} with config {blob['config']} that this "
                              f"version of sacnn_helpers cannot build ({e})") from e
    meta = load_weights(blob, model, path)
    return model.to(device).eval(), meta
