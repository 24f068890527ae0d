"""Helpers for the Self-Attention in CNNs notebook series: what the notebooks build, kept in one place."""
# attention: notebooks 01-04
from .attention import (AttentionMemoryError, SelfAttention, attention_bytes, attention_layers, attention_map,
                        attention_memory_table, attention_scores, attention_weights, capture_attention,
                        channel_attention_scores, example_feature_map, example_qkv, flash_attention_bytes,
                        from_tokens, pixel_index, relative_position_index, scaled_dot_product_attention,
                        to_tokens, uniform_attention)
# analysis: what a map says (notebook 07)
from .analysis import (attention_report, entropy_ratio, map_statistics, occlusion_check, peak_ratio, predict,
                       query_dependence, uniform_attention_accuracy)
# data: notebook 00 (CIFAR-10) and 08 (the long-range task)
from .data import (CIFAR10_CLASSES, CIFAR10_URL, LONG_RANGE_PALETTE, CIFAR10NotFoundError, CorruptDataError,
                   LongRangeImages, load_cifar10, make_long_range, read_batch, resolve_data_dir)
# models: notebooks 05 and 08
from .models import (MODELS, AttentionCNN, CNNWithoutAttention, CNNWithSelfAttention, LongRangeCNN,
                     build_model, register_model)
# training: notebooks 05, 06 and the CLI `python -m sacnn_helpers.train`
from .training import (DATASETS, RECIPES, CheckpointError, ImageData, Recipe, attention_gammas, augment,
                       build_recipe_model, evaluate, fit, get_device, get_recipe, is_smoke_run, load_checkpoint,
                       load_dataset, load_model, prepare_data, read_checkpoint, register_dataset,
                       register_recipe, save_checkpoint, seed_everything)
# visualisation: notebooks 00-02 and 07
from .visualisation import (AttentionExplorer, collect_attention, map_cell, map_pixel, mean_attention_distance,
                            overlay, plot_attention_grid, plot_query, show_heatmaps, show_images, to_display,
                            uniform_attention_distance, upsample_map, weight_range)
from .exercises import check

__version__ = "0.1.0"
