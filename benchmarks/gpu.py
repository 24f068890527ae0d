"""GPU benchmark, one process on one GPU: the `gpu` recipe with and without attention, airbench94 on the same
data, and the seed network's training throughput with fused vs explicit attention.

    python benchmarks/gpu.py              # 5 paired seeds per variant, 5 airbench94 runs
    python benchmarks/gpu.py --quick      # 2 seeds each, shorter throughput timing: a few minutes

Writes benchmarks/results/gpu.json and benchmarks/results/gpu.md (GPU name, torch version, date). Needs a CUDA
GPU, CIFAR-10 in data/ (or $SACNN_DATA_DIR), and for the side-by-side the PyPI package `airbench` (skipped,
and said so, when it is missing).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import sacnn_helpers as sh  # noqa: E402
from sacnn_helpers.analysis import summarise  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def recipe_runs(seeds: list[int], data: dict) -> list[dict]:
    """The gpu recipe with and without attention, paired seeds (same data order and augmentation)."""
    recipe = sh.get_recipe("gpu")
    rows = []
    for warm_up in (True, False):  # one untimed run first: cuDNN autotuning, compilation, allocator
        for seed in seeds[:1] if warm_up else seeds:
            for attention in (True, False):
                sh.seed_everything(seed)
                model = sh.build_recipe_model(recipe, data["train"], attention=attention)
                r = sh.fit(model, data, recipe, device="cuda", seed=seed, progress=False,
                           epochs=1 if warm_up else None)
                if not warm_up:
                    rows.append(dict(attention=attention, seed=seed, test_accuracy=r["test_accuracy"],
                                     train_seconds=r["train_seconds"],
                                     step_seconds=sum(h["step_seconds"] for h in r["history"]),
                                     images_per_second=r["images_per_second"], parameters=r["parameters"]))
                    print(f"gpu recipe attention={attention} seed {seed}: {100 * r['test_accuracy']:.2f} % in "
                          f"{r['train_seconds']:.1f} s", flush=True)
    return rows


def airbench_runs(seeds: list[int], train: sh.ImageSet, test: sh.ImageSet) -> list[dict] | str:
    """airbench94 (the PyPI package) on our CIFAR-10 copy: its loader reads cifar10/train.pt and test.pt from the
    working directory, so we write our images there in its format (N x 32 x 32 x 3 uint8)."""
    try:
        import airbench
    except ImportError:
        return "airbench is not installed (pip install airbench): side-by-side skipped"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "cifar10").mkdir()
        for name, split in (("train", train), ("test", test)):
            torch.save({"images": split.images.permute(0, 2, 3, 1).contiguous(), "labels": split.labels,
                        "classes": split.classes}, Path(tmp) / "cifar10" / f"{name}.pt")
        here = os.getcwd()
        os.chdir(tmp)
        try:
            loader = airbench.CifarLoader("cifar10", train=True, batch_size=1024, aug=dict(flip=True, translate=2),
                                          altflip=True)
            test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
            airbench.warmup94(train_loader=loader, verbose=False)
            for seed in seeds:
                torch.manual_seed(seed)
                torch.cuda.synchronize()
                start = time.perf_counter()
                model = airbench.train94(train_loader=loader, verbose=False)
                torch.cuda.synchronize()
                seconds = time.perf_counter() - start
                accuracy = airbench.evaluate(model, test_loader, tta_level=2)
                rows.append(dict(seed=seed, test_accuracy=accuracy, train_seconds=seconds))
                print(f"airbench94 seed {seed}: {100 * accuracy:.2f} % in {seconds:.2f} s", flush=True)
        finally:
            os.chdir(here)
    return rows


def throughput(batch: int, use_sdpa: bool, steps: int) -> dict:
    """Training images/s and peak memory of the summary's network (CNNWithSelfAttention, attention over all
    1,024 pixels at 32 x 32) in bf16 autocast, with the fused SDPA path or the explicit HW x HW path."""
    torch.manual_seed(0)
    model = sh.CNNWithSelfAttention().cuda().to(memory_format=torch.channels_last)
    for layer in sh.attention_layers(model):
        layer.use_sdpa = use_sdpa
        with torch.no_grad():
            layer.gamma.fill_(0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device="cuda")
    torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    try:
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    except (torch.cuda.OutOfMemoryError, sh.AttentionMemoryError) as e:
        return dict(batch=batch, path="fused SDPA" if use_sdpa else "explicit", error=type(e).__name__)
    seconds = time.perf_counter() - start
    return dict(batch=batch, path="fused SDPA" if use_sdpa else "explicit", images_per_second=batch * steps / seconds,
                peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30)


def fmt(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    mean, half = summarise([v * scale for v in values])
    return f"{mean:.{digits}f}" + (f" ± {half:.{digits}f}" if len(values) > 1 else "")


def report(out: dict) -> str:
    lines = [f"# GPU benchmark: {out['gpu']}", "",
             f"torch {out['torch']}, {out['date_utc']} UTC, `python benchmarks/gpu.py{' --quick' if out['quick'] else ''}`;"
             f" data: {out['data_source']}. ± is the half-width of a 95 % t-interval over seeds.", "",
             "## The `gpu` recipe, with and without attention (paired seeds), and airbench94 on the same data", "",
             "| run | seeds | test accuracy % | train time s | training steps s |", "|---|---|---|---|---|"]
    for attention in (True, False):
        rs = [r for r in out["recipe"] if r["attention"] is attention]
        lines.append(f"| `gpu` recipe, {'with' if attention else 'without'} attention | {len(rs)} | "
                     f"{fmt([r['test_accuracy'] for r in rs], 100)} | {fmt([r['train_seconds'] for r in rs])} | "
                     f"{fmt([r['step_seconds'] for r in rs])} |")
    with_att = {r["seed"]: r["test_accuracy"] for r in out["recipe"] if r["attention"]}
    without = {r["seed"]: r["test_accuracy"] for r in out["recipe"] if not r["attention"]}
    diffs = [100 * (with_att[s] - without[s]) for s in with_att if s in without]
    if isinstance(out["airbench"], list):
        ab = out["airbench"]
        lines.append(f"| airbench94 (PyPI `airbench`, TTA level 2) | {len(ab)} | {fmt([r['test_accuracy'] for r in ab], 100)} | "
                     f"{fmt([r['train_seconds'] for r in ab])} | – |")
    lines += ["", f"With minus without attention, paired by seed: {fmt(diffs)} points."]
    if isinstance(out["airbench"], list) and out["airbench"]:
        ratio = (summarise([r["train_seconds"] for r in out["recipe"] if r["attention"]])[0]
                 / summarise([r["train_seconds"] for r in out["airbench"]])[0])
        lines.append(f"Time of the `gpu` recipe (with attention) / time of airbench94: {ratio:.1f}x.")
    else:
        lines.append(f"airbench94: {out['airbench']}")
    lines += ["", "## The summary's network (attention over 1,024 pixels), training throughput in bf16", "",
              "| batch | attention path | images/s | peak memory GiB |", "|---|---|---|---|"]
    for r in out["throughput"]:
        if "error" in r:
            lines.append(f"| {r['batch']} | {r['path']} | {r['error']} | – |")
        else:
            lines.append(f"| {r['batch']} | {r['path']} | {r['images_per_second']:,.0f} | {r['peak_memory_gib']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 seeds and shorter timing (a few minutes)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per variant (default 5, or 2 with --quick)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA GPU; torch sees none")
    seeds = list(range(args.seeds or (2 if args.quick else 5)))
    data = sh.load_recipe_data(sh.get_recipe("gpu"))
    out = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, quick=args.quick,
               date_utc=time.strftime("%Y-%m-%d %H:%M", time.gmtime()), data_source=data["train"].source)
    out["throughput"] = [throughput(batch, use_sdpa, steps=10 if args.quick else 30)
                         for batch in (256, 1024) for use_sdpa in (True, False)]
    for r in out["throughput"]:
        print(r, flush=True)
    out["recipe"] = recipe_runs(seeds, data)
    train, test = sh.load_dataset("cifar10")
    out["airbench"] = airbench_runs(seeds, train, test)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu.json").write_text(json.dumps(out, indent=1) + "\n")
    text = report(out)
    (RESULTS / "gpu.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
