"""Train a model from the command line: the notebooks' training loop, outside notebooks.

    python -m sacnn_helpers.train --recipe cpu --out runs/cpu.json --checkpoint runs/cpu.pt
    python -m sacnn_helpers.train --recipe cpu --no-attention --seed 1
    python -m sacnn_helpers.train --recipe smoke            # seconds: checks that everything runs

Progress goes to stderr; the result (also written by --out as JSON) is summarised on stdout.
Exit codes: 0 done, 2 bad flags or missing data.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from .models import MODELS
from .training import (DATASETS, RECIPES, CheckpointError, build_recipe_model, get_device, get_recipe,
                       fit, load_dataset, prepare_data, seed_everything)


def build_parser() -> argparse.ArgumentParser:
    """The command line's flags (--recipe, --dataset, --model, --seed, ...); recipes are listed in --help."""
    recipes = sorted({name for _, name in RECIPES})
    p = argparse.ArgumentParser(prog="python -m sacnn_helpers.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="recipes: " + "; ".join(f"{d}/{n}: {r.description}"
                                                               for (d, n), r in sorted(RECIPES.items())))
    p.add_argument("--recipe", default="cpu", help=f"named preset ({', '.join(recipes)}; default cpu)")
    p.add_argument("--dataset", default="cifar10", help=f"dataset ({', '.join(sorted(DATASETS))}; default cifar10)")
    p.add_argument("--model", default=None,
                   help=f"registered model class (default: the recipe's); one of {', '.join(sorted(MODELS))}")
    p.add_argument("--no-attention", action="store_true", help="the same model with its attention layers left out")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's number of epochs")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--data-dir", default=None, help="folder that holds the dataset (CIFAR-10: the folder "
                   "containing cifar-10-batches-py/; default $SACNN_DATA_DIR or <repo>/data)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="auto: CUDA, then Apple MPS, then CPU")
    p.add_argument("--out", default=None, help="write the result as JSON to this file")
    p.add_argument("--checkpoint", default=None,
                   help="save after every epoch; resume an unfinished run; reuse a finished one")
    p.add_argument("--force", action="store_true", help="retrain even if --checkpoint holds a finished run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line with `argv` (default: sys.argv[1:]); returns 0 when done.

    Bad flags and missing data exit through argparse with code 2 and a one-line message (SystemExit).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dataset not in DATASETS:
        parser.error(f"unknown --dataset {args.dataset!r}; known: {', '.join(sorted(DATASETS))}")
    try:
        recipe = get_recipe(args.recipe, args.dataset)
    except ValueError as e:
        parser.error(str(e))
    if args.model is not None and args.model not in MODELS:
        parser.error(f"unknown --model {args.model!r}; known: {', '.join(sorted(MODELS))}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder; point it at the folder that holds the "
                     f"dataset (for CIFAR-10 the one containing cifar-10-batches-py/)")
    try:
        device = get_device(args.device)
    except (RuntimeError, ValueError) as e:
        parser.error(str(e))
    if args.epochs is not None:
        recipe = replace(recipe, epochs=args.epochs)

    try:
        data = prepare_data(load_dataset(args.dataset, args.data_dir), recipe)
    except (FileNotFoundError, ValueError) as e:  # includes CIFAR10NotFoundError, CorruptDataError
        parser.exit(2, f"{parser.prog}: error: could not load dataset {args.dataset!r}: {e}\n")
    seed_everything(args.seed)
    overrides = {"attention": False} if args.no_attention else {}
    try:
        model = build_recipe_model(recipe, data, args.model, **overrides)
    except TypeError as e:
        parser.error(f"could not build model {args.model or recipe.model!r} with {overrides or 'defaults'}: {e}")
    print(f"training {type(model).__name__} {model.config} on {args.dataset} ({len(data.train_labels)} train, "
          f"{len(data.val_labels)} val, {len(data.test_labels)} test) with recipe {recipe.name!r} on {device}",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        result = fit(model, data, recipe, device=device, seed=args.seed, checkpoint=args.checkpoint,
                     force=args.force, progress=not args.quiet)
    except CheckpointError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    result["wall_seconds"] = time.perf_counter() - t0
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['model']} attention={result['model_config'].get('attention')} recipe={recipe.name} "
          f"seed={args.seed}: test accuracy {result['test_accuracy']:.4f}, {result['train_seconds']:.0f} s of "
          f"training, {result['images_per_second']:.0f} images/s on {result['device']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
