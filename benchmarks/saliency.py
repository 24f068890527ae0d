"""Attention against gradient saliency on the shipped network: the deletion/insertion test (Petsiuk et al. 2018).

    python benchmarks/saliency.py                 # 1,000 test images, weights/sacnn_cpu_recipe.pt
    python benchmarks/saliency.py --images 200 --checkpoint runs/notebook/cpu_attention_seed0.pt

Ranks the 64 cells of the 8 x 8 attention map (4 x 4-pixel patches) by the attention they receive (mean over
queries), by Grad-CAM at the attention layer, by |input x gradient|, and at random; hides them most important
first (deletion: lower area = the ranking found what the prediction needs) or reveals them on a blank image
(insertion: higher area = better), 4 cells a step. Grad-CAM's map is empty on the images where the
gradient-weighted sum of the channels is negative in every cell (the ReLU leaves nothing): there it ranks
no cell above another, so the first table scores every ranking on the images where Grad-CAM is not empty,
the second on all images. Writes benchmarks/saliency.md and benchmarks/results/saliency.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import sacnn_helpers as sh  # noqa: E402
import torch  # noqa: E402
from sacnn_helpers.analysis import summarise  # noqa: E402
from sacnn_helpers.saliency import saliency_areas, summarise_areas  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000, help="first N test images (default 1000)")
    p.add_argument("--checkpoint", default=str(ROOT / "weights" / "sacnn_cpu_recipe.pt"))
    p.add_argument("--out", default=str(ROOT / "benchmarks"), help="folder for saliency.md and results/saliency.json")
    p.add_argument("--steps", type=int, default=16, help="steps from no cell to all 64 (default 16: 4 cells a step)")
    args = p.parse_args()
    model, meta = sh.load_model(args.checkpoint)
    test = sh.load_cifar10(train=False)
    images = sh.normalise(test.images[:args.images], meta["mean"], meta["std"])
    start = time.perf_counter()
    areas, empty = saliency_areas(model, images, steps=args.steps)
    seconds = time.perf_counter() - start
    n, n_empty = len(images), int(empty.sum())
    fair, everything = summarise_areas(areas, where=~empty), summarise_areas(areas)
    name = Path(args.checkpoint).name

    def against_random(method: str, kind: str, where: torch.Tensor) -> tuple[float, float]:
        """The mean per-image difference from random order on the same images, and its 95 % half-width."""
        return summarise((areas[method][kind] - areas["random order"][kind])[where].tolist())

    def rows(table: dict, where: torch.Tensor) -> list[str]:
        out = []
        for method, v in table.items():
            paired = ["–", "–"]
            if method != "random order":
                paired = [f"{d:+.3f} [{d - h:+.3f}, {d + h:+.3f}]"
                          for d, h in (against_random(method, kind, where) for kind in ("deletion", "insertion"))]
            out.append(f"| {method} | {v['deletion']:.3f} ± {v['deletion_ci95']:.3f} | "
                       f"{v['insertion']:.3f} ± {v['insertion_ci95']:.3f} | {paired[0]} | {paired[1]} |")
        return out

    header = ["| ranking of the 64 map cells | deletion area (lower is better) | insertion area (higher is better) "
              "| deletion minus random order, paired | insertion minus random order, paired |",
              "|---|---|---|---|---|"]
    best_del = min(fair, key=lambda m: fair[m]["deletion"])
    best_ins = max(fair, key=lambda m: fair[m]["insertion"])
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    lines = ["# Attention against gradient saliency: deletion and insertion", "",
             f"`python benchmarks/saliency.py --images {args.images}` on `{name}` (the first {n:,} test images, "
             f"{args.steps} steps of {64 // args.steps} cells on the 8 x 8 map; hidden pixels set to the mean). "
             f"Area under the probability of the class predicted on the intact image, mean ± 95 % half-width over "
             f"images; the paired columns: mean per-image difference from random order on the same images [95 % "
             f"interval]. {seconds:.0f} s on a {os.cpu_count()}-core CPU ({sh.runtime.cpu_model()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads; load average {load} at the end: the machine was shared with "
             f"other jobs).", "",
             f"**Grad-CAM is empty on {n_empty} of the {n:,} images** ({100 * n_empty / n:.1f} %): there the "
             f"gradient-weighted sum of the attention layer's channels is negative or zero in every cell, so the "
             f"ReLU leaves nothing and the map ranks no cell above another (the package returns it as uniform, "
             f"and a uniform map's cells go in index order, top row first).", "",
             f"## On the {n - n_empty:,} images where Grad-CAM is not empty (the fair comparison)", "",
             *header, *rows(fair, ~empty), "",
             f"Best at deletion: **{best_del}**; best at insertion: **{best_ins}**.", "",
             f"## On all {n:,} images (Grad-CAM's {n_empty} empty maps in index order)", "",
             *header, *rows(everything, torch.ones_like(empty)), ""]
    (Path(args.out) / "results").mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "saliency.md").write_text("\n".join(lines))
    (Path(args.out) / "results" / "saliency.json").write_text(json.dumps(
        dict(checkpoint=name, images=n, steps=args.steps, seconds=seconds, grad_cam_empty=n_empty,
             grad_cam_empty_images=empty.nonzero()[:, 0].tolist(), table_not_empty=fair,
             minus_random_not_empty={m: {k: dict(zip(("mean", "ci95"), against_random(m, k, ~empty)))
                                         for k in ("deletion", "insertion")} for m in fair if m != "random order"},
             table=everything),
        indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
