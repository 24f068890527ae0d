"""Draw the README's front picture: one query pixel's attention map in the shipped recommended network.

    python tools/front_picture.py            # writes docs/front_picture.png (a few seconds, no training)

Test image 3 (an airplane), the query cell (3, 2) on the 8 x 8 map the layer attends over (notebook 07 draws the
same query split into content and position): the image with the query's cell boxed, its map in units of
x uniform with a colour bar, and the map laid over the image.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import sacnn_helpers as sh  # noqa: E402


def main() -> None:
    model, meta = sh.load_model(ROOT / "weights" / "sacnn_cpu_recipe.pt")
    test = sh.load_cifar10(train=False)
    index, (qy, qx) = 3, (3, 2)
    images = test.images[index:index + 1]
    _, weights, sizes = sh.collect_attention(model, sh.normalise(images, meta["mean"], meta["std"]))
    fig, axes = plt.subplots(1, 3, figsize=(9.0, 3.1))
    mappable = sh.plot_query(*axes, images[0], weights[0][0, 0], qy, qx, sizes[0],
                             title=f"{test.classes[int(test.labels[index])]} (test image {index})")
    fig.colorbar(mappable, ax=axes, shrink=0.85, label=sh.UNIFORM_LABEL)
    fig.suptitle("One query pixel's attention map: the recommended layer (notebook 07), trained (weights/)",
                 fontsize=10)
    out = ROOT / "docs" / "front_picture.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
