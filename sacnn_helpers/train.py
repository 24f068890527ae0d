"""Train a model from the command line: the notebooks' training loop, outside notebooks.

    python -m sacnn_helpers.train --recipe cpu --out runs/cpu.json --checkpoint runs/cpu.pt
    python -m sacnn_helpers.train --recipe cpu --no-attention --seed 1
    python -m sacnn_helpers.train --recipe smoke            # seconds: checks that everything runs
    torchrun --standalone --nproc_per_node=2 -m sacnn_helpers.train --recipe gpu   # one model, 2 GPUs
Progress goes to stderr, a summary to stdout (--out: the result as JSON). Exit code 2: bad flags or missing data."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .recipes import RECIPES, get_recipe  # no torch: --help answers before torch loads (it takes seconds)

# flags named as the model_config key / the Recipe field they change
MODEL_FLAGS = ("heads", "attention_at", "gamma_init", "qk_norm", "position", "uniform_attention", "pool",
               "pool_heads")
RECIPE_FLAGS = ("epochs", "batch_size", "lr", "amp", "compile", "deterministic", "qk_weight_decay",
                "attention_lr_scale")


def build_parser() -> argparse.ArgumentParser:
    """The command line's flags (--recipe, --dataset, --model, --seed, ...); recipes are listed in --help."""
    recipes = sorted({name for by_name in RECIPES.values() for name in by_name})
    epilog = "recipes:\n" + "\n".join(f"  {d}/{n}: {r.description}" for d, by_name in sorted(RECIPES.items())
                                      for n, r in sorted(by_name.items()))
    p = argparse.ArgumentParser(prog="python -m sacnn_helpers.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog)
    p.add_argument("--recipe", default="cpu", help=f"named preset ({', '.join(recipes)}; default cpu)")
    p.add_argument("--dataset", default="cifar10", help=f"dataset ({', '.join(sorted(RECIPES))}; default cifar10)")
    p.add_argument("--model", default=None,
                   help="model class (default: the recipe's): AttentionCNN, LongRangeCNN, CNNWithSelfAttention, ... "
                        "(sacnn_helpers.models.MODELS)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--data-dir", default=None, help="folder that holds the dataset (CIFAR-10: the folder "
                   "containing cifar-10-batches-py/; default $SACNN_DATA_DIR or <repo>/data); CIFAR-10 is "
                   "downloaded there when missing")
    p.add_argument("--device", default="auto", help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--out", default=None, help="write the result as JSON to this file")
    p.add_argument("--checkpoint", default=None,
                   help="save after every epoch; resume an unfinished run; reuse a finished one")
    p.add_argument("--force", action="store_true", help="retrain even if --checkpoint holds a finished run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    a = p.add_argument_group("attention layer (default: the recipe's)")
    a.add_argument("--no-attention", action="store_true", help="the same model with its attention layers left out")
    a.add_argument("--heads", type=int, default=None, help="attention heads")
    a.add_argument("--attention-at", type=int, nargs="+", default=None,
                   help="AttentionCNN: stages followed by an attention layer (2: the 8x8 map)")
    a.add_argument("--gamma-init", type=float, default=None, help="the residual gate's start (0: SAGAN)")
    a.add_argument("--qk-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="cosine attention with a learned temperature")
    a.add_argument("--position", choices=["none", "relative"], default=None,
                   help="relative: a learned 2-D relative position bias")
    a.add_argument("--uniform-attention", action="store_true", default=None,
                   help="train with every attention map fixed to uniform (the control: does where it looks matter?)")

    a.add_argument("--pool", choices=["max", "avg", "attention"], default=None,
                   help="AttentionCNN: how the head pools the last map (attention: an AttentionPool)")
    a.add_argument("--pool-heads", type=int, default=None, help="heads of the AttentionPool (default 8)")

    t = p.add_argument_group("training (default: the recipe's)")
    t.add_argument("--epochs", type=int, default=None, help="number of epochs")
    t.add_argument("--batch-size", type=int, default=None, help="global batch size")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate")
    t.add_argument("--qk-weight-decay", action=argparse.BooleanOptionalAction, default=None,
                   help="weight decay on the query/key weights")
    t.add_argument("--attention-lr-scale", type=float, default=None,
                   help="learning rate of the attention scores' parameters, times --lr")
    t.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on for CUDA, off elsewhere)")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    t.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                   help="bit-for-bit repeatable CUDA runs (slower; see runtime.configure_backends)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line on `argv` (default sys.argv[1:]); returns 0. Bad flags and missing data exit with
    code 2 (SystemExit). Under torchrun every process runs this; only process 0 prints and writes files."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import runtime  # torch and the training code load only now, after the flags are read
    from .checkpoints import CheckpointError
    from .data import DATASETS, load_recipe_data
    from .models import MODELS, build_recipe_model
    from .training import fit
    if args.dataset not in DATASETS:
        parser.error(f"unknown --dataset {args.dataset!r}; known: {', '.join(sorted(DATASETS))}")
    if args.model is not None and args.model not in MODELS:
        parser.error(f"unknown --model {args.model!r}; known: {', '.join(sorted(MODELS))}")
    for flag in ("epochs", "batch_size", "heads", "pool_heads"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder; point it at the folder that holds the "
                     f"dataset (for CIFAR-10 the one containing cifar-10-batches-py/)")
    changes = {flag: getattr(args, flag) for flag in RECIPE_FLAGS if getattr(args, flag) is not None}
    try:
        recipe = get_recipe(args.recipe, args.dataset, **changes)
        device = runtime.init_distributed(args.device)
    except (RuntimeError, ValueError) as e:
        parser.error(str(e))
    if recipe.trainer == "airbench94" and device.type != "cuda" and args.device == "auto":
        parser.error(f"--recipe gpu is airbench94's training, seconds on a CUDA GPU in float16, but torch sees no "
                     f"CUDA GPU. On {device.type} it runs in float32 and takes most of an hour on a 2-core CPU. "
                     f"Pass --device {device.type} to train there anyway, or use --recipe cpu (4 to 10 minutes)")
    rank = runtime.rank()
    try:
        if rank == 0:  # process 0 reads (or downloads) the data first; the others then read it from disk
            data = load_recipe_data(recipe, args.data_dir)
        runtime.barrier()
        if rank != 0:
            data = load_recipe_data(recipe, args.data_dir, download=False)
    except (FileNotFoundError, ValueError) as e:  # includes CIFAR10NotFoundError, CorruptDataError
        parser.exit(2, f"{parser.prog}: error: could not load dataset {args.dataset!r}: {e}\n")
    runtime.seed_everything(args.seed)
    overrides = {flag: getattr(args, flag) for flag in MODEL_FLAGS if getattr(args, flag) is not None}
    if overrides.get("position") == "none":
        overrides["position"] = None
    if args.no_attention:
        overrides["attention"] = False
    try:
        model = build_recipe_model(recipe, data["train"], args.model, **overrides)
    except (TypeError, ValueError) as e:
        parser.error(f"could not build model {args.model or recipe.model!r} with {overrides or 'defaults'}: {e}")
    if rank == 0:
        print(f"training {type(model).__name__} {model.config} on {args.dataset} ({len(data['train'])} train, "
              f"{len(data['val'])} val, {len(data['test'])} test) with recipe {recipe.name!r} on {device}"
              + (f" x {runtime.world_size()} processes" if runtime.world_size() > 1 else ""),
              file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        # bars on a terminal; into a file or a pipe, one line per epoch (a bar there is thousands of \r updates)
        progress = False if args.quiet else True if sys.stderr.isatty() else "lines"
        result = fit(model, data, recipe, device=device, seed=args.seed, checkpoint=args.checkpoint,
                     force=args.force, progress=progress)
    except CheckpointError as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    finally:
        runtime.close_distributed()
    result["wall_seconds"] = time.perf_counter() - t0
    if rank == 0:
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"{result['model']} attention={result['model_config'].get('attention')} recipe={recipe.name} "
              f"seed={args.seed}: test accuracy {result['test_accuracy']:.4f}, {result['train_seconds']:.0f} s of "
              f"training, {result['images_per_second']:.0f} images/s on {result['device']}"
              + (f" x {result['world_size']}" if result["world_size"] > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
