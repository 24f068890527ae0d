"""Helpers for the Self-Attention in CNNs notebook series: what the notebooks build, kept in one place."""
from .attention import (AttentionMemoryError, SelfAttention, attention_bytes, attention_map,
                        attention_scores, attention_weights, capture_attention, from_tokens,
                        pixel_index, scaled_dot_product_attention, to_tokens)
from .data import (CIFAR10_CLASSES, CIFAR10_URL, CIFAR10NotFoundError, CorruptDataError, load_cifar10,
                   read_batch, resolve_data_dir)
from .models import MODELS, CNNWithoutAttention, CNNWithSelfAttention, build_model, register_model
from .training import (CheckpointError, get_device, is_smoke_run, load_checkpoint, load_model, read_checkpoint, save_checkpoint,
                       seed_everything)

from .attention import (attention_memory_table, channel_attention_scores, example_feature_map,
                        example_qkv, flash_attention_bytes)
from .exercises import check
from .visualisation import show_heatmaps, show_images
from .models import AttentionCNN
from .training import (DATASETS, RECIPES, ImageData, Recipe, attention_gammas, augment, build_recipe_model,
                       evaluate, get_recipe, load_dataset, prepare_data, register_dataset, register_recipe, fit)
from .data import LONG_RANGE_PALETTE, LongRangeImages, make_long_range  # notebook 08
from .models import LongRangeCNN  # notebook 08
from .visualisation import (AttentionExplorer, collect_attention, map_cell, map_pixel, mean_attention_distance,
                            overlay, plot_attention_grid, plot_query, to_display, uniform_attention_distance,
                            upsample_map, weight_range)  # notebook 07

__version__ = "0.1.0"
