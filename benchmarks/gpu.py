"""GPU benchmark, one process on one GPU, most valuable runs first, each result saved the moment it ends.

    python benchmarks/gpu.py                      # on a CUDA GPU: stops starting runs after --budget-s seconds
    python benchmarks/gpu.py --dry-run --seeds 1  # every part once at toy size on the CPU: a rehearsal
    python benchmarks/gpu.py --dry-run            # the same with the default 5 seeds

What each form costs: on an H200 the real run fills its budget (default 540 s) with seeds; on our 2-core CPU the
dry run takes about 22 s with --seeds 1 and about 9 s more per further seed (benchmarks/gpu_dry_run.md).

The order: an untimed warm-up of both variants at the real batch size (cuDNN autotuning); (1) the `gpu`
recipe (airbench94's training, `sacnn_helpers/speedrun.py`) with and without the attention layer, seed 0;
(2) airbench94 itself (the PyPI package `airbench` 0.1.8, its own code) on the same data copy, seed 0; these
always run. (3) More paired seeds of (1) and (2), each started only while the budget (`--budget-s`) allows
one more seed and the 30 s kept for (4): the summary's network (attention over all 1,024 pixels) training
throughput with the fused SDPA path against the explicit one.

What the times are: for the `gpu` recipe, the seconds of its training steps (the whitening set-up, the data
transfer, the per-epoch attention statistics and the test-time augmentation are left out); for airbench94,
the wall clock of its `train94` call (which also builds the network and sets the whitening layer). So the
two are close but not the same measurement; the README and gpu.md say so.
Every run appends one JSON line to OUT/gpu_runs.jsonl as soon as it ends (a crash later loses nothing; a
run that fails writes its error and the next one starts), and OUT/gpu.md is rewritten from all lines after
each run. Each line names the GPU, torch and CUDA versions. OUT defaults to benchmarks/results
(with --dry-run: benchmarks/results/dry_run, git-ignored).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the package, and tests/airbench_harness.py
import sacnn_helpers as sh  # noqa: E402
from sacnn_helpers import speedrun  # noqa: E402
from sacnn_helpers.analysis import summarise  # noqa: E402
import airbench_harness  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TOY = dict(train_limit=256, test_limit=128, batch_size=128, epochs=1.5)  # --dry-run sizes: 3 steps


def versions(device: torch.device) -> dict[str, Any]:
    return dict(gpu=torch.cuda.get_device_name() if device.type == "cuda" else None, torch=torch.__version__,
                cuda=torch.version.cuda, device=str(device))


class Log:
    """Appends each run's result to gpu_runs.jsonl the moment it ends, and rewrites gpu.md from all of them."""

    def __init__(self, out: Path, device: torch.device, dry_run: bool) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.path, self.md, self.rows = out / "gpu_runs.jsonl", out / "gpu.md", []
        self.stamp = dict(versions(device), dry_run=dry_run)

    def run(self, part: str, fn: Callable[[], dict[str, Any]], **tags: Any) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            row = dict(part=part, **tags, **fn(), ok=True)
        except Exception as e:  # keep going: the next part may still work
            row = dict(part=part, **tags, ok=False, error=f"{type(e).__name__}: {e}",
                       traceback=traceback.format_exc()[-2000:])
        row.update(self.stamp, wall_seconds=time.perf_counter() - start,
                   date_utc=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()))
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.rows.append(row)
        self.md.write_text(report(self.rows))
        print(f"gpu.py: {part} {tags} -> " + (f"{100 * row['test_accuracy']:.2f} %" if "test_accuracy" in row
              else "ok" if row["ok"] else row["error"]), flush=True)
        return row


def recipe_run(data: dict, device: torch.device, seed: int, attention: bool, dry_run: bool,
               epochs: float | None = None) -> dict[str, Any]:
    """The gpu recipe (airbench94's training of Airbench94Net), with or without its attention layer."""
    changes = dict(TOY) if dry_run else {}
    if epochs is not None:
        changes["epochs"] = epochs
    recipe = sh.get_recipe("gpu", **changes)
    sh.seed_everything(seed)
    model = sh.build_recipe_model(recipe, data["train"], attention=attention)
    r = sh.fit(model, data, recipe, device=device, seed=seed, progress=False)
    return {k: r[k] for k in ("test_accuracy", "train_seconds", "images_per_second", "parameters", "dtype", "epochs")}


def airbench_run(train: sh.ImageSet, test: sh.ImageSet, device: torch.device, seed: int, dry_run: bool,
                 warm: list[bool]) -> dict[str, Any]:
    """airbench94, the package's own code, on our CIFAR-10 copy (written where its loader looks)."""
    import airbench
    from airbench import utils
    batch = TOY["batch_size"] if dry_run else 1024
    with tempfile.TemporaryDirectory() as tmp:
        airbench_harness.write_airbench_data(tmp, train, test)
        context = airbench_harness.airbench_on_cpu(tmp) if device.type != "cuda" else _chdir(tmp)
        with context:
            loader = utils.CifarLoader("cifar10", train=True, batch_size=batch, aug=dict(flip=True, translate=2),
                                       altflip=True)
            epochs = TOY["epochs"] if dry_run else speedrun.HYP["opt"]["train_epochs"]
            if not warm[0]:  # untimed warm-up (cuDNN autotuning): 5 steps, not warmup94 (a whole run when quiet)
                airbench.train94(train_loader=loader, epochs=5 / len(loader), verbose=False)
                warm[0] = True
            torch.manual_seed(seed)
            sh.runtime.synchronize(device)
            start = time.perf_counter()
            model = airbench.train94(train_loader=loader, epochs=epochs, verbose=False)
            sh.runtime.synchronize(device)
            seconds = time.perf_counter() - start
            test_loader = utils.CifarLoader("cifar10", train=False, batch_size=2000)
            accuracy = utils.evaluate(model, test_loader, tta_level=2)
    return dict(test_accuracy=accuracy, train_seconds=seconds, epochs=epochs)


class _chdir:
    def __init__(self, folder: str) -> None:
        self.folder, self.here = folder, None

    def __enter__(self) -> None:
        import os
        self.here = os.getcwd()
        os.chdir(self.folder)

    def __exit__(self, *exc: Any) -> None:
        import os
        os.chdir(self.here)


def throughput_run(device: torch.device, batch: int, use_sdpa: bool, steps: int, dry_run: bool) -> dict[str, Any]:
    """Training images/s and peak memory of the summary's network (CNNWithSelfAttention: attention over all
    1,024 pixels at 32 x 32), bf16 autocast on CUDA, with the fused SDPA path or the explicit HW x HW path."""
    torch.manual_seed(0)
    size = 16 if dry_run else 32
    model = sh.CNNWithSelfAttention(image_size=size).to(device).to(memory_format=torch.channels_last)
    for layer in sh.attention_layers(model):
        layer.use_sdpa = use_sdpa
        with torch.no_grad():
            layer.gamma.fill_(0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    sh.runtime.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sh.runtime.synchronize(device)
    seconds = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return dict(images_per_second=batch * steps / seconds, peak_memory_gib=memory, image_size=size)


# --- the report -------------------------------------------------------------------------------------

def fmt(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    if not values:
        return "–"
    mean, half = summarise([v * scale for v in values])
    return f"{mean:.{digits}f}" + (f" ± {half:.{digits}f}" if len(values) > 1 else "")


def report(rows: list[dict[str, Any]]) -> str:
    ok = [r for r in rows if r["ok"]]
    first = rows[0]
    lines = [f"# GPU benchmark: {first['gpu'] or first['device']}" + (" (DRY RUN: toy sizes on the CPU)"
                                                                       if first["dry_run"] else ""), "",
             f"torch {first['torch']}, CUDA {first['cuda']}, from `benchmarks/gpu.py`, {len(rows)} runs "
             f"({len(rows) - len(ok)} failed), last at {rows[-1]['date_utc']} UTC. ± is the half-width of a 95 % "
             f"t-interval over seeds. Every run is a line of gpu_runs.jsonl. Train time: the `gpu` recipe's "
             f"training steps only; airbench94's whole `train94` call (network, whitening, steps).", "",
             "| run | seeds | test accuracy % (TTA level 2) | train time s |", "|---|---|---|---|"]
    for name, pick in (("`gpu` recipe with attention", lambda r: r["part"] == "recipe" and r["attention"]),
                       ("`gpu` recipe without attention", lambda r: r["part"] == "recipe" and not r["attention"]),
                       ("airbench94 (the `airbench` package)", lambda r: r["part"] == "airbench")):
        rs = [r for r in ok if pick(r)]
        lines.append(f"| {name} | {len(rs)} | {fmt([r['test_accuracy'] for r in rs], 100)} | "
                     f"{fmt([r['train_seconds'] for r in rs])} |")
    with_att = {r["seed"]: r["test_accuracy"] for r in ok if r["part"] == "recipe" and r["attention"]}
    without = {r["seed"]: r["test_accuracy"] for r in ok if r["part"] == "recipe" and not r["attention"]}
    diffs = [100 * (with_att[s] - without[s]) for s in with_att if s in without]
    lines += ["", f"With minus without attention, paired by seed ({len(diffs)} pairs): {fmt(diffs)} points.", "",
              "## The summary's network (attention over 1,024 pixels), training throughput", "",
              "| batch | attention path | images/s | peak memory GiB |", "|---|---|---|---|"]
    for r in rows:
        if r["part"] == "throughput":
            if r["ok"]:
                memory = "–" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.2f}"
                lines.append(f"| {r['batch']} | {r['path']} | {r['images_per_second']:,.0f} | {memory} |")
            else:
                lines.append(f"| {r['batch']} | {r['path']} | {r['error'][:60]} | – |")
    failed = [r for r in rows if not r["ok"]]
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- {r['part']} {r.get('seed', '')}: {r['error'][:200]}" for r in failed]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="every part at toy size on the CPU (a rehearsal)")
    p.add_argument("--budget-s", type=float, default=540, help="start no run after this many seconds (default 540)")
    p.add_argument("--seeds", type=int, default=5, help="paired seeds at most (default 5)")
    p.add_argument("--out", type=Path, default=None, help="folder for gpu_runs.jsonl and gpu.md")
    args = p.parse_args(argv)
    if args.dry_run:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        p.error("no CUDA GPU: run on a GPU, or rehearse with --dry-run")
    out = args.out or (RESULTS / "dry_run" if args.dry_run else RESULTS)
    log = Log(out, device, args.dry_run)
    start = time.perf_counter()
    recipe = sh.get_recipe("gpu", **(TOY if args.dry_run else {}))
    data: dict = {}

    def load() -> dict[str, Any]:  # a run like the others: a missing data set is recorded, then we stop
        data.update(sh.load_recipe_data(recipe))
        return dict(train_images=len(data["train"]), test_images=len(data["test"]), source=data["train"].source)

    if not log.run("data", load)["ok"]:
        return 1
    warm = [False]

    def seed_runs(seed: int) -> None:
        for attention in (True, False):
            log.run("recipe", lambda: recipe_run(data, device, seed, attention, args.dry_run),
                    seed=seed, attention=attention)
        log.run("airbench", lambda: airbench_run(data["train"], data["test"], device, seed, args.dry_run, warm),
                seed=seed)

    # untimed: cuDNN autotuning at the timed shapes, allocator, lazy CUDA set-up; rehearsed with 1 step
    steps = (1 if args.dry_run else 5) * recipe.batch_size / len(data["train"])  # steps of the real batch, then TTA
    for attention in (True, False):
        log.run("warm-up", lambda: recipe_run(data, device, 99, attention, args.dry_run, epochs=steps),
                attention=attention)
    seed_runs(0)
    reserve = 30.0  # seconds kept for the throughput table, which comes last
    per_seed = max(1.0, sum(r["wall_seconds"] for r in log.rows if r.get("seed") == 0))
    for seed in range(1, args.seeds):
        elapsed = time.perf_counter() - start
        if elapsed + per_seed + reserve > args.budget_s:
            print(f"gpu.py: budget: {elapsed:.0f} s spent, a seed takes ~{per_seed:.0f} s, {args.budget_s:.0f} s "
                  f"allowed: stopping before seed {seed}", flush=True)
            break
        seed_runs(seed)
    for batch in ((32,) if args.dry_run else (256, 1024)):
        for use_sdpa in (True, False):
            log.run("throughput", lambda: throughput_run(device, batch, use_sdpa, 3 if args.dry_run else 30,
                                                         args.dry_run),
                    batch=batch, path="fused SDPA" if use_sdpa else "explicit")
    print(log.md.read_text())
    return 0 if all(r["ok"] for r in log.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
