"""Helpers for the Self-Attention in CNNs notebooks. Each name loads its module on first use (`sh.fit` imports
`training`), so `import sacnn_helpers` is light and `python -m sacnn_helpers.train --help` answers without torch."""
from __future__ import annotations

import importlib
import os
from typing import Any

# Deterministic cuBLAS needs this set before CUDA starts; a user's own value wins (see runtime.CUBLAS_ENV)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

# module -> its public names, in the order the notebooks meet them (docs/package.md: which notebooks use them)
PUBLIC: dict[str, tuple[str, ...]] = {
    # the steps, the layer, relative position, attention pooling
    "attention": ("AttentionMemoryError", "AttentionPool", "SelfAttention", "attention_bytes", "attention_layers",
                  "collect_pooling", "attention_map", "attention_memory_table", "attention_scores",
                  "attention_weights", "channel_attention_scores", "collect_attention", "from_tokens", "pixel_index",
                  "relative_position_index", "scaled_dot_product_attention", "to_tokens", "uniform_attention"),
    "examples": ("example_feature_map", "example_qkv"),  # example tensors to start from
    # what a map says, and whether it matters
    "analysis": ("attention_report", "entropy_ratio", "forward_flops", "map_statistics", "mean_attention_distance",
                 "occlusion_check", "peak_ratio", "predict", "query_dependence", "uniform_attention_accuracy",
                 "uniform_attention_distance"),
    "saliency": ("attention_received", "grad_cam", "input_x_gradient"),  # vs gradient explanations
    # CIFAR-10, the long-range task, splits, augmentation
    "data": ("DATASETS", "CIFAR10NotFoundError", "CorruptDataError", "ImageSet", "augment", "load_cifar10",
             "load_dataset", "load_recipe_data", "make_long_range", "normalise", "split_data"),
    # the networks
    "models": ("MODELS", "AttentionCNN", "CNNWithoutAttention", "CNNWithSelfAttention", "LongRangeCNN", "build_model",
               "build_recipe_model"),
    # checkpoints and recipes
    "checkpoints": ("CheckpointError", "load_model"),
    "recipes": ("RECIPES", "Recipe", "choose_recipe", "get_recipe", "is_smoke_run"),
    # where code runs, and the training loop
    "runtime": ("get_device", "seed_everything"),
    "training": ("evaluate", "fit", "train_one_epoch"),
    # pictures and the explorer
    "visualisation": ("UNIFORM_LABEL", "draw_network", "map_cell", "map_pixel", "overlay", "plot_attention_grid",
                      "plot_pool_maps", "plot_query", "shared_scale", "show_heatmaps", "show_images", "to_display"),
    "explorer": ("AttentionExplorer",),
    "exercises": ("check",),
}
MODULE_OF = {name: module for module, names in PUBLIC.items() for name in names}
__all__ = sorted(MODULE_OF)
__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    """`sh.NAME` imports NAME's module on first use; `sh.MODULE` (e.g. `sh.recipes`) the module itself."""
    if name in MODULE_OF:
        value = getattr(importlib.import_module(f".{MODULE_OF[name]}", __name__), name)
        globals()[name] = value  # the next use is a plain attribute
        return value
    if name in PUBLIC or name in ("speedrun", "train"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, *PUBLIC, "speedrun", "train"])
