"""Does channels_last help on this machine? Training steps of the `cpu` recipe's network, both memory formats.

    python benchmarks/memory_format.py            # on the CPU (or --device cuda); writes memory_format.md

`fit` lays maps out channels_last on the CPU and on CUDA, where this measures a gain, and contiguous on Apple MPS,
whose convolution backward in channels_last gave wrong results before torch 2.6 and runs slower
(`runtime.memory_format`). The rounds alternate the two formats so a change in the machine's load hits both.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import sacnn_helpers as sh  # noqa: E402


def images_per_second(device: torch.device, fmt: torch.memory_format, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = sh.build_model("AttentionCNN", **sh.get_recipe("cpu").model_config).to(device, memory_format=fmt)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up
        step()
    sh.runtime.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sh.runtime.synchronize(device)
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=15)
    args = p.parse_args()
    device = sh.get_device(args.device)
    formats = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
    rates: dict[str, list[float]] = {name: [] for name in formats}
    for _ in range(args.rounds):
        for name, fmt in formats.items():
            rates[name].append(images_per_second(device, fmt, 256, args.steps))
    machine = sh.runtime.machine()
    lines = ["# channels_last against contiguous: training steps of the `cpu` recipe's network", "",
             f"`python benchmarks/memory_format.py --device {args.device}`: {machine['processor']}, "
             f"{machine['cpu_count']} cores, {machine['torch_threads']} torch threads, torch {machine['torch']}, "
             f"device {device}; batch 256, {args.steps} timed steps after 3 warm-up steps, {args.rounds} rounds.", "",
             "| memory format | images/s per round | median |", "|---|---|---|"]
    for name, values in rates.items():
        lines.append(f"| {name} | {', '.join(f'{v:.0f}' for v in values)} | {sorted(values)[len(values) // 2]:.0f} |")
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "memory_format.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
