"""Benchmark: the long-range "same colour?" task, the same CNN with and without one attention layer.

Runs the training CLI (`python -m sacnn_helpers.train --dataset long-range --recipe cpu`) for each
seed with and without attention, and writes benchmarks/long_range_results.json and
benchmarks/long_range_results.md (test accuracy, seconds of training, machine and load).

    flock /tmp/sacnn-cpu.lock python benchmarks/long_range.py            # seeds 0 1 2
    python benchmarks/long_range.py --seeds 0 --recipe smoke              # seconds
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def run(seed: int, attention: bool, recipe: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "sacnn_helpers.train", "--dataset", "long-range", "--recipe", recipe,
               "--seed", str(seed), "--device", "cpu", "--quiet", "--out", str(out)]
        cmd += [] if attention else ["--no-attention"]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--recipe", default="cpu")
    p.add_argument("--out", default=str(HERE / "long_range_results"), help="path without extension")
    args = p.parse_args()
    load_before = os.getloadavg()
    rows = []
    for seed in args.seeds:
        for attention in (True, False):
            r = run(seed, attention, args.recipe)
            rows.append(dict(seed=seed, attention=attention, test_accuracy=r["test_accuracy"],
                             train_seconds=r["train_seconds"], wall_seconds=r["wall_seconds"],
                             epochs=r["epochs"], model_config=r["model_config"], load_average=r["machine"]["load_average"]))
            print(f"seed {seed} attention={attention}: test accuracy {r['test_accuracy']:.4f}, "
                  f"{r['train_seconds']:.1f} s training, {r['wall_seconds']:.1f} s wall", flush=True)
    acc = {a: [r["test_accuracy"] for r in rows if r["attention"] == a] for a in (True, False)}
    gaps = [w - wo for w, wo in zip(acc[True], acc[False])]
    machine = dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                   cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
                   load_average_before=list(load_before), load_average_after=list(os.getloadavg()))
    summary = dict(recipe=args.recipe, seeds=args.seeds, rows=rows, machine=machine,
                   median_accuracy_with=statistics.median(acc[True]),
                   median_accuracy_without=statistics.median(acc[False]),
                   min_gap_points=100 * min(gaps),
                   max_train_seconds=max(r["train_seconds"] for r in rows),
                   max_wall_seconds=max(r["wall_seconds"] for r in rows))
    Path(args.out + ".json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = ["# Long-range task: the same CNN with and without one attention layer",
             "", f"`python benchmarks/long_range.py` (recipe `{args.recipe}`, CLI runs, seeds {args.seeds}).",
             f"Machine: {machine['processor']}, {machine['cpu_count']} cores, torch {machine['torch']} "
             f"({machine['torch_threads']} threads), {machine['platform']}; load average before "
             f"{load_before[0]:.2f}, after {machine['load_average_after'][0]:.2f} (shared machine).", "",
             "| seed | attention | test accuracy | training s | wall s (CLI, incl. data) |", "|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {'yes' if r['attention'] else 'no'} | {r['test_accuracy']:.4f} | "
              f"{r['train_seconds']:.1f} | {r['wall_seconds']:.1f} |" for r in rows]
    lines += ["", f"Median test accuracy: with attention {summary['median_accuracy_with']:.4f}, without "
              f"{summary['median_accuracy_without']:.4f}; smallest gap over seeds {summary['min_gap_points']:.1f} "
              f"points; longest run {summary['max_train_seconds']:.1f} s of training "
              f"({summary['max_wall_seconds']:.1f} s wall)."]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
