"""Helpers the step-by-step notebooks 01-04 add: channel scores, memory table, heatmaps, check cells."""
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

import sacnn_helpers as sh  # noqa: E402


def test_channel_attention_scores_is_the_summarys_c_by_c_matrix():
    torch.manual_seed(0)
    q, k = torch.randn(2, 5, 3, 4), torch.randn(2, 5, 3, 4)
    scores = sh.channel_attention_scores(q, k)
    assert scores.shape == (2, 5, 5)
    # entry (i, j): channel map i of Q times channel map j of K, summed over the 12 pixels
    assert torch.allclose(scores[1, 2, 3], (q[1, 2] * k[1, 3]).sum(), atol=1e-5)
    # per-pixel attention scores are HW x HW instead
    pixel = sh.attention_scores(sh.to_tokens(q), sh.to_tokens(k))
    assert pixel.shape == (2, 12, 12)
    assert torch.allclose(pixel[0, 7, 2] * math.sqrt(5), (q[0, :, 1, 3] * k[0, :, 0, 2]).sum(), atol=1e-5)


def test_channel_attention_scores_rejects_mismatched_maps():
    with pytest.raises(ValueError, match="B x C x H x W"):
        sh.channel_attention_scores(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 3))


def test_flash_bytes_grow_linearly_and_explicit_quadratically():
    table = sh.attention_memory_table(sizes=(8, 16, 32), batch=2, heads=3, head_dim=16)
    assert [r["pixels"] for r in table] == [64, 256, 1024]
    for r in table:
        n = r["pixels"]
        assert r["explicit_bytes"] == 2 * 3 * n * n * 4
        assert r["flash_bytes"] == 2 * 3 * n * (16 * 4 + 4)
    # the explicit matrix really is that big: compare with an allocated weight tensor
    layer = sh.SelfAttention(6, heads=3, residual=False)
    _, w = layer(torch.randn(2, 6, 8, 8), return_attention=True)
    assert w.numel() * w.element_size() == table[0]["explicit_bytes"]
    assert sh.attention.flash_attention_bytes(1, 1, 4, 4, 8, torch.float16) == 16 * (8 * 2 + 4)


def test_show_heatmaps_grid_shape_and_bad_input():
    fig, axes = sh.show_heatmaps(torch.rand(2, 3, 4, 4), titles=["a", "b", "c"])
    assert axes.shape == (2, 3) and axes[0, 1].get_title() == "b"
    fig2, axes2 = sh.show_heatmaps(torch.rand(5, 6))
    assert axes2.shape == (1, 1)
    with pytest.raises(ValueError, match="2-D to 4-D"):
        sh.show_heatmaps(torch.rand(5))
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize("answer, expected, verdict", [
    (None, 3, "not answered yet"),
    (19, 19, "correct"),
    (18, 19, "not yet"),
    (19.0, 19, "give it as an int"),
    (True, 1, "got the bool"),
    (1, True, "answer True or False"),
    (False, True, "not yet"),
    (True, True, "correct"),
    ((1, 256, 256), torch.Size([1, 256, 256]), "correct"),
    ((1, 8, 8), (1, 256, 256), "not yet"),
    ((30, (2, 2)), (30, (2, 2)), "correct"),
    ((30, (2, 3)), (30, (2, 2)), "not yet"),
    (torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.50001]), "correct"),
    (torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.5, 0.5]), "expected shape"),
    ([0.5, 0.5], torch.tensor([0.5, 0.5]), "expected a tensor"),
    (8.0, 8.0, "correct"),
    ("abc", 8, "expected a number"),
])
def test_check_says_right_or_wrong_without_the_answer(capsys, monkeypatch, answer, expected, verdict):
    from sacnn_helpers import exercises
    monkeypatch.setitem(exercises.EXPECTED, "99.1", lambda: expected)
    sh.check("99.1", answer)
    out = capsys.readouterr().out
    assert out.startswith("exercise 99.1: ") and verdict in out
    hint = out.split(": ", 1)[1]
    if "correct" not in out and not isinstance(expected, (bool, tuple, torch.Size)):
        assert repr(expected) not in hint  # the hint never shows the expected value


def test_every_exercise_without_inputs_has_an_answer():
    import inspect
    from sacnn_helpers import exercises
    for key, fn in exercises.EXPECTED.items():
        if not inspect.signature(fn).parameters:  # the others take the check cell's inputs
            assert fn() is not None, key
    with pytest.raises(KeyError, match="no exercise '99.9'"):
        sh.check("99.9", 1)


def test_example_feature_map_and_qkv_are_deterministic_and_shaped(real_cifar10):
    image, feats = sh.example_feature_map()
    image2, feats2 = sh.example_feature_map()
    assert image.shape == (1, 3, 32, 32) and feats.shape == (1, 16, 32, 32)
    assert torch.equal(feats, feats2) and 0 <= image.min() and image.max() <= 1
    assert (feats >= 0).all()  # after the ReLU
    q, k, v = sh.example_qkv(feats, qk_channels=4)
    assert q.shape == k.shape == (1, 1024, 4) and v.shape == (1, 1024, 16)
    q2, _, _ = sh.example_qkv(feats, qk_channels=4)
    assert torch.equal(q, q2)
    q3, _, _ = sh.example_qkv(feats, qk_channels=4, seed=7)
    assert not torch.equal(q, q3)


def test_example_qkv_leaves_the_callers_random_state_alone():
    feats = torch.rand(1, 6, 4, 4)
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    q, _, _ = sh.example_qkv(feats, qk_channels=2)
    assert torch.equal(torch.rand(5), expected)  # as if example_qkv had not been called
    assert torch.equal(sh.example_qkv(feats, qk_channels=2)[0], q)  # and it still gives the same tokens
    if torch.cuda.is_available():
        state = torch.cuda.get_rng_state()
        sh.example_qkv(feats)
        assert torch.equal(torch.cuda.get_rng_state(), state)


def test_example_feature_map_leaves_the_callers_random_state_alone(real_cifar10):
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    sh.example_feature_map()
    assert torch.equal(torch.rand(5), expected)
