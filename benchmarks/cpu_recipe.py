"""Benchmark `--recipe cpu`: train with and without attention, record accuracy, time, machine and load.

    flock /tmp/sacnn-cpu.lock python benchmarks/cpu_recipe.py             # seed 0, both variants
    flock /tmp/sacnn-cpu.lock python benchmarks/cpu_recipe.py --seeds 0 1 2 3 4
    python benchmarks/cpu_recipe.py --seeds 0 1 2 3 4 --variants attention no-attention trained-uniform \
        attention-pool avg-pool layer+attention-pool

Variants: `attention` (the recipe as it is: the recommended layer, a max-pooling head), `no-attention` (the layer
left out), `trained-uniform` (the same network trained with its maps fixed to uniform, `--uniform-attention`: the
control that asks whether *where* the layer looks adds anything over "every pixel sees the image's mean";
Wiegreffe & Pinter 2019), `attention-pool` (no layer, an `AttentionPool` head: `--no-attention --pool attention`),
`avg-pool` (no layer, an average-pooling head: the attention pool's uniform twin) and `layer+attention-pool` (the
layer and the attention-pooling head). For each run with maps the table also gives the uniform-ablation cost: its
test accuracy (single view) with its trained maps minus with every map replaced by uniform ones at test time (for
a pool: average pooling).

Seeds are paired: seed s gives both variants the same data order and augmentation, so the table also reports
the mean of the per-seed differences (with minus without attention) with a 95 % t-interval.

Each run is `python -m sacnn_helpers.train --recipe cpu [--no-attention | --uniform-attention] --seed S` with its
checkpoint in runs/cpu-recipe/ and its JSON in benchmarks/results/. A run whose JSON is complete is not run again
(an `attention` run also needs its checkpoint once, for the uniform ablation), and a finished checkpoint is reused,
so re-running only fills in what is missing. The summary table goes to benchmarks/cpu_recipe.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import sacnn_helpers as sh  # noqa: E402  (loads its modules on first use)
# variant -> the flags it adds to the recipe's command
VARIANTS = {"attention": [], "no-attention": ["--no-attention"], "trained-uniform": ["--uniform-attention"],
            "attention-pool": ["--no-attention", "--pool", "attention"], "avg-pool": ["--no-attention", "--pool", "avg"],
            "layer+attention-pool": ["--pool", "attention"]}
ABLATED = ("attention", "attention-pool", "layer+attention-pool")  # variants whose maps can be made uniform
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "cpu-recipe"


def run(variant: str, seed: int, recipe: str) -> dict:
    name = f"{recipe}_{variant}_seed{seed}"
    out, ckpt = RESULTS / f"{name}.json", RUNS / f"{name}.pt"
    cmd = [sys.executable, "-m", "sacnn_helpers.train", "--recipe", recipe, "--seed", str(seed),
           "--device", "cpu", "--out", str(out), "--checkpoint", str(ckpt)]
    cmd += VARIANTS[variant]
    previous = json.loads(out.read_text()) if out.is_file() else {}
    current = sh.get_recipe(recipe)
    same_run = (previous.get("epochs") == current.epochs
                and all(previous.get("model_config", {}).get(k) == v for k, v in current.model_config.items()))
    if previous.get("benchmark") and same_run and (variant not in ABLATED or "uniform_ablation" in previous):
        return previous  # finished and measured with today's recipe: delete its JSON to train it again
    load_before = os.getloadavg()
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    result = json.loads(out.read_text())
    command = "python " + " ".join(cmd[1:]).replace(str(ROOT) + "/", "")
    if "reused_checkpoint" not in result:  # it trained now: record this machine's load and the date
        result["benchmark"] = dict(command=command, load_average_before=list(load_before),
                                   load_average_after=list(os.getloadavg()), cpu=sh.runtime.cpu_model(),
                                   date_utc=time.strftime("%Y-%m-%d %H:%M", time.gmtime()))
    elif "benchmark" in previous:  # nothing trained now: keep the numbers of the run that trained
        result["benchmark"] = previous["benchmark"]
    else:  # a finished checkpoint without a record of its training: say so, and claim no load or date
        result["benchmark"] = dict(command=command, reused_checkpoint=True, load_average_before=None,
                                   load_average_after=None, cpu=sh.runtime.cpu_model(), date_utc=None)
    if variant in ABLATED and "uniform_ablation" not in result:
        result["uniform_ablation"] = uniform_ablation(ckpt)
        if variant == "layer+attention-pool":  # each part alone too
            result["uniform_ablation_parts"] = {which: uniform_ablation(ckpt, which) for which in ("layers", "pools")}
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def uniform_ablation(checkpoint: Path, which: str = "all") -> dict:
    """Test accuracy (single view, all 10,000 images) with the trained maps and with uniform ones (an attention
    pool's uniform maps: average pooling); `which`: "all", "layers" or "pools"."""
    model, meta = sh.load_model(checkpoint)
    test = sh.load_cifar10(train=False)
    images = sh.normalise(test.images, meta["mean"], meta["std"])
    return sh.uniform_attention_accuracy(model, images, test.labels, which=which)


def load_text(load: list[float] | None) -> str:
    """'1.6, 2.1, 1.8', or 'unknown (reused checkpoint)' for a run reused without a record of its training."""
    return "unknown (reused checkpoint)" if load is None else ", ".join(f"{b:.1f}" for b in load)


def fmt(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    """'mean ± sd' over seeds (one value: the value)."""
    values = [v * scale for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def interval(values: list[float], sign: bool = False) -> str:
    """'mean [low, high]': the mean over seeds with its 95 % t-interval."""
    mean, half = sh.analysis.summarise(values)
    f = "+.2f" if sign else ".2f"
    return f"{mean:{f}} [{mean - half:{f}}, {mean + half:{f}}]" if len(values) > 1 else f"{mean:{f}}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--recipe", default="cpu")
    p.add_argument("--variants", nargs="+", default=["attention", "no-attention"],
                   choices=list(VARIANTS))
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows, per_variant = [], {}
    for variant in args.variants:
        results = per_variant[variant] = [run(variant, seed, args.recipe) for seed in args.seeds]
        r0 = results[0]
        costs = [r["uniform_ablation"]["cost"] for r in results if "uniform_ablation" in r]
        reports = [r["history"][-1].get("attention") or [] for r in results]
        layer_rows = [[row for row in rep if row.get("kind") != "pool"] for rep in reports]
        peaks = [rows_[0]["peak_ratio"][0] for rows_ in layer_rows if rows_]
        qdep = [rows_[0]["query_dependence"][0] for rows_ in layer_rows if rows_]
        pool_peaks = [statistics.median(row["peak_ratio"]) for rep in reports for row in rep if row.get("kind") == "pool"]
        maps = " + ".join(([f"layer {statistics.median(peaks):.2f} / {statistics.median(qdep):.3f}"] if peaks else [])
                          + ([f"pool {statistics.median(pool_peaks):.2f} (of 16 cells)"] if pool_peaks else [])) or "–"
        rows.append(f"| {variant} | {r0['parameters']:,} | {len(results)} ({', '.join(map(str, args.seeds))}) | "
                    f"{fmt([r['test_accuracy'] for r in results], 100, 2)} % | "
                    f"{interval(costs) if costs else '–'} | {maps} | "
                    f"{fmt([r['train_seconds'] for r in results], 1, 0)} s | "
                    f"{fmt([r['images_per_second'] for r in results], 1, 0)} | "
                    f"{load_text(r0['benchmark']['load_average_before'])} |")
    paired = []
    base = "no-attention" if "no-attention" in per_variant else None
    by_seed = {v: {r["seed"]: r["test_accuracy"] for r in rs} for v, rs in per_variant.items()}
    pairs = [(v, base) for v in per_variant if base and v != base]
    pairs += [(a, b) for a, b in (("attention", "trained-uniform"), ("attention-pool", "avg-pool"),
                                  ("layer+attention-pool", "attention"), ("layer+attention-pool", "avg-pool"))
              if a in per_variant and b in per_variant]
    for a, b in pairs:
        diffs = [100 * (by_seed[a][s] - by_seed[b][s]) for s in args.seeds if s in by_seed[a] and s in by_seed[b]]
        paired.append(f"- {a} minus {b}, paired by seed ({len(diffs)} pairs): **{interval(diffs, sign=True)} points** "
                      f"(per seed: {', '.join(f'{d:+.2f}' for d in diffs)}).")
    for variant in (v for v in per_variant if v in ABLATED):
        costs = [(r["seed"], r["uniform_ablation"]) for r in per_variant[variant] if "uniform_ablation" in r]
        if costs:
            paired.append(f"- uniform ablation of each {variant} run, test accuracy (single view) with its trained maps / "
                          "with uniform maps: " + "; ".join(f"seed {s}: {100 * u['accuracy']:.2f} / {100 * u['uniform_accuracy']:.2f} %"
                                                            for s, u in costs) + ".")
        parts = [r["uniform_ablation_parts"] for r in per_variant[variant] if "uniform_ablation_parts" in r]
        for which in ("layers", "pools") if parts else ():
            paired.append(f"- {variant}, only the {'layer' if which == 'layers' else 'pool'} made uniform: cost "
                          f"{interval([p[which]['cost'] for p in parts])} points.")
    paired = "\n".join(paired)
    bench = r0["benchmark"]
    dates = [r["benchmark"]["date_utc"] for rs in per_variant.values() for r in rs if r["benchmark"]["date_utc"]]
    when = f"runs from {min(dates)} to {max(dates)} UTC" if dates else "run dates unknown (reused checkpoints)"
    source = next((r["data_source"] for rs in per_variant.values() for r in rs if "data_source" in r), "CIFAR-10").replace(str(ROOT) + "/", "")
    lines = [f"# `--recipe {args.recipe}` on this machine", "",
             f"CPU: {bench['cpu']}, {os.cpu_count()} cores, torch {r0['machine']['torch']} "
             f"({r0['machine']['torch_threads']} threads); {when}; written by "
             f"`benchmarks/cpu_recipe.py`. Test accuracy on the 10,000 images of the official test split "
             f"(flip-averaged logits; data: {source}); ± is the standard deviation over seeds; train seconds = training steps + per-epoch validation; images/s = training images "
             f"per second of training steps. The machine was shared with other jobs: the load average "
             f"(1, 5, 15 min) before each run is listed. Variants: `attention` (the recipe: the recommended layer and a "
             f"max-pooling head), `no-attention` (the layer left out), `trained-uniform` (the same network trained "
             f"with every map fixed to uniform, `--uniform-attention`), `attention-pool` (no layer; an attention-pooling "
             f"head, notebook 11), `avg-pool` (no layer; average pooling, the attention pool's uniform twin), "
             f"`layer+attention-pool` (both). Uniform-ablation cost: a run's test accuracy (single view) with its trained "
             f"maps minus with uniform maps swapped in at test time (every layer and pool; a pool then averages); "
             f"[low, high] is a 95 % t-interval over seeds. Maps: the last epoch's statistics on 256 validation "
             f"images, as `fit` logs them: the layer's peak × uniform / query dependence, and the pool's peak × uniform "
             f"(median over its heads).", "",
             "| model | parameters | seeds | test accuracy | uniform-ablation cost (pts, 95 % interval) | maps: peak × uniform / query dependence (median over seeds) | train time | images/s | load before |",
             "|---|---|---|---|---|---|---|---|---|", *rows, "", paired, "",
             "Per run (test accuracy, train seconds): " + "; ".join(
                 f"{v} seed {r['seed']}: {100 * r['test_accuracy']:.2f} %, {r['train_seconds']:.0f} s"
                 for v, rs in per_variant.items() for r in rs), ""]
    (ROOT / "benchmarks" / f"{args.recipe}_recipe.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
