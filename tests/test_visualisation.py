"""The pictures of notebook 09 show the right row of the attention matrix, at the right place."""
import pytest
import torch

from sacnn_helpers import CNNWithoutAttention, CNNWithSelfAttention, pixel_index, seed_everything
from sacnn_helpers.models import AttentionCNN
import numpy as np

from sacnn_helpers import collect_attention, mean_attention_distance, uniform_attention_distance
from sacnn_helpers.explorer import AttentionExplorer
from sacnn_helpers.visualisation import (map_cell, map_pixel, overlay, plot_attention_grid, plot_query, shared_scale,
                                         show_heatmaps, upsample_map, weight_range)

H = W = 8


def planted_weights(heads: int = 1) -> torch.Tensor:
    """heads x HW x HW weights whose row y*W + x is one-hot at pixel ((y + 3) % H, (2 * x + 1) % W)."""
    w = torch.zeros(heads, H * W, H * W)
    for y in range(H):
        for x in range(W):
            w[:, y * W + x, ((y + 3) % H) * W + (2 * x + 1) % W] = 1.0
    return w


def small_explorer(heads: int = 1) -> AttentionExplorer:
    seed_everything(0)
    model = AttentionCNN(widths=[8, 16], attention_at=[2], heads=heads).eval()  # 32 -> 16 -> 8: an 8x8 map
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    return AttentionExplorer(model, images.float() / 255, display_images=images, labels=[0, 1, 2],
                             class_names=[f"class{i}" for i in range(10)])


@pytest.mark.parametrize("y, x", [(2, 5), (5, 2), (0, 7), (7, 0), (3, 3)])
def test_displayed_map_is_the_query_pixels_row(y, x):
    explorer = small_explorer()
    pred, _, sizes = explorer.attention(0)
    assert sizes == [(H, W)]
    explorer._cache[("", 0)] = (pred, [planted_weights()], sizes)  # plant known weights for image 0
    explorer.update(0, y, x)
    shown = torch.as_tensor(explorer._artists[0]["map"].get_array())  # what the figure draws
    expected = torch.zeros(H, W)
    expected[(y + 3) % H, (2 * x + 1) % W] = 1.0
    assert torch.equal(shown.float(), expected * H * W)  # drawn in units of x uniform
    assert torch.equal(explorer.query_map(0, y, x), expected)
    # The tutorial's own notebook's x*y picks another pixel's row (for these pixels), so it would show another map.
    wrong = planted_weights()[0, x * y].reshape(H, W)
    assert x * y != pixel_index(y, x, W)
    assert not torch.equal(wrong, expected)
    assert explorer.status_text == f"image 0, pixel (y={y}, x={x}), head 0, layer 0"


def test_each_head_shows_its_own_weights():
    explorer = small_explorer(heads=2)
    pred, weights, sizes = explorer.attention(1)
    planted = planted_weights(heads=2)
    planted[1] = planted[1].flip(-1)  # head 1 looks elsewhere
    explorer._cache[("", 1)] = (pred, [planted], sizes)
    m0, m1 = explorer.query_map(1, 2, 5, head=0), explorer.query_map(1, 2, 5, head=1)
    assert torch.equal(m0, planted[0, 2 * W + 5].reshape(H, W))
    assert torch.equal(m1, planted[1, 2 * W + 5].reshape(H, W))
    assert not torch.equal(m0, m1)


def test_update_redraws_in_place_and_the_picture_changes():
    explorer = small_explorer()
    first = explorer.update(0, 1, 1)
    image_artist = explorer._artists[0]["img"]
    second = explorer.update(0, 6, 1)
    third = explorer.update(2, 6, 1)
    assert explorer._artists[0]["img"] is image_artist  # same artists, new data: no new figure
    assert len(explorer.axes[0, 0].images) == 1
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert first != second != third
    assert explorer.status_text == "image 2, pixel (y=6, x=1), head 0, layer 0"


def test_widget_sliders_drive_the_picture():
    pytest.importorskip("ipywidgets")
    explorer = small_explorer(heads=2)
    box = explorer.widget()
    assert set(explorer.sliders) == {"index", "y", "x", "head"}  # one layer: no layer slider
    assert (explorer.sliders["y"].max, explorer.sliders["x"].max) == (H - 1, W - 1)
    before = explorer.picture.value
    explorer.sliders["x"].value = 0
    assert explorer.picture.value != before
    assert explorer.status.value == f"image 0, pixel (y={H // 2}, x=0), head 0, layer 0"
    explorer.sliders["head"].value = 1
    assert explorer.status.value.endswith("head 1, layer 0")
    assert len(box.children) == 4 + 4  # 4 sliders; the toggle, status, picture, errors
    single = small_explorer(heads=1)
    single.widget()
    assert set(single.sliders) == {"index", "y", "x"}  # one head, one layer: no head or layer slider


def test_a_click_picks_the_query_under_the_mouse_and_the_sliders_follow():
    pytest.importorskip("ipywidgets")
    explorer = small_explorer()
    explorer.widget()
    png_height = explorer.figure.bbox.height

    def centre_of(ax, xd, yd):  # where data point (xd, yd) of `ax` lies in the PNG, from its top-left corner
        px, py = ax.transData.transform((xd, yd))
        return px, png_height - py

    ax_img, ax_map, ax_over = explorer.axes[0]
    assert explorer.pick(*centre_of(ax_map, 6, 1)) == (1, 6)  # on the map: its own cells
    assert explorer.pick(*centre_of(ax_img, 30, 9)) == (2, 7)  # image pixel (y=9, x=30) lies in map cell (2, 7)
    assert explorer.pick(*centre_of(ax_over, 1, 29)) == (7, 0)
    assert explorer.pick(1, 1) is None  # the figure's corner: no axes
    before = explorer.picture.value
    explorer._click(dict(zip(("dataX", "dataY"), centre_of(ax_map, 3, 5))))
    assert (explorer.sliders["y"].value, explorer.sliders["x"].value) == (5, 3)
    assert explorer.status.value == "image 0, pixel (y=5, x=3), head 0, layer 0"
    assert explorer.picture.value != before
    assert "query (y=5, x=3)" in ax_map.get_title()


def test_where_all_queries_look_is_the_mean_over_queries():
    explorer = small_explorer()
    pred, _, sizes = explorer.attention(0)
    explorer._cache[("", 0)] = (pred, [planted_weights()], sizes)
    expected = planted_weights()[0].mean(0).reshape(H, W)
    torch.testing.assert_close(explorer.query_map(0, 0, 0, all_queries=True), expected)
    explorer.update(0, 2, 2, all_queries=True)
    assert explorer.status_text == "image 0, where all queries look, head 0, layer 0"
    assert not explorer._artists[0]["box_map"].get_visible()


def test_several_networks_side_by_side_share_one_colour_scale():
    seed_everything(0)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    models = {"a": AttentionCNN(widths=[8, 16], attention_at=[2]).eval(),
              "b": AttentionCNN(widths=[8, 16], attention_at=[2], qk_norm=True, gamma_init=1.0).eval()}
    explorer = AttentionExplorer(models, images.float() / 255, display_images=images)
    explorer.update(1, 3, 4)
    assert explorer.axes.shape == (2, 3)
    peaks = [float(explorer.query_map(1, 3, 4, name=n).max()) * H * W for n in models]
    assert explorer.vmax == pytest.approx(max([2.0] + peaks))
    assert [a["map"].get_clim() for a in explorer._artists] == [(0, explorer.vmax)] * 2
    assert explorer.axes[0, 0].get_title().startswith("a: image 1") and explorer.axes[1, 0].get_title().startswith("b:")


def test_collect_attention_matches_the_model_and_reports_map_sizes():
    seed_everything(0)
    x = torch.randn(2, 3, 32, 32)
    model = AttentionCNN(widths=[8, 16, 16], attention_at=[1, 3], heads=2).eval()
    logits, weights, sizes = collect_attention(model, x)
    assert sizes == [(16, 16), (4, 4)]
    assert [tuple(w.shape) for w in weights] == [(2, 2, 256, 256), (2, 2, 16, 16)]
    for w in weights:
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x))  # capturing changes nothing
    full = CNNWithSelfAttention(image_size=8).eval()
    _, weights, sizes = collect_attention(full, torch.randn(1, 3, 8, 8))
    assert sizes == [(8, 8)] and weights[0].shape == (1, 1, 64, 64)


def test_explorer_needs_an_image():
    with pytest.raises(ValueError, match=r"needs at least one image.*\(0, 3, 32, 32\)"):
        AttentionExplorer(AttentionCNN(widths=[8, 16]).eval(), torch.empty(0, 3, 32, 32))


def test_collect_attention_refuses_models_without_attention():
    with pytest.raises(ValueError, match="no SelfAttention layer"):
        collect_attention(CNNWithoutAttention(image_size=8), torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="B x C x H x W"):
        collect_attention(AttentionCNN(), torch.randn(3, 32, 32))


def test_image_and_map_pixels():
    assert map_pixel(0, 3, (32, 32), (8, 8)) == (0, 0)
    assert map_pixel(5, 30, (32, 32), (8, 8)) == (1, 7)
    assert map_pixel(31, 31, (32, 32), (8, 8)) == (7, 7)
    assert map_pixel(13, 2, (32, 32), (32, 32)) == (13, 2)  # same resolution: unchanged
    assert map_cell(1, 7, (8, 8), (32, 32)) == (4.0, 28.0, 4.0, 4.0)
    for y in range(32):  # every image pixel lies inside the cell of its map pixel
        my, mx = map_pixel(y, 31 - y, (32, 32), (8, 8))
        top, left, h, w = map_cell(my, mx, (8, 8), (32, 32))
        assert top <= y < top + h and left <= 31 - y < left + w
    with pytest.raises(ValueError, match="outside the 32x32 image"):
        map_pixel(32, 0, (32, 32), (8, 8))
    with pytest.raises(ValueError, match="outside the 8x8 map"):
        map_cell(0, 8, (8, 8), (32, 32))


def test_upsample_map_repeats_each_map_pixel_over_its_block():
    amap = torch.arange(4.0).reshape(2, 2)
    up = upsample_map(amap, (4, 4))
    assert torch.equal(up, torch.tensor([[0., 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]))
    with pytest.raises(ValueError, match="one H x W map"):
        upsample_map(torch.ones(1, 2, 2), (4, 4))


def test_mean_attention_distance():
    n = H * W
    assert mean_attention_distance(torch.eye(n)[None], H, W).tolist() == [0.0]  # each pixel looks at itself
    # Every query looks at pixel (0, 0): the mean of the distances of all pixels to the corner.
    corner = torch.zeros(1, n, n)
    corner[..., 0] = 1
    ys, xs = torch.meshgrid(torch.arange(float(H)), torch.arange(float(W)), indexing="ij")
    expected = (ys ** 2 + xs ** 2).sqrt().mean()
    torch.testing.assert_close(mean_attention_distance(corner, H, W)[0], expected)
    # Two heads, batch of 3: one value per head.
    both = torch.stack([torch.eye(n), corner[0]])[None].expand(3, 2, n, n)
    torch.testing.assert_close(mean_attention_distance(both, H, W), torch.stack([torch.tensor(0.), expected]))
    # Uniform attention: the mean distance between two random pixels (brute force).
    pos = [(a, b) for a in range(H) for b in range(W)]
    brute = sum(((a - c) ** 2 + (b - d) ** 2) ** 0.5 for a, b in pos for c, d in pos) / n ** 2
    assert uniform_attention_distance(H, W) == pytest.approx(brute, rel=1e-5)
    with pytest.raises(ValueError, match="64 x 64"):
        mean_attention_distance(torch.ones(1, 10, 10), H, W)


def test_overlay_colours_each_block_on_the_shared_scale_and_says_the_range():
    import matplotlib.pyplot as plt
    image = np.full((4, 4, 3), 0.5)
    amap = torch.tensor([[0.1, 0.2], [0.3, 0.4]])  # 0.4x, 0.8x, 1.2x, 1.6x uniform
    out = overlay(image, amap, vmax=3.2, alpha=1.0)  # alpha 1: the colours alone
    assert out.shape == (4, 4, 3)
    inferno = plt.get_cmap("inferno")
    np.testing.assert_allclose(out[0, 0], inferno(0.4 / 3.2)[:3])  # not stretched: 0.4x is dark, not black
    np.testing.assert_allclose(out[3, 3], inferno(1.6 / 3.2)[:3])  # and 1.6x is mid-scale, not the top
    np.testing.assert_allclose(overlay(image, amap, vmax=3.2, alpha=0.0), image)  # alpha 0: the (grey) image
    assert weight_range(amap) == "weights 0.4x..1.6x uniform"


def test_shared_scale_never_stretches_near_uniform_maps():
    flat = torch.full((2, 16, 16), 1 / 16)
    assert shared_scale(flat) == 2.0  # at least 2x uniform: a flat map stays one flat colour
    sharp = torch.eye(16)[None]
    assert shared_scale([flat, sharp]) == 16.0


def test_heatmaps_share_one_colour_scale():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = show_heatmaps(torch.stack([torch.zeros(3, 3), torch.ones(3, 3) * 2]), titles=["a", "b"])
    assert {ax.images[0].get_clim() for ax in axes.flat} == {(0.0, 2.0)}
    plt.close("all")


def test_mean_attention_distance_stays_on_the_weights_device():
    """Positions and distances are built on the weights' device: meta weights give a meta result (with
    positions made on the CPU, multiplying them with meta weights would raise)."""
    weights = torch.empty(2, 3, H * W, H * W, device="meta")
    distance = mean_attention_distance(weights, H, W)
    assert distance.device.type == "meta" and distance.shape == (3,)


def test_collect_attention_runs_in_eval_mode_and_restores_train_mode():
    seed_everything(0)
    model = AttentionCNN(widths=[8, 16], attention_at=[2]).train()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone(), int(bn.num_batches_tracked)
    x = torch.randn(4, 3, 32, 32) * 3 + 1  # far from the running statistics (mean 0, var 1)
    logits, _, _ = collect_attention(model, x)
    assert torch.equal(bn.running_mean, before[0]) and int(bn.num_batches_tracked) == before[1]
    assert model.training and all(m.training for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(logits, model.eval()(x))  # the eval-mode output


def test_pictures_take_weights_straight_from_a_forward_pass():
    """Weights that still carry gradients (or live on a GPU) are detached and moved to the CPU where the
    map is taken; `.numpy()` on them would raise."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    weights = planted_weights(heads=2)[None].repeat(2, 1, 1, 1).requires_grad_()  # B x heads x HW x HW
    images = torch.rand(2, 3, 32, 32)
    fig = plot_attention_grid(images, weights, [(1, 2), (5, 6)], (H, W), head=1)
    assert len(fig.axes) == 2 * 3 + 1  # and one colour bar
    assert fig.axes[1].get_xlabel() == "weights 0.0x..64.0x uniform"  # one-hot rows: `weight_range` under each
    assert fig.axes[-1].get_ylim() == (0.0, 64.0)  # the colour bar reaches the largest weight, 64x uniform
    fig, axes = plt.subplots(1, 3)
    plot_query(*axes, images[0], weights[0, 0], 2, 5, (H, W))
    shown = torch.as_tensor(axes[1].images[0].get_array())  # in units of x uniform
    assert torch.equal(shown.float(), planted_weights()[0, 2 * W + 5].reshape(H, W) * H * W)
    assert axes[1].images[0].get_clim() == (0, 64.0)
    assert overlay(np.ones((32, 32, 3)), weights[0, 0, :H, :W], vmax=2.0).shape == (32, 32, 3)
    assert not upsample_map(weights[0, 0, :2, :2], (4, 4)).requires_grad
    plt.close("all")


def test_network_layers_lists_each_layer_with_its_output_shape():
    import sacnn_helpers as sh
    net = sh.AttentionCNN(widths=[8, 16], attention_at=[2], image_size=16)
    layers = sh.visualisation.network_layers(net, torch.zeros(2, 3, 16, 16))
    names = [name for name, _ in layers]
    assert names[:4] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "GELU"] and names[-2:] == ["pool", "Linear"]
    assert ("SelfAttention", (16, 4, 4)) in layers and layers[-2] == ("pool", (16,)) and layers[-1] == ("Linear", (10,))
    summary = sh.visualisation.network_layers(sh.CNNWithSelfAttention(image_size=8), torch.zeros(1, 3, 8, 8))
    assert summary[-2] == ("reshape", (128 * 8 * 8,))  # the flatten in forward, same numbers reshaped
    fig = sh.draw_network(net, torch.zeros(1, 3, 16, 16), per_row=5)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "SelfAttention" in texts and "16 × 4 × 4" in texts and "input" in texts
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_the_epoch_slider_replays_the_maps_fit_kept():
    pytest.importorskip("ipywidgets")
    from sacnn_helpers.analysis import attention_snapshot
    seed_everything(0)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    x = images.float() / 255
    untrained = AttentionCNN(widths=[8, 16], attention_at=[2], qk_norm=True, gamma_init=1.0).eval()
    trained = AttentionCNN(widths=[8, 16], attention_at=[2], qk_norm=True, gamma_init=1.0).eval()
    with torch.no_grad():
        trained.features[-1].log_temperature.fill_(4.0)  # "training" made its maps sharp
    replay = dict(split="test", images=[0, 1],
                  snapshots=[attention_snapshot(untrained, x[:2], 0), attention_snapshot(trained, x[:2], 1)])
    other = AttentionCNN(widths=[8, 16], attention_at=[2]).eval()
    explorer = AttentionExplorer({"a": trained, "b": other}, x, display_images=images, replays={"a": replay})
    assert explorer.epochs == [0, 1]
    explorer.widget()
    assert explorer.sliders["epoch"].value == 1 and explorer.sliders["epoch"].max == 1
    explorer.sliders["y"].value, explorer.sliders["x"].value = 3, 4
    at_end = explorer.picture.value
    explorer.sliders["epoch"].value = 0
    assert explorer.picture.value != at_end
    assert explorer.status.value.endswith(", epoch 0 (no snapshot of this image: trained maps for b)")
    # network a shows the untrained maps (float16 kept), network b (no replay) its trained ones
    expected = collect_attention(untrained, x[:1])[1][0][0, 0, 3 * W + 4].reshape(H, W)
    torch.testing.assert_close(explorer.query_map(0, 3, 4, name="a", epoch=0), expected, atol=1e-3, rtol=1e-2)
    assert explorer.axes[0, 0].get_title().endswith("epoch 0: predicted " + str(replay["snapshots"][0]["predicted"][0]))
    assert "trained (no replay)" in explorer.axes[1, 0].get_title()
    explorer.sliders["index"].value = 2  # not kept: the trained network, and the status says so
    assert explorer.status.value.endswith(", epoch 0 (no snapshot of this image: trained maps for a, b)")
    torch.testing.assert_close(explorer.query_map(2, 3, 4, name="a", epoch=0), explorer.query_map(2, 3, 4, name="a"))
    with pytest.raises(ValueError, match="no snapshot"):
        explorer.update(0, epoch=5)
    with pytest.raises(ValueError, match="not among the networks"):
        AttentionExplorer(trained, x, replays={"c": replay})


def test_an_attention_pool_shows_as_one_map_per_image_and_head():
    from sacnn_helpers import collect_pooling
    seed_everything(0)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    pooled = AttentionCNN(widths=[8, 16, 16], attention=False, pool="attention", pool_heads=4).eval()
    with torch.no_grad():
        pooled.pool.position_table.normal_(0, 2)
    layer = AttentionCNN(widths=[8, 16], attention_at=[2]).eval()
    explorer = AttentionExplorer({"layer": layer, "pool": pooled}, images.float() / 255, display_images=images)
    explorer.update(1, 3, 4, head=0)
    expected = collect_pooling(pooled, images[1:2].float() / 255)[1][0, 0].reshape(4, 4)
    torch.testing.assert_close(explorer.query_map(1, 3, 4, name="pool"), expected)
    torch.testing.assert_close(explorer.query_map(1, 0, 0, name="pool"), expected)  # whatever the query
    assert "the pool's map" in explorer.axes[1, 1].get_title() and not explorer._artists[1]["box_map"].get_visible()
    assert explorer.heads == [4]  # the head slider offers the pool's heads
    explorer.update(1, 3, 4, head=3)
    assert "head 3" in explorer.axes[1, 1].get_title() and "head 0" in explorer.axes[0, 1].get_title()


def test_the_layer_slider_reaches_a_later_networks_pool_and_its_replay():
    pytest.importorskip("ipywidgets")
    from sacnn_helpers.analysis import attention_snapshot
    seed_everything(0)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    x = images.float() / 255
    layer_only = AttentionCNN(widths=[8, 16], attention_at=[2]).eval()
    both = AttentionCNN(widths=[8, 16, 16], attention_at=[2], pool="attention", pool_heads=2).eval()
    with torch.no_grad():
        both.pool.position_table.normal_(0, 2)
    replay = dict(split="test", images=[0, 1], snapshots=[attention_snapshot(both, x, 0)])
    explorer = AttentionExplorer({"layer": layer_only, "both": both}, x, display_images=images, replays={"both": replay})
    assert explorer.sizes == [(8, 8), (4, 4)] and explorer.heads == [1, 2]  # layer 1 exists in the second network only
    explorer.widget()
    assert explorer.sliders["layer"].max == 1
    explorer.sliders["layer"].value = 1
    explorer.sliders["epoch"].value = 0
    torch.testing.assert_close(explorer.query_map(0, 0, 0, layer=1, name="both", epoch=0),
                               replay["snapshots"][0]["pool"][0, 0].float().reshape(4, 4))
    assert "the pool's map" in explorer.axes[1, 1].get_title()
