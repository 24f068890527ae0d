"""Helpers for the Self-Attention in CNNs notebook series: what the notebooks build, kept in one place."""
# attention: notebooks 01-05 (the steps, the layer, relative position) and 10 (attention pooling)
from .attention import (AttentionMemoryError, AttentionPool, SelfAttention, attention_bytes, attention_gammas,
                        attention_layers, attention_pools, collect_maps, collect_pooling,
                        attention_map, attention_memory_table, attention_scores, attention_weights, capture_attention,
                        channel_attention_scores, collect_attention, example_feature_map, example_qkv,
                        flash_attention_bytes, from_tokens, pixel_index, relative_position_index,
                        scaled_dot_product_attention, to_tokens, uniform_attention)
# analysis: what a map says, and whether it matters (notebook 09)
from .analysis import (attention_report, attention_snapshot, entropy_ratio, forward_flops, map_statistics, mean_attention_distance,
                       occlusion_check, peak_ratio, predict, query_dependence, uniform_attention_accuracy,
                       uniform_attention_distance)
# saliency: attention against gradient explanations, deletion and insertion (notebook 09)
from .saliency import attention_received, deletion_insertion, grad_cam, input_x_gradient, saliency_table
# data: CIFAR-10, the long-range task, splits, augmentation (notebooks 00, 08, 10)
from .data import (CIFAR10_CLASSES, CIFAR10_URL, DATASETS, LONG_RANGE_PALETTE, CIFAR10NotFoundError,
                   CorruptDataError, ImageSet, augment, load_cifar10, load_dataset, make_long_range, normalise,
                   read_batch, resolve_data_dir, split_data)
# models: notebooks 06 and 10
from .models import MODELS, AttentionCNN, CNNWithoutAttention, CNNWithSelfAttention, LongRangeCNN, build_model
# checkpoints and recipes: notebooks 08-09 and the CLI `python -m sacnn_helpers.train`
from .checkpoints import CheckpointError, load_checkpoint, load_model, read_checkpoint, save_checkpoint
from .recipes import RECIPES, Recipe, build_recipe_model, choose_recipe, get_recipe, load_recipe_data
# where code runs, and the training loop
from .runtime import get_device, is_smoke_run, seed_everything
from .training import evaluate, fit, train_one_epoch
# visualisation: notebooks 00-02, 06 (draw_network) and 08
from .visualisation import (UNIFORM_LABEL, AttentionExplorer, draw_network, map_cell, map_pixel, network_layers,
                            overlay, plot_attention_grid, plot_pool_maps, plot_query, shared_scale, show_heatmaps, show_images,
                            to_display, upsample_map, weight_range)
from .exercises import check

__version__ = "0.2.0"
