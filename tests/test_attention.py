"""SelfAttention: explicit path vs SDPA vs an independent nn.MultiheadAttention computation."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sacnn_helpers as sh

from sacnn_helpers import (AttentionMemoryError, CNNWithoutAttention, CNNWithSelfAttention, SelfAttention, relative_position_index, attention_map, attention_scores, from_tokens, pixel_index, to_tokens)
from sacnn_helpers.attention import capture_attention


def make_layer(c=8, heads=1, qk=None, residual=True, gamma=0.5, seed=0):
    torch.manual_seed(seed)
    layer = SelfAttention(c, heads=heads, qk_channels=qk, residual=residual)
    if residual:
        with torch.no_grad():
            layer.gamma.fill_(gamma)  # 0 would hide the attention term entirely
    return layer


def reference_attention(layer: SelfAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same layer computed independently with torch's nn.MultiheadAttention over pixel tokens."""
    b, c, h, w = x.shape
    mha = nn.MultiheadAttention(c, layer.heads, batch_first=True)
    # MHA projects q/k/v with its own linear layers: feed it the already-projected tokens and make its
    # input projections identities; out_proj identity too (our layer has no output projection).
    assert layer.qk_channels == c, "MHA reference needs qk_channels == in_channels"
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.eye(c).repeat(3, 1))
        mha.in_proj_bias.zero_()
        mha.out_proj.weight.copy_(torch.eye(c))
        mha.out_proj.bias.zero_()
    q, k, v = (to_tokens(conv(x)) for conv in (layer.query, layer.key, layer.value))
    context, weights = mha(q, k, v, need_weights=True, average_attn_weights=False)
    context = from_tokens(context, h, w)
    out = context if layer.gamma is None else layer.gamma * context + x
    return out, weights


@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("hw", [(4, 4), (3, 5), (1, 1)])
def test_explicit_sdpa_and_multihead_attention_agree(heads, hw):
    layer = make_layer(c=8, heads=heads)
    x = torch.randn(2, 8, *hw)
    with torch.no_grad():
        fast = layer(x)
        explicit, weights = layer(x, return_attention=True)
        ref_out, ref_weights = reference_attention(layer, x)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explicit, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-5, rtol=1e-5)
    n = hw[0] * hw[1]
    assert weights.shape == (2, heads, n, n)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, heads, n))


def test_scores_are_scaled_by_sqrt_dk_per_head():
    layer = make_layer(c=8, heads=2, qk=4, residual=False)
    x = torch.randn(1, 8, 2, 3)
    with torch.no_grad():
        _, weights = layer(x, return_attention=True)
        q = layer.query(x).reshape(1, 2, 2, 6).transpose(-2, -1)  # d_k = 4 // 2 = 2
        k = layer.key(x).reshape(1, 2, 2, 6).transpose(-2, -1)
        by_hand = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(2), dim=-1)
    torch.testing.assert_close(weights, by_hand)


def test_half_precision_scores_do_not_overflow():
    """q.k = 256 * 30 * 30 = 230,400 is beyond float16's 65,504; scaled by 1/sqrt(256) first it is 14,400."""
    q = torch.full((1, 4, 256), 30.0, dtype=torch.float16)
    scores = attention_scores(q, q)
    assert scores.dtype == torch.float16 and torch.isfinite(scores).all()
    assert torch.equal(scores, torch.full((1, 4, 4), 14400.0, dtype=torch.float16))


def test_attention_is_over_pixels_not_channels():
    """The written summary's code gives a C x C matrix; ours is HW x HW (here 6 pixels vs 8 channels)."""
    layer = make_layer(c=8)
    _, weights = layer(torch.randn(1, 8, 2, 3), return_attention=True)
    assert weights.shape[-2:] == (6, 6)


def test_row_is_query_pixel_y_times_w_plus_x():
    """Make pixel (y=1, x=2) of a 3x4 map attend only to itself: that must be row 1*4+2 = 6, not 1*2."""
    h, w = 3, 4
    layer = make_layer(c=4, residual=False)
    with torch.no_grad():
        for conv in (layer.query, layer.key):
            conv.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
            conv.bias.zero_()
    x = torch.zeros(1, 4, h, w)
    x[0, :, 1, 2] = 30.0  # a strong feature at one pixel: its own score dominates its row
    _, weights = layer(x, return_attention=True)
    assert pixel_index(1, 2, w) == 6
    row = attention_map(weights[0, 0], 1, 2, h, w)
    assert row.shape == (h, w)
    assert row[1, 2] > 0.99
    assert weights[0, 0, 1 * 2].max() < 0.5  # row x*y = 2 is pixel (0, 2): a blank pixel, uniform weights


def test_to_tokens_orders_pixels_row_major():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    tokens = to_tokens(x)
    assert tokens.shape == (1, 12, 1)
    assert tokens[0, pixel_index(2, 1, 4), 0] == x[0, 0, 2, 1]
    torch.testing.assert_close(from_tokens(tokens, 3, 4), x)


def test_gamma_zero_starts_as_identity_and_residual_off_replaces():
    x = torch.randn(2, 8, 4, 4)
    fresh = SelfAttention(8)
    torch.testing.assert_close(fresh(x), x)
    replace = make_layer(c=8, residual=False)
    assert replace.gamma is None
    with torch.no_grad():
        _, weights = replace(x, return_attention=True)
        context = from_tokens(weights[:, 0] @ to_tokens(replace.value(x)), 4, 4)
    torch.testing.assert_close(replace(x), context, atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter():
    layer = make_layer(c=8, heads=2, qk=4)
    for return_attention in (False, True):
        layer.zero_grad()
        out = layer(torch.randn(2, 8, 3, 3), return_attention=return_attention)
        out = out[0] if return_attention else out
        out.square().sum().backward()
        for name, p in layer.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_batch_of_one_and_non_square():
    layer = make_layer(c=8)
    out, weights = layer(torch.randn(1, 8, 2, 7), return_attention=True)
    assert out.shape == (1, 8, 2, 7) and weights.shape == (1, 1, 14, 14)


def test_bfloat16_autocast_matches_float32():
    layer = make_layer(c=8)
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        ref = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = layer(x)
            explicit, weights = layer(x, return_attention=True)
    torch.testing.assert_close(weights.float().sum(-1), torch.ones(2, 1, 16), atol=2e-2, rtol=0)
    torch.testing.assert_close(fast.float(), ref, atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(explicit.float(), ref, atol=5e-2, rtol=5e-2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_half_precision_matches():
    layer = make_layer(c=64, heads=1).cuda()
    x = torch.randn(2, 64, 8, 8, device="cuda")
    with torch.no_grad():
        ref = layer(x)
        with torch.autocast("cuda", dtype=torch.float16):
            fast = layer(x)
            explicit, _ = layer(x, return_attention=True)
    torch.testing.assert_close(fast.float(), ref, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(explicit.float(), ref, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("bad, expected", [
    (torch.randn(8, 4, 4), "4-D"),
    (torch.randn(2, 3, 4, 4), "expects 8 channels"),
    (torch.randn(2, 4, 4, 8), "expects 8 channels"),
])
def test_bad_shapes_say_what_was_expected(bad, expected):
    with pytest.raises(ValueError, match=expected) as err:
        SelfAttention(8)(bad)
    assert str(tuple(bad.shape)) in str(err.value)


@pytest.mark.parametrize("side", [12, 8])
def test_summary_cnn_refuses_images_of_another_size(side):
    model = CNNWithSelfAttention(image_size=side)
    with pytest.raises(ValueError, match=rf"built for {side}x{side} images.*got 32x32.*image_size=32"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"got 32x16 .*square images only"):
        model(torch.randn(1, 3, 32, 16))
    assert model(torch.randn(2, 3, side, side)).shape == (2, 10)


def test_heads_must_divide_channels():
    with pytest.raises(ValueError, match="divisible by heads"):
        SelfAttention(10, heads=4)
    with pytest.raises(ValueError, match=r"heads must be >= 1 and divide in_channels=8.*got heads=0"):
        SelfAttention(8, heads=0)


def test_to_tokens_wants_a_batch_of_maps():
    with pytest.raises(ValueError, match=r"B x C x H x W feature map, got 3-D with shape \(8, 4, 4\).*unsqueeze"):
        to_tokens(torch.zeros(8, 4, 4))


def test_huge_explicit_matrix_is_refused_with_an_estimate_before_allocating():
    layer = SelfAttention(2)
    x = torch.empty(64, 2, 128, 128)  # the matrix would be 64 * 16384^2 * 4 bytes = 64 GiB
    with pytest.raises(AttentionMemoryError, match=r"64\.0 GiB.*downsample") as err:
        layer(x, return_attention=True)
    assert "return_attention" in str(err.value)


def test_summary_cnn_shapes_and_capture():
    model = CNNWithSelfAttention()
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)
    with capture_attention(model) as maps:
        logits = model(x)
    assert len(maps) == 1 and maps[0].shape == (2, 1, 1024, 1024)
    torch.testing.assert_close(logits, model(x))  # capturing does not change the output
    assert model.attention._captured is None  # released after the block
    plain = CNNWithoutAttention()
    assert plain(x).shape == (2, 10)
    n_attention = sum(p.numel() for p in model.attention.parameters())
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters()) == n_attention
    assert n_attention == 3 * (64 * 64 + 64) + 1


# --- fused attention for every input layout ----------------------------------------------------------

def test_sdpa_gets_stride_one_heads_for_nchw_and_channels_last(monkeypatch):
    """The fused SDPA kernels need stride 1 along each head's channels; a plain NCHW map used to give H*W."""
    import torch.nn.functional as F
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        seen.append(tuple(t.stride(-1) for t in (q, k, v)))
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    layer = make_layer(c=8, heads=2)
    x = torch.randn(2, 8, 4, 5)
    with torch.no_grad():
        nchw = layer(x)
        channels_last = layer(x.contiguous(memory_format=torch.channels_last))
        explicit, _ = layer(x, return_attention=True)
    assert seen == [(1, 1, 1), (1, 1, 1)]
    torch.testing.assert_close(nchw, channels_last)
    torch.testing.assert_close(nchw, explicit, atol=1e-5, rtol=1e-5)


# --- cosine attention, relative position, gamma's start, uniform attention ---------------------------------

def test_relative_position_index_matches_a_naive_loop():
    h, w = 3, 4
    index = relative_position_index(h, w)
    assert index.shape == (12, 12)
    for qy in range(h):
        for qx in range(w):
            for ky in range(h):
                for kx in range(w):
                    dy, dx = ky - qy, kx - qx
                    assert index[qy * w + qx, ky * w + kx] == (dy + h - 1) * (2 * w - 1) + (dx + w - 1)
    assert int(index.max()) == (2 * h - 1) * (2 * w - 1) - 1 and len(index.unique()) == (2 * h - 1) * (2 * w - 1)


@pytest.mark.parametrize("qk_norm", [False, True])
@pytest.mark.parametrize("position", [None, "relative"])
def test_every_option_gives_the_same_output_on_both_paths(qk_norm, position):
    torch.manual_seed(0)
    layer = SelfAttention(8, heads=2, qk_norm=qk_norm, position=position, size=(3, 4), gamma_init=0.7)
    if position:
        with torch.no_grad():
            layer.position_table.normal_()
    x = torch.randn(2, 8, 3, 4)
    with torch.no_grad():
        fast = layer(x)
        explicit, weights = layer(x, return_attention=True)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 12))
    # the returned weights are the true ones: scores by hand, bias included
    q = layer.query(x).reshape(2, 2, 4, 12).transpose(-2, -1)
    k = layer.key(x).reshape(2, 2, 4, 12).transpose(-2, -1)
    if qk_norm:
        t = layer.log_temperature.exp().view(1, 2, 1, 1)
        scores = t * torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(k, dim=-1).transpose(-2, -1)
    else:
        scores = q @ k.transpose(-2, -1) / math.sqrt(4)
    if position:
        scores = scores + layer.position_table[:, relative_position_index(3, 4)]
    torch.testing.assert_close(weights, torch.softmax(scores, -1).detach(), atol=1e-5, rtol=1e-5)


def test_relative_bias_depends_only_on_the_offset():
    layer = SelfAttention(4, position="relative", size=(4, 4), residual=False)
    with torch.no_grad():
        for conv in (layer.query, layer.key):  # zero scores: only the position bias is left
            conv.weight.zero_()
            conv.bias.zero_()
        layer.position_table.normal_(generator=torch.Generator().manual_seed(0))
        _, weights = layer(torch.randn(1, 4, 4, 4), return_attention=True)
    bias = layer.position_bias()[0]
    # query (1, 1) looking at (2, 3) and query (0, 0) looking at (1, 2): the same offset (1, 2)
    assert bias[1 * 4 + 1, 2 * 4 + 3] == bias[0, 1 * 4 + 2]
    torch.testing.assert_close(weights[0, 0], torch.softmax(bias, -1))


def test_relative_position_needs_the_map_size():
    with pytest.raises(ValueError, match="needs size"):
        SelfAttention(4, position="relative")
    layer = SelfAttention(4, position="relative", size=(4, 4))
    with pytest.raises(ValueError, match="built for 4x4 maps, got 8x8"):
        layer(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match="position must be None or 'relative'"):
        SelfAttention(4, position="absolute")


def test_gamma_starts_where_asked():
    assert SelfAttention(4).gamma.item() == 0.0 and SelfAttention(4, gamma_init=0.5).gamma.item() == 0.5


def test_uniform_attention_averages_exactly_and_restores_the_layer():
    from sacnn_helpers import uniform_attention
    torch.manual_seed(0)
    layer = SelfAttention(8, heads=2, qk_norm=True, position="relative", size=(3, 3), gamma_init=0.5)
    x = torch.randn(2, 8, 3, 3)
    with torch.no_grad():
        before = layer(x)
        with uniform_attention(layer):
            fast = layer(x)
            explicit, weights = layer(x, return_attention=True)
        after = layer(x)
        v = layer.value(x).flatten(2).mean(-1)[..., None, None]  # each channel's mean over the pixels
    assert torch.equal(weights, torch.full((2, 2, 9, 9), 1 / 9))
    torch.testing.assert_close(fast, 0.5 * v.expand_as(x) + x)
    torch.testing.assert_close(explicit, fast)
    torch.testing.assert_close(after, before)
    assert not torch.allclose(fast, before)


# --- attention pooling --------------------------------------------------------------------------

def test_attention_pool_is_sdpa_with_one_mean_pixel_query_per_head():
    from sacnn_helpers.attention import AttentionPool
    torch.manual_seed(0)
    pool = AttentionPool(16, heads=4, size=(3, 5))
    with torch.no_grad():
        pool.position_table.normal_()
    x = torch.randn(2, 16, 3, 5)
    pooled, weights = pool(x, return_attention=True)
    assert pooled.shape == (2, 16) and weights.shape == (2, 4, 15)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4))
    # the reference: torch's SDPA, the query from the mean pixel, the bias as its mask, each head's own channels
    q = pool.query(x.mean(dim=(2, 3))).view(2, 4, 1, 4)
    k = pool.key(x).reshape(2, 4, 4, 15).transpose(-2, -1)
    v = x.reshape(2, 4, 4, 15).transpose(-2, -1)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=pool.position_table[:, None, :])
    torch.testing.assert_close(pooled, expected.reshape(2, 16), atol=1e-5, rtol=1e-5)


def test_uniform_attention_pool_is_exactly_average_pooling():
    torch.manual_seed(0)
    net = sh.AttentionCNN(pool="attention", **sh.recipes.RECOMMENDED_ATTENTION).eval()
    avg = sh.AttentionCNN(pool="avg", **sh.recipes.RECOMMENDED_ATTENTION).eval()
    avg.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("pool.")})
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        for p in net.pool.parameters():  # sharp maps, so that "uniform" is a real change
            p.normal_()
        trained = net(x)
        with sh.uniform_attention(net, "pools"):
            assert torch.equal(net(x), avg(x))
        with sh.uniform_attention(net, "layers"):  # the layer alone: the pool still attends
            assert not torch.allclose(net(x), avg(x))
        assert torch.equal(net(x), trained)  # flags restored
        # and the weighted path itself: no query, key or position term gives every cell 1/16, i.e. the mean
        for p in net.pool.parameters():
            p.zero_()
        torch.testing.assert_close(net(x), avg(x), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="which must be"):
        with sh.uniform_attention(net, "heads"):
            pass


def test_the_pools_parameters_shape_scores_and_a_seed_builds_the_rest_alike():
    from sacnn_helpers.attention import score_parameters
    torch.manual_seed(0)
    net = sh.AttentionCNN(pool="attention")
    torch.manual_seed(0)
    plain = sh.AttentionCNN()
    qk, tables = score_parameters(net)
    assert net.pool.position_table in tables and net.pool.query.weight in qk and net.pool.key.weight in qk
    for name, value in plain.state_dict().items():
        assert torch.equal(value, net.state_dict()[name]), name
    with pytest.raises(ValueError, match="pool must be"):
        sh.AttentionCNN(pool="mean")
    with pytest.raises(ValueError, match="only used with pool='attention'"):
        sh.AttentionCNN(pool_heads=4)
    uniform = sh.AttentionCNN(pool="attention", uniform_attention=True)  # the trained-uniform control averages
    assert uniform.pool.uniform and not any(p.requires_grad for p in uniform.pool.parameters())
    with pytest.raises(ValueError, match="expects B x 128 x 4 x 4"):
        net.pool(torch.randn(1, 128, 8, 8))


def test_collect_pooling_and_the_pools_report():
    from sacnn_helpers.attention import collect_pooling
    torch.manual_seed(0)
    net = sh.AttentionCNN(attention=False, pool="attention", pool_heads=4)
    net.train()
    x = torch.randn(5, 3, 32, 32)
    logits, weights, size = collect_pooling(net, x)
    assert logits.shape == (5, 10) and weights.shape == (5, 4, 16) and size == (4, 4) and net.training
    (row,) = sh.attention_report(net, x)
    assert row["kind"] == "pool" and len(row["peak_ratio"]) == 4
    expected = (weights.amax(-1) * 16).median(dim=0).values
    torch.testing.assert_close(torch.tensor(row["peak_ratio"]), expected)
    with pytest.raises(ValueError, match="no AttentionPool"):
        collect_pooling(sh.AttentionCNN(), x)
    with pytest.raises(ValueError, match="has no AttentionPool to make uniform"):
        sh.uniform_attention_accuracy(sh.AttentionCNN(), x, torch.zeros(5, dtype=torch.long), which="pools")
