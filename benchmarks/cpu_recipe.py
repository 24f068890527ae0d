"""Benchmark `--recipe cpu`: train with and without attention, record accuracy, time, machine and load.

    flock /tmp/sacnn-cpu.lock python benchmarks/cpu_recipe.py             # seed 0, both variants
    flock /tmp/sacnn-cpu.lock python benchmarks/cpu_recipe.py --seeds 0 1 2 3 4

Seeds are paired: seed s gives both variants the same data order and augmentation, so the table also reports
the mean of the per-seed differences (with minus without attention) with a 95 % t-interval.

Each run is `python -m sacnn_helpers.train --recipe cpu [--no-attention] --seed S` with its checkpoint in
runs/cpu-recipe/ (a finished checkpoint is reused, so re-running only fills in what is missing) and its
JSON in benchmarks/results/. The summary table goes to benchmarks/cpu_recipe.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "cpu-recipe"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(variant: str, seed: int, recipe: str) -> dict:
    name = f"{recipe}_{variant}_seed{seed}"
    out, ckpt = RESULTS / f"{name}.json", RUNS / f"{name}.pt"
    cmd = [sys.executable, "-m", "sacnn_helpers.train", "--recipe", recipe, "--seed", str(seed),
           "--device", "cpu", "--out", str(out), "--checkpoint", str(ckpt)]
    if variant == "no-attention":
        cmd.append("--no-attention")
    previous = json.loads(out.read_text()) if out.is_file() else {}
    load_before = os.getloadavg()
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    result = json.loads(out.read_text())
    command = "python " + " ".join(cmd[1:]).replace(str(ROOT) + "/", "")
    if "reused_checkpoint" not in result:  # it trained now: record this machine's load and the date
        result["benchmark"] = dict(command=command, load_average_before=list(load_before),
                                   load_average_after=list(os.getloadavg()), cpu=cpu_model(),
                                   date_utc=time.strftime("%Y-%m-%d %H:%M", time.gmtime()))
    elif "benchmark" in previous:  # nothing trained now: keep the numbers of the run that trained
        result["benchmark"] = previous["benchmark"]
    else:  # a finished checkpoint without a record of its training: say so, and claim no load or date
        result["benchmark"] = dict(command=command, reused_checkpoint=True, load_average_before=None,
                                   load_average_after=None, cpu=cpu_model(), date_utc=None)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def load_text(load: list[float] | None) -> str:
    """'1.6, 2.1, 1.8', or 'unknown (reused checkpoint)' for a run reused without a record of its training."""
    return "unknown (reused checkpoint)" if load is None else ", ".join(f"{b:.1f}" for b in load)


def fmt(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    """'mean ± sd' over seeds (one value: the value)."""
    values = [v * scale for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--recipe", default="cpu")
    p.add_argument("--variants", nargs="+", default=["attention", "no-attention"],
                   choices=["attention", "no-attention"])
    args = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows, per_variant = [], {}
    for variant in args.variants:
        results = per_variant[variant] = [run(variant, seed, args.recipe) for seed in args.seeds]
        r0 = results[0]
        rows.append(f"| {variant} | {r0['parameters']:,} | {len(results)} ({', '.join(map(str, args.seeds))}) | "
                    f"{fmt([r['test_accuracy'] for r in results], 100, 2)} % | "
                    f"{fmt([r['train_seconds'] for r in results], 1, 0)} s | "
                    f"{fmt([r['images_per_second'] for r in results], 1, 0)} | "
                    f"{load_text(r0['benchmark']['load_average_before'])} |")
    paired = ""
    if len(per_variant) == 2:
        by_seed = [{r["seed"]: r["test_accuracy"] for r in rs} for rs in per_variant.values()]
        diffs = [100 * (by_seed[0][s] - by_seed[1][s]) for s in args.seeds if s in by_seed[0] and s in by_seed[1]]
        sys.path.insert(0, str(ROOT))
        from sacnn_helpers.analysis import summarise
        mean, half = summarise(diffs)
        paired = (f"Paired by seed ({len(diffs)} pairs), {args.variants[0]} minus {args.variants[1]}: "
                  f"**{mean:+.2f} points**, 95 % interval {mean - half:+.2f} to {mean + half:+.2f} "
                  f"(per seed: {', '.join(f'{d:+.2f}' for d in diffs)}).")
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
             f"(1, 5, 15 min) before each run is listed.", "",
             "| model | parameters | seeds | test accuracy | train time | images/s | load before |",
             "|---|---|---|---|---|---|---|", *rows, "", paired, "",
             "Per run (test accuracy, train seconds): " + "; ".join(
                 f"{v} seed {r['seed']}: {100 * r['test_accuracy']:.2f} %, {r['train_seconds']:.0f} s"
                 for v, rs in per_variant.items() for r in rs), ""]
    (ROOT / "benchmarks" / f"{args.recipe}_recipe.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
