"""Map statistics, the uniform-attention ablation and the occlusion check (sacnn_helpers.analysis)."""
import math

import pytest
import torch

from sacnn_helpers import (AttentionCNN, attention_layers, collect_attention, entropy_ratio, map_statistics,
                           occlusion_check, peak_ratio, predict, query_dependence, uniform_attention, uniform_attention_accuracy)
from sacnn_helpers.analysis import attention_report, patch_mask, summarise


def test_statistics_of_uniform_and_one_hot_maps():
    n = 16
    uniform = torch.full((2, 3, n, n), 1 / n)
    one_hot = torch.eye(n).expand(2, 3, n, n)  # every query looks only at itself
    torch.testing.assert_close(peak_ratio(uniform), torch.ones(3))
    torch.testing.assert_close(peak_ratio(one_hot), torch.full((3,), float(n)))
    torch.testing.assert_close(entropy_ratio(uniform), torch.ones(3))
    torch.testing.assert_close(entropy_ratio(one_hot), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(query_dependence(uniform), torch.zeros(3))
    torch.testing.assert_close(query_dependence(one_hot), torch.ones(3))  # no two queries share a key


def test_query_dependence_is_the_mean_over_pairs_of_queries():
    w = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])[None, None]
    # pairs: (0,1) tv 0.5, (0,2) 0.5, (1,2) 0 -> mean over the 6 ordered pairs = (0.5+0.5+0)*2/6
    torch.testing.assert_close(query_dependence(w), torch.tensor([1 / 3]))


def test_map_statistics_has_one_value_per_head():
    w = torch.softmax(torch.randn(4, 2, 9, 9), -1)
    stats = map_statistics(w, 3, 3)
    assert set(stats) == {"peak_ratio", "entropy_ratio", "query_dependence", "mean_distance"}
    assert all(len(v) == 2 for v in stats.values())
    with pytest.raises(ValueError, match="B x heads x N x N"):
        peak_ratio(torch.rand(9, 9))


def test_patch_mask_covers_the_patch_of_each_key():
    mask = patch_mask(torch.tensor([[0, 63], [9, 9]]), (8, 8), (32, 32))
    assert mask.shape == (2, 1, 32, 32)
    assert mask[0, 0, :4, :4].all() and mask[0, 0, 28:, 28:].all() and int(mask[0].sum()) == 32
    assert mask[1, 0, 4:8, 4:8].all() and int(mask[1].sum()) == 16  # key 9 = map pixel (1, 1)


def small_model():
    torch.manual_seed(0)
    model = AttentionCNN(widths=[8, 8], attention_at=[2], qk_norm=True, gamma_init=1.0, image_size=16).eval()
    return model


def test_uniform_attention_accuracy_and_predict_restore_the_model():
    model = small_model().train()
    images, labels = torch.randn(20, 3, 16, 16), torch.randint(0, 10, (20,))
    before = predict(model, images)
    assert model.training  # predict runs in eval mode and restores the mode
    out = uniform_attention_accuracy(model, images, labels)
    assert out["cost"] == pytest.approx(100 * (out["accuracy"] - out["uniform_accuracy"]))
    torch.testing.assert_close(predict(model, images), before)  # the layers attend normally again


def test_occlusion_check_reports_both_kinds_of_patches():
    out = occlusion_check(small_model(), torch.randn(30, 3, 16, 16), k=2, batch_size=7)
    assert out["images"] == 30 and out["k"] == 2
    for name in ("attended", "random"):  # a share of the 30 images
        assert 30 * out[f"{name}_changed"] == pytest.approx(round(30 * out[f"{name}_changed"]))
    everything = occlusion_check(small_model(), torch.randn(30, 3, 16, 16), k=16, batch_size=7)
    # hiding all 16 cells of the 4 x 4 map hides the whole image, whichever cells are "attended"
    assert everything["attended_drop"] == pytest.approx(everything["random_drop"], abs=1e-6)
    assert everything["attended_changed"] == everything["random_changed"]
    lo, hi = out["difference_ci95"]
    assert out["difference"] == pytest.approx(out["attended_drop"] - out["random_drop"])
    assert lo <= out["difference"] <= hi


def test_attention_report_logs_parameters_and_maps():
    """Query and key weights zeroed, biases equal: every query and key is the same vector, every cosine 1, every
    score the temperature 10, so the scores have no spread and every map is uniform."""
    model = AttentionCNN(widths=[8, 8], attention_at=[2], qk_norm=True, position="relative", image_size=16)
    layer = attention_layers(model)[0]
    with torch.no_grad():
        for projection in (layer.query, layer.key):
            projection.weight.zero_()
            projection.bias.fill_(1.0)
    (row,) = attention_report(model, torch.randn(5, 3, 16, 16))
    assert row["gamma"] == 0.0 and row["temperature"] == pytest.approx([10.0]) and row["position_bias_max"] == 0.0
    assert row["wq_norm"] == row["wk_norm"] == 0.0 and row["score_std"] == pytest.approx(0.0, abs=1e-5)
    assert row["peak_ratio"] == pytest.approx([1.0]) and row["entropy_ratio"] == pytest.approx([1.0])
    assert row["query_dependence"] == pytest.approx([0.0], abs=1e-6) and row["kind"] == "layer"


def test_attention_report_reads_each_layer_and_the_pool_in_one_pass():
    """A trained-looking layer (random weights, query and key of different sizes) and a pool: one row each, in
    that order, with the layer's own norms and the statistics of the maps `collect_attention` returns."""
    torch.manual_seed(0)
    model = AttentionCNN(widths=[8, 8], attention_at=[2], gamma_init=0.5, image_size=16, pool="attention",
                         pool_heads=2)
    layer = attention_layers(model)[0]
    with torch.no_grad():
        layer.key.weight.copy_(3 * layer.query.weight)  # |W_k| = 3 |W_q|: a swap shows
    x = torch.randn(5, 3, 16, 16)
    rows = attention_report(model, x)
    assert [r["kind"] for r in rows] == ["layer", "pool"]
    assert rows[0]["wq_norm"] == pytest.approx(float(layer.query.weight.detach().norm()))
    assert rows[0]["wk_norm"] == pytest.approx(3 * rows[0]["wq_norm"]) and rows[0]["gamma"] == 0.5
    _, weights, _ = collect_attention(model, x)
    assert rows[0]["peak_ratio"] == pytest.approx(peak_ratio(weights[0]).tolist())
    assert len(rows[1]["peak_ratio"]) == 2  # one per pool head


def test_summarise_gives_a_t_interval():
    assert summarise([2.0]) == (2.0, 0.0)
    mean, half = summarise([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / math.sqrt(3))


def test_trained_uniform_attention_averages_and_leaves_query_key_without_gradient():
    """The trained-uniform control: every weight 1/N in training too, so each pixel's context is the mean of all
    values, and the query/key projections get no gradient; the setting survives a checkpoint's config."""
    torch.manual_seed(0)
    model = AttentionCNN(widths=[8, 8], attention_at=[2], qk_norm=True, gamma_init=1.0, image_size=16,
                         position="relative", uniform_attention=True)
    layer = attention_layers(model)[0]
    x = torch.randn(4, 8, 4, 4)
    v = layer.value(x).flatten(2)  # B x C x N
    expected = layer.gamma * v.mean(-1, keepdim=True).expand_as(v).reshape_as(x) + x
    torch.testing.assert_close(layer(x), expected)
    model(torch.randn(3, 3, 16, 16)).sum().backward()
    assert layer.query.weight.grad is None and layer.key.weight.grad is None and layer.position_table.grad is None
    assert layer.value.weight.grad.abs().sum() > 0
    rebuilt = AttentionCNN(**model.config)
    assert attention_layers(rebuilt)[0].uniform and model.config["uniform_attention"]
    with uniform_attention(rebuilt):
        pass
    assert attention_layers(rebuilt)[0]._uniform  # leaving the ablation block keeps a trained-uniform layer uniform


def test_forward_flops_counts_the_attention_products_apart():
    from sacnn_helpers import forward_flops
    model = AttentionCNN(widths=[8, 8], attention_at=[2], image_size=16)
    flops = forward_flops(model, image_size=16)
    n, c = 4 * 4, 8  # tokens on the 4 x 4 map, channels
    assert flops["attention"] == 2 * (2 * n * n * c)  # scores Q K^T and weights @ V, 2 FLOPs a multiply-add
    assert flops["total"] > flops["attention"] > 0
