"""Notebook 09's attention explorer: sliders, click-to-query, networks side by side, an epoch slider (matplotlib)."""
from __future__ import annotations

import io
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn as nn
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .attention import attention_layers, attention_pools, collect_attention, collect_maps
from .visualisation import (UNIFORM_LABEL, _query_map, map_cell, map_pixel, overlay, shared_scale, to_display,
                            weight_range)

if TYPE_CHECKING:
    import ipywidgets


class AttentionExplorer:
    """Sliders, a click and a toggle over (image, query pixel, head, layer) redrawing one figure in place.

    One row per network: the image with the query's cell boxed, the query's H x W map (one row of the HW x HW
    matrix) and the overlay; a click picks the map pixel under the mouse; "where all queries look" shows each key's
    mean weight (a column mean). A view's maps share one x-uniform scale: the largest peak, at least 2, so a flat
    map looks flat. An update calls `set_data` and renders a PNG into an `ipywidgets.Image` (clicks: `ipyevents`).
    An `AttentionPool` is the last "layer": one map per head (its one query is the image's mean pixel).

    `models`: a network with a `SelfAttention` or `AttentionPool`, or {name: network} (sliders reach every one's layers).
    `images`: N x C x H x W as the models take them; `display_images`: for showing (uint8 or 0..1). `labels`,
    `class_names`: optional. `vmax`: one fixed scale top. `replays`: {name: meta["replay"]} from `fit`, for an epoch
    slider from 0 (untrained); only the first few test images have snapshots, so pass test images from index 0."""

    def __init__(self, models: nn.Module | dict[str, nn.Module], images: torch.Tensor,
                 display_images: torch.Tensor | None = None, labels: Sequence[int] | torch.Tensor | None = None,
                 class_names: Sequence[str] | None = None, vmax: float | None = None,
                 replays: dict[str, dict] | None = None) -> None:
        if len(images) == 0:
            raise ValueError(f"AttentionExplorer needs at least one image, got an empty batch of shape "
                             f"{tuple(images.shape)}; pass N x C x H x W images with N >= 1")
        self.models = {"": models} if isinstance(models, nn.Module) else dict(models)
        if not self.models:
            raise ValueError("AttentionExplorer needs a network: pass one model or {name: model}")
        self.names = list(self.models)
        self.model = self.models[self.names[0]]
        self.images = images
        self.display_images = images if display_images is None else display_images
        if len(self.display_images) != len(images):
            raise ValueError(f"display_images has {len(self.display_images)} images but images has {len(images)}; "
                             f"pass the same images twice (once prepared for the model, once for showing)")
        self.labels = None if labels is None else [int(v) for v in labels]
        self.class_names = list(class_names) if class_names is not None else None
        self._cache: dict[tuple[str, int], tuple[int, list[torch.Tensor], list[tuple[int, int]]]] = {}
        self.replays = dict(replays or {})
        unknown = [name for name in self.replays if name not in self.models]
        if unknown:
            raise ValueError(f"replays names {unknown}, which are not among the networks {self.names}; "
                             f"key each replay by its network's name")
        epochs = sorted({s["epoch"] for r in self.replays.values() for s in r["snapshots"]})
        self.epochs = epochs  # [] without replays
        per_network = [self.attention(0, name) for name in self.names]
        layers = max(len(sizes) for _, _, sizes in per_network)  # a layer slider reaches every network's last
        # each layer's map size and head count: from the first network that has that layer / the most heads
        self.sizes = [next(sizes[i] for _, _, sizes in per_network if i < len(sizes)) for i in range(layers)]
        self.heads = [max(w[i].shape[0] for _, w, _ in per_network if i < len(w)) for i in range(layers)]
        self.fixed_vmax = vmax
        self.vmax = 2.0  # the scale of the view shown last
        rows = len(self.names)
        height = 2.55 * rows + 0.55
        self.figure = Figure(figsize=(8.2, height), dpi=100)
        self.axes = self.figure.subplots(rows, 3, squeeze=False)
        # room for the two-line titles above each row and the map's tick labels below the last
        self.figure.subplots_adjust(left=0.05, right=0.9, bottom=0.25 / height, top=1 - 0.62 / height,
                                    wspace=0.12, hspace=0.42)
        self._artists: list[dict[str, object]] | None = None
        self.state: dict[str, int | bool] = {}
        self.status_text = ""

    def attention(self, index: int, name: str | None = None) -> tuple[int, list[torch.Tensor], list[tuple[int, int]]]:
        """(prediction, per-layer heads x HW x HW weights, map sizes) of network `name` on image `index`, cached."""
        name = self.names[0] if name is None else name
        if not 0 <= index < len(self.images):
            raise ValueError(f"image index {index} is outside 0..{len(self.images) - 1}")
        if (name, index) not in self._cache:
            model, x = self.models[name], self.images[index:index + 1]
            if not attention_layers(model) and not attention_pools(model):
                collect_attention(model, x)  # raises: nothing to show, and says so
            logits, weights, sizes, pool, size = collect_maps(model, x)
            if pool is not None:  # the pool's one map per head, as the row of every query
                weights, sizes = [*weights, _pool_rows(pool)], [*sizes, size]
            self._cache[(name, index)] = (int(logits.argmax(1)[0]), [w[0] for w in weights], sizes)
        return self._cache[(name, index)]

    def is_pool(self, name: str, layer: int) -> bool:
        """Whether `layer` of network `name` is its `AttentionPool` (shown after its attention layers)."""
        return bool(attention_pools(self.models[name])) and layer >= len(attention_layers(self.models[name]))

    def snapshot(self, index: int, name: str, epoch: int | None) -> tuple[int, list[torch.Tensor], list[tuple[int, int]]] | None:
        """Like `attention`, after `epoch` epochs from network `name`'s replay; None without that snapshot."""
        replay = self.replays.get(name)
        if epoch is None or replay is None or index >= len(replay["images"]):
            return None
        for snap in replay["snapshots"]:
            if snap["epoch"] == epoch:
                weights, sizes = [w[index].float() for w in snap["layers"]], [tuple(hw) for hw in snap["sizes"]]
                if snap.get("pool") is not None:
                    weights.append(_pool_rows(snap["pool"][index:index + 1].float())[0])
                    sizes.append(tuple(snap["pool_size"]))
                return int(snap["predicted"][index]), weights, sizes
        return None

    def _name(self, cls: int) -> str:
        return self.class_names[cls] if self.class_names else str(cls)

    def query_map(self, index: int, y: int, x: int, head: int = 0, layer: int = 0, name: str | None = None,
                  all_queries: bool = False, epoch: int | None = None) -> torch.Tensor:
        """The H x W map shown: row y*W + x of the weights, or with `all_queries` each key's mean weight.
        (y, x) is in the first network's map cells, scaled to this network's map; `epoch`: see `snapshot`."""
        name = self.names[0] if name is None else name
        _, weights, sizes = self.snapshot(index, name, epoch) or self.attention(index, name)
        layer = min(layer, len(sizes) - 1)
        w = weights[layer][min(head, weights[layer].shape[0] - 1)]
        (h, wd), (h0, w0) = sizes[layer], self.sizes[min(layer, len(self.sizes) - 1)]
        if all_queries:
            return w.detach().float().mean(0).reshape(h, wd).cpu()
        return _query_map(w, y * h // h0, x * wd // w0, (h, wd))

    def pick(self, px: float, py: float) -> tuple[int, int] | None:
        """What a click does: the map cell (y, x) under picture pixel (px, py) (from the top left), or None."""
        height = self.figure.bbox.height
        for row, name in enumerate(self.names):
            _, _, sizes = self.attention(self.state.get("index", 0), name)
            map_size = sizes[min(int(self.state.get("layer", 0)), len(sizes) - 1)]
            for col, ax in enumerate(self.axes[row]):
                if not ax.bbox.contains(px, height - py):
                    continue
                xd, yd = ax.transData.inverted().transform((px, height - py))
                if col == 1:  # the map's own axes are map cells
                    cell = (int(round(yd)), int(round(xd)))
                else:  # image pixels: the map cell that covers them
                    ih, iw = to_display(self.display_images[0]).shape[:2]
                    cell = map_pixel(min(max(int(round(yd)), 0), ih - 1), min(max(int(round(xd)), 0), iw - 1),
                                     (ih, iw), map_size)
                (h0, w0) = self.sizes[min(int(self.state.get("layer", 0)), len(self.sizes) - 1)]
                y, x = cell[0] * h0 // map_size[0], cell[1] * w0 // map_size[1]  # in the first network's cells
                return min(max(y, 0), h0 - 1), min(max(x, 0), w0 - 1)
        return None

    def update(self, index: int = 0, y: int = 0, x: int = 0, head: int = 0, layer: int = 0,
               all_queries: bool = False, epoch: int | None = None) -> bytes:
        """Draw image `index`, query (y, x) or all, `head` of `layer` after `epoch` epochs (None: trained) as a PNG."""
        if epoch is not None and epoch not in self.epochs:
            raise ValueError(f"epoch {epoch} has no snapshot; the replays hold epochs {self.epochs}")
        if not 0 <= layer < len(self.sizes):
            raise ValueError(f"layer {layer} is outside 0..{len(self.sizes) - 1}")
        if not 0 <= head < self.heads[layer]:
            raise ValueError(f"head {head} is outside 0..{self.heads[layer] - 1}")
        maps = [self.query_map(index, y, x, head, layer, name, all_queries, epoch) for name in self.names]
        self.vmax = (shared_scale([m.reshape(-1) for m in maps]) if self.fixed_vmax is None else self.fixed_vmax)
        img = to_display(self.display_images[index])
        if self._artists is None:  # first call: create the artists once
            self._artists = []
            for row in range(len(self.names)):
                ax_img, ax_map, ax_over = self.axes[row]
                a = {"img": ax_img.imshow(img), "over": ax_over.imshow(img),
                     "map": ax_map.imshow(maps[row].numpy(), cmap="inferno", vmin=0, vmax=self.vmax)}
                for key, ax in (("box_img", ax_img), ("box_map", ax_map), ("box_over", ax_over)):
                    a[key] = ax.add_patch(Rectangle((0, 0), 1, 1, fill=False, edgecolor="cyan", linewidth=2))
                for ax in (ax_img, ax_over):
                    ax.set_xticks([])
                    ax.set_yticks([])
                ax_map.tick_params(labelsize=7)
                self._artists.append(a)
            top = self.axes[0, 2].get_position().y1
            bottom = self.axes[-1, 2].get_position().y0
            bar_axes = self.figure.add_axes((0.915, bottom, 0.015, top - bottom))
            self.figure.colorbar(self._artists[0]["map"], cax=bar_axes).set_label(UNIFORM_LABEL, fontsize=8)
        truth = f"true {self._name(self.labels[index])}, " if self.labels is not None else ""
        for row, name in enumerate(self.names):
            snap = self.snapshot(index, name, epoch)
            pred, row_weights, sizes = snap or self.attention(index, name)
            row_layer = min(layer, len(sizes) - 1)  # a network with fewer layers or heads shows its last one
            row_head = min(head, row_weights[row_layer].shape[0] - 1)
            map_size = sizes[row_layer]
            (h0, w0) = self.sizes[layer]
            qy, qx = y * map_size[0] // h0, x * map_size[1] // w0
            amap, a = maps[row], self._artists[row]
            ax_img, ax_map, ax_over = self.axes[row]
            a["img"].set_data(img)
            a["over"].set_data(overlay(img, amap, self.vmax))
            a["map"].set_data(amap.numpy() * amap.numel())
            a["map"].set_extent((-0.5, map_size[1] - 0.5, map_size[0] - 0.5, -0.5))
            ax_map.set_xlim(-0.5, map_size[1] - 0.5)
            ax_map.set_ylim(map_size[0] - 0.5, -0.5)
            ax_map.set_xticks(range(0, map_size[1], 2))
            ax_map.set_yticks(range(0, map_size[0], 2))
            a["map"].set_clim(0, self.vmax)  # the colour bar follows
            top, left, h, w = map_cell(qy, qx, map_size, img.shape[:2])
            pooled = self.is_pool(name, row_layer)  # one query, the mean pixel: no query cell to mark
            for key in ("box_img", "box_over"):
                a[key].set_xy((left - 0.5, top - 0.5))
                a[key].set_width(w)
                a[key].set_height(h)
                a[key].set_visible(not all_queries and not pooled)
            a["box_map"].set_xy((qx - 0.5, qy - 0.5))
            a["box_map"].set_visible(not all_queries and not pooled)
            label = f"{name}: " if name else ""
            when = ("" if epoch is None else f"epoch {epoch}: " if snap else "trained (no replay): ")
            ax_img.set_title(f"{label}image {index}\n{truth}{when}predicted {self._name(pred)}", fontsize=9)
            what = "all queries (mean)" if all_queries else f"query (y={qy}, x={qx}) = row {qy * map_size[1] + qx}"
            if pooled:
                what = "the pool's map (one per image)"
            ax_map.set_title(f"{map_size[0]}x{map_size[1]} map: {what}\n(layer {row_layer}, head {row_head})", fontsize=9)
            ax_over.set_title(f"overlay\n{weight_range(amap)}", fontsize=9)
        self.state = dict(index=index, y=y, x=x, head=head, layer=layer, all_queries=all_queries, epoch=epoch)
        where = "where all queries look" if all_queries else f"pixel (y={y}, x={x})"
        self.status_text = f"image {index}, {where}, head {head}, layer {layer}"
        if epoch is not None:
            missing = [name or "the network" for name in self.names if self.snapshot(index, name, epoch) is None]
            self.status_text += f", epoch {epoch}" + (f" (no snapshot of this image: trained maps for "
                                                      f"{', '.join(missing)})" if missing else "")
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=self.figure.dpi)  # `pick` reads clicks at this resolution
        return buf.getvalue()

    def widget(self) -> ipywidgets.VBox:
        """Sliders, toggle, status line and picture as one ipywidgets box; a click picks the query (ipyevents)."""
        import ipywidgets as widgets

        h, w = self.sizes[0]
        style = {"description_width": "90px"}
        layout = widgets.Layout(width="420px")
        sliders = {"index": widgets.IntSlider(0, 0, len(self.images) - 1, description="image", style=style,
                                              layout=layout),
                   "y": widgets.IntSlider(h // 2, 0, h - 1, description="query row y", style=style, layout=layout),
                   "x": widgets.IntSlider(w // 2, 0, w - 1, description="query col x", style=style, layout=layout)}
        if max(self.heads) > 1:
            sliders["head"] = widgets.IntSlider(0, 0, max(self.heads) - 1, description="head", style=style,
                                                layout=layout)
        if len(self.sizes) > 1:
            sliders["layer"] = widgets.IntSlider(0, 0, len(self.sizes) - 1, description="layer", style=style,
                                                 layout=layout)
        if self.epochs:  # watch attention learn: 0 = untrained
            sliders["epoch"] = widgets.IntSlider(self.epochs[-1], self.epochs[0], self.epochs[-1],
                                                 description="epoch", style=style, layout=layout)
        toggle = widgets.Checkbox(False, description="where all queries look", indent=False)
        picture = widgets.Image(format="png", layout=widgets.Layout(width="750px"))
        status = widgets.Label()
        errors = widgets.Output()  # exceptions inside callbacks would otherwise vanish
        holding = [False]  # True while a click moves two sliders: one redraw, not two

        def redraw(_change=None) -> None:
            if holding[0]:
                return
            with errors:
                layer = sliders["layer"].value if "layer" in sliders else 0
                mh, mw = self.sizes[layer]
                sliders["y"].max, sliders["x"].max = mh - 1, mw - 1  # layers may attend at different sizes
                if "head" in sliders:
                    sliders["head"].max = self.heads[layer] - 1
                args = {k: s.value for k, s in sliders.items()}
                picture.value = self.update(**args, all_queries=toggle.value)
                status.value = self.status_text

        def click(event: dict) -> None:
            with errors:
                cell = self.pick(event["dataX"], event["dataY"])
                if cell is None:
                    return
                holding[0] = True
                try:
                    toggle.value = False
                    sliders["y"].value, sliders["x"].value = cell
                finally:
                    holding[0] = False
                redraw()

        for s in [*sliders.values(), toggle]:
            s.observe(redraw, names="value")
        try:
            from ipyevents import Event
            self.events = Event(source=picture, watched_events=["click"])
            self.events.on_dom_event(click)
        except ImportError:  # the sliders still work; say how to get clicks
            with errors:
                print("clicking needs ipyevents: pip install -r requirements.txt")
        self._click = click
        redraw()
        self.sliders, self.toggle, self.picture, self.status = sliders, toggle, picture, status
        return widgets.VBox([*sliders.values(), toggle, status, picture, errors])


def _pool_rows(pool: torch.Tensor) -> torch.Tensor:
    """B x heads x HW pool weights -> B x heads x HW x HW, the same row for every query pixel (a view)."""
    return pool[:, :, None, :].expand(-1, -1, pool.shape[-1], -1)
