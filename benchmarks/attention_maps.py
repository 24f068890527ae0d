"""Do the CIFAR-10 attention maps look somewhere, and do they matter? Train layer variants and measure.

    flock /tmp/sacnn-cpu.lock python benchmarks/attention_maps.py --variants plain cosine --seeds 0 1 2
    python benchmarks/attention_maps.py --table            # only rewrite the table from the saved results

Each variant is the `cpu` recipe with the plain layer of notebook 04 (PLAIN_LAYER: dot-product scores, gamma
starting at 0, no position bias, weight decay and the common learning rate on every weight) and the changes
listed in VARIANTS. For every (variant, seed) it trains on the CPU (checkpoint in runs/maps/, reused when
finished), then measures on the test set:
- test accuracy (flip-averaged, as the recipe reports it);
- map statistics of the first 500 test images (`sacnn_helpers.analysis.map_statistics`);
- the uniform-attention ablation on all 10,000 test images (single view, no flip): points lost;
- the occlusion check on the first 2,000 test images (k = 4 of the 64 patches).
Results go to benchmarks/results/maps/VARIANT_seedS.json, the table to benchmarks/attention_maps.md.

    python benchmarks/attention_maps.py --checkpoint weights/sacnn_cpu_recipe.pt   # measure trained weights
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import sacnn_helpers as sh  # noqa: E402
from sacnn_helpers import analysis  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "maps"
RUNS = ROOT / "runs" / "maps"

# The plain layer of notebook 04, and the recipe settings it was trained with before this study (6 epochs).
PLAIN_LAYER = dict(qk_norm=False, gamma_init=0.0, position=None, heads=1, attention_at=[2], replace_conv=False)
PLAIN_TRAINING = dict(qk_weight_decay=True, attention_lr_scale=1.0, epochs=6)

# name -> (model settings, recipe settings, what changes), each on top of the `cpu` recipe with the plain layer
VARIANTS: dict[str, tuple[dict, dict, str]] = {
    # the ladder: each step adds one change to the row above it
    "plain": ({}, {}, "the plain layer of notebook 04: scores q·k/√d_k, gamma starts at 0"),
    "qk-no-decay": ({}, {"qk_weight_decay": False}, "+ query/key weights out of weight decay"),
    "cosine": ({"qk_norm": True}, {"qk_weight_decay": False},
               "+ cosine scores times a learned temperature (starting at 10)"),
    "cosine-g05": ({"qk_norm": True, "gamma_init": 0.5}, {"qk_weight_decay": False}, "+ gamma starts at 0.5"),
    "cosine-g05-rel": ({"qk_norm": True, "gamma_init": 0.5, "position": "relative"}, {"qk_weight_decay": False},
                       "+ 2-D relative position bias (notebook 05)"),
    "cosine-g05-rel-lr10": ({"qk_norm": True, "gamma_init": 0.5, "position": "relative"},
                            {"qk_weight_decay": False, "attention_lr_scale": 10.0},
                            "+ 10x learning rate for the score parameters: **the recommended layer**"),
    # alternatives to the recommended layer
    "cosine-g1-rel-lr10": ({"qk_norm": True, "gamma_init": 1.0, "position": "relative"},
                           {"qk_weight_decay": False, "attention_lr_scale": 10.0},
                           "the recommended layer, gamma starting at 1"),
    "rel-lr10": ({"position": "relative", "gamma_init": 0.5}, {"qk_weight_decay": False, "attention_lr_scale": 10.0},
                 "the recommended layer with dot-product scores instead of cosine ones"),
    "recommended-h4": ({"qk_norm": True, "gamma_init": 0.5, "position": "relative", "heads": 4},
                       {"qk_weight_decay": False, "attention_lr_scale": 10.0}, "the recommended layer with 4 heads"),
    "cosine-g05-rel-h4": ({"qk_norm": True, "gamma_init": 0.5, "position": "relative", "heads": 4},
                          {"qk_weight_decay": False}, "cosine, gamma 0.5, relative position, 4 heads"),
    "cosine-g05-rel-at1": ({"qk_norm": True, "gamma_init": 0.5, "position": "relative", "attention_at": [1]},
                           {"qk_weight_decay": False}, "cosine, gamma 0.5, relative position, on the 16x16 map"),
    "cosine-g05-rel-lr10-at1": ({"qk_norm": True, "gamma_init": 0.5, "position": "relative", "attention_at": [1]},
                                {"qk_weight_decay": False, "attention_lr_scale": 10.0},
                                "the recommended layer on the 16x16 map"),
    "replace-cosine-g05-rel": ({"qk_norm": True, "gamma_init": 0.5, "position": "relative", "replace_conv": True},
                               {"qk_weight_decay": False},
                               "cosine, gamma 0.5, relative position, in place of stage 2's second conv (BoTNet-style)"),
    "replace-cosine-g1-rel-lr10": ({"qk_norm": True, "gamma_init": 1.0, "position": "relative", "replace_conv": True},
                                   {"qk_weight_decay": False, "attention_lr_scale": 10.0},
                                   "the recommended layer with gamma from 1, in place of stage 2's second conv"),
    "replace-no-attention": ({"replace_conv": True, "attention": False}, {},
                             "stage 2 without its second conv and without attention"),
    # longer training, and the network without attention
    "no-attention": ({"attention": False}, {}, "the same network without its attention layer"),
    "cosine-g05-rel-lr10-e12": ({"qk_norm": True, "gamma_init": 0.5, "position": "relative"},
                                {"qk_weight_decay": False, "attention_lr_scale": 10.0, "epochs": 12},
                                "the recommended layer, 12 epochs instead of 6 (the cpu recipe)"),
    "no-attention-e12": ({"attention": False}, {"epochs": 12}, "no attention layer, 12 epochs"),
}


def run(name: str, seed: int, data: dict[str, sh.ImageSet], base_recipe: str = "cpu") -> dict:
    model_settings, recipe_settings, what = VARIANTS[name]
    base = sh.get_recipe(base_recipe)
    recipe = replace(base, model_config={**base.model_config, **PLAIN_LAYER, **model_settings},
                     **{**PLAIN_TRAINING, **recipe_settings})
    torch.manual_seed(seed)
    model = sh.build_recipe_model(recipe, data["train"])
    RUNS.mkdir(parents=True, exist_ok=True)
    result = sh.fit(model, data, recipe, device="cpu", seed=seed, checkpoint=RUNS / f"{name}_seed{seed}.pt")
    result.update(variant=name, what=what, model_settings=model_settings, recipe_settings=recipe_settings)
    test = sh.normalise(data["test"].images, data["train"].mean, data["train"].std)
    labels = data["test"].labels
    if sh.attention_layers(model):
        result.update(measure(model, test, labels, seed))
    return result


def measure(model: torch.nn.Module, test: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> dict:
    """Map statistics (first 500 images), uniform ablation (all), occlusion check (first 2,000)."""
    model.eval()
    t0 = time.perf_counter()
    _, weights, sizes = sh.collect_attention(model, test[:500])
    return dict(maps=[analysis.map_statistics(w, h, wd) for w, (h, wd) in zip(weights, sizes)],
                uniform=analysis.uniform_attention_accuracy(model, test, labels),
                occlusion=analysis.occlusion_check(model, test[:2000], k=4, seed=seed),
                analysis_seconds=time.perf_counter() - t0)


def measure_checkpoint(path: Path) -> dict:
    """The same measurements for trained weights (e.g. the shipped ones): results/maps/checkpoint_NAME.json."""
    model, meta = sh.load_model(path)
    test = sh.load_cifar10(train=False)
    out = dict(variant=f"checkpoint {path.name}", what=f"the weights in {path}", seed=meta["identity"]["seed"],
               test_accuracy=meta["result"]["test_accuracy"], train_seconds=meta["result"]["train_seconds"],
               model_config=model.config, recipe=meta["identity"]["recipe"])
    out.update(measure(model, sh.normalise(test.images, meta["mean"], meta["std"]), test.labels, out["seed"]))
    return out


def fmt(values: list[float], digits: int = 2) -> str:
    mean, half = analysis.summarise(values)
    return f"{mean:.{digits}f}" if len(values) == 1 else f"{mean:.{digits}f} ± {half:.{digits}f}"


def table() -> str:
    rows: dict[str, list[dict]] = {}
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        rows.setdefault(r["variant"], []).append(r)
    lines = ["# Attention maps on CIFAR-10: layer variants", "",
             "Written by `benchmarks/attention_maps.py`. Each variant is `--recipe cpu` (6 epochs unless said) "
             "with the plain layer of notebook 04 and the listed changes, each row adding to the one it names "
             "('+'), trained on a 2-core CPU; ± is the half-width of a 95 % t-interval over seeds. Maps: first 500 test "
             "images (median peak x uniform; query dependence = mean total-variation distance between two "
             "query pixels' maps of one image). Uniform cost: accuracy points lost on all 10,000 test images "
             "(single view) when every weight is set to 1/64. Occlusion: drop in the predicted class's "
             "probability when the 4 patches a random query attends to most are hidden, minus the drop for "
             "4 random patches (first 2,000 test images). Train s: seconds of training; some runs shared the 2 "
             "cores with other jobs, so the times are no speed comparison (benchmarks/cpu_recipe.md is one). "
             "Rows 'checkpoint NAME' measure the shipped weights in weights/ (12 epochs).", "",
             "| variant | change | seeds | test acc % | peak × uniform | query dependence | uniform cost (pts) "
             "| occlusion: attended − random | train s |", "|---|---|---|---|---|---|---|---|---|"]
    order = list(VARIANTS)
    for name in sorted(rows, key=lambda n: order.index(n) if n in order else len(order)):
        rs = sorted(rows[name], key=lambda r: r["seed"])
        acc = fmt([100 * r["test_accuracy"] for r in rs])
        secs = fmt([r["train_seconds"] for r in rs], 0)
        if "maps" in rs[0]:
            peak = fmt([r["maps"][0]["peak_ratio"][0] for r in rs])
            qd = fmt([r["maps"][0]["query_dependence"][0] for r in rs], 3)
            cost = fmt([r["uniform"]["cost"] for r in rs])
            occ = fmt([r["occlusion"]["difference"] for r in rs], 3)
        else:
            peak = qd = cost = occ = "–"
        what = VARIANTS[name][2] if name in VARIANTS else rs[0]["what"]
        lines.append(f"| {name} | {what} | {len(rs)} | {acc} | {peak} | {qd} | {cost} | {occ} | {secs} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=["plain"], choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--table", action="store_true", help="only rewrite the table from saved results")
    p.add_argument("--recipe", default="cpu", help=argparse.SUPPRESS)  # smoke: check that the script runs
    p.add_argument("--checkpoint", type=Path, default=None, help="measure these trained weights instead")
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.checkpoint is not None:
        out = measure_checkpoint(args.checkpoint)
        (RESULTS / f"checkpoint_{args.checkpoint.stem}.json").write_text(json.dumps(out, indent=1) + "\n")
        m = out["maps"][0]
        print(f"{args.checkpoint}: peak {m['peak_ratio']}, query dependence {m['query_dependence']}, uniform costs "
              f"{out['uniform']['cost']:.2f} points, occlusion {out['occlusion']['difference']:+.3f}")
    elif not args.table:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
        data = sh.load_recipe_data(sh.get_recipe(args.recipe))
        for seed in args.seeds:
            for name in args.variants:
                out = RESULTS / f"{name}_seed{seed}.json"
                if out.is_file():
                    continue
                result = run(name, seed, data, args.recipe)
                out.write_text(json.dumps(result, indent=1) + "\n")
                print(f"{name} seed {seed}: {100 * result['test_accuracy']:.2f} %", flush=True)
                (ROOT / "benchmarks" / "attention_maps.md").write_text(table())
    text = table()
    (ROOT / "benchmarks" / "attention_maps.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
