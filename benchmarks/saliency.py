"""Attention against gradient saliency on the shipped network: the deletion/insertion test (Petsiuk et al. 2018).

    python benchmarks/saliency.py                 # 1,000 test images, weights/sacnn_cpu_recipe.pt
    python benchmarks/saliency.py --images 200 --checkpoint runs/notebook/cpu_attention_seed0.pt

Ranks the 64 cells of the 8 x 8 attention map (4 x 4-pixel patches) by the attention they receive (mean over
queries), by Grad-CAM at the attention layer, by |input x gradient|, and at random; hides them most important
first (deletion: lower area = the ranking found what the prediction needs) or reveals them on a blank image
(insertion: higher area = better), 4 cells a step. Writes benchmarks/saliency.md and benchmarks/results/saliency.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import sacnn_helpers as sh  # noqa: E402
from sacnn_helpers.saliency import saliency_table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000, help="first N test images (default 1000)")
    p.add_argument("--checkpoint", default=str(ROOT / "weights" / "sacnn_cpu_recipe.pt"))
    p.add_argument("--steps", type=int, default=16, help="steps from no cell to all 64 (default 16: 4 cells a step)")
    args = p.parse_args()
    model, meta = sh.load_model(args.checkpoint)
    test = sh.load_cifar10(train=False)
    images = sh.normalise(test.images[:args.images], meta["mean"], meta["std"])
    start = time.perf_counter()
    table = saliency_table(model, images, steps=args.steps)
    seconds = time.perf_counter() - start
    name = Path(args.checkpoint).name
    rows = [f"| {method} | {v['deletion']:.3f} ± {v['deletion_ci95']:.3f} | {v['insertion']:.3f} ± {v['insertion_ci95']:.3f} |"
            for method, v in table.items()]
    best_del = min(table, key=lambda m: table[m]["deletion"])
    best_ins = max(table, key=lambda m: table[m]["insertion"])
    lines = ["# Attention against gradient saliency: deletion and insertion", "",
             f"`python benchmarks/saliency.py --images {args.images}` on `{name}` (the first {args.images:,} test images, "
             f"{args.steps} steps of {64 // args.steps} cells on the 8 x 8 map; hidden pixels set to the mean). "
             f"Area under the probability of the class predicted on the intact image, mean ± 95 % half-width over "
             f"images; {seconds:.0f} s on a 2-core CPU.", "",
             "| ranking of the 64 map cells | deletion area (lower is better) | insertion area (higher is better) |",
             "|---|---|---|", *rows, "",
             f"Best at deletion: **{best_del}**; best at insertion: **{best_ins}**.", ""]
    (ROOT / "benchmarks" / "saliency.md").write_text("\n".join(lines))
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "saliency.json").write_text(json.dumps(
        dict(checkpoint=name, images=args.images, steps=args.steps, seconds=seconds, table=table), indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
