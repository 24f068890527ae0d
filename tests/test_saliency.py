"""Gradient saliency and the deletion/insertion test (sacnn_helpers.saliency), checked on small models."""
import pytest
import torch

from sacnn_helpers import AttentionCNN, seed_everything
from sacnn_helpers.saliency import (attention_received, deletion_insertion, grad_cam, input_x_gradient,
                                    saliency_table)


def small_model():
    seed_everything(0)
    return AttentionCNN(widths=[8, 8], attention_at=[2], qk_norm=True, gamma_init=1.0, image_size=16).eval()


def test_maps_are_distributions_on_the_attention_grid():
    model, x = small_model(), torch.randn(5, 3, 16, 16)
    for maps in (attention_received(model, x), grad_cam(model, x), input_x_gradient(model, x, (4, 4))):
        assert maps.shape == (5, 4, 4) and (maps >= 0).all()
        torch.testing.assert_close(maps.sum(dim=(1, 2)), torch.ones(5))
    assert model.training is False


def test_grad_cam_is_the_gradient_weighted_feature_map():
    from sacnn_helpers import attention_layers
    model, x = small_model(), torch.randn(2, 3, 16, 16)
    kept = []
    hook = attention_layers(model)[0].register_forward_hook(lambda _m, _a, out: kept.append(out))
    try:
        logits = model(x)
    finally:
        hook.remove()
    feats = kept[0]
    target = logits.argmax(1)
    grads = torch.autograd.grad(logits[torch.arange(2), target].sum(), feats)[0]
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * feats).sum(1)).detach()
    expected = cam / cam.sum(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(grad_cam(model, x), expected)


def test_deletion_and_insertion_end_where_they_must():
    """With every cell hidden the image is blank, with every cell shown it is intact: the two curves run
    between the same two points in opposite directions, so with 1 step the two areas are equal."""
    model, x = small_model(), torch.randn(6, 3, 16, 16)
    order = torch.stack([torch.randperm(16) for _ in range(6)])
    one = deletion_insertion(model, x, order, (4, 4), steps=1)
    torch.testing.assert_close(one["deletion"], one["insertion"])
    full = deletion_insertion(model, x, order, (4, 4), steps=16, batch_size=4)
    assert full["deletion"].shape == (6,) and ((0 <= full["deletion"]) & (full["deletion"] <= 1)).all()
    with pytest.raises(ValueError, match="full ranking of every cell"):
        deletion_insertion(model, x, order[:, :8], (4, 4))


def test_a_ranking_that_finds_the_evidence_beats_random_order():
    """A model that looks only at the top-left cell: hiding that cell first (a perfect ranking) drops its
    confidence at once; a reversed ranking keeps it until the end."""
    class Corner(torch.nn.Module):
        def forward(self, x):
            evidence = x[:, :, :4, :4].mean(dim=(1, 2, 3))
            return torch.stack([10 * evidence, torch.zeros_like(evidence)], 1)

    model, x = Corner(), torch.ones(3, 3, 16, 16)
    model.register_buffer("anchor", torch.zeros(1))  # so the helper can find its device
    best = torch.arange(16).repeat(3, 1)  # cell 0 (the corner) first
    worst = best.flip(1)
    good, bad = (deletion_insertion(model, x, o, (4, 4), steps=16) for o in (best, worst))
    assert (good["deletion"] < bad["deletion"]).all() and (good["insertion"] > bad["insertion"]).all()


def test_the_table_has_every_ranking():
    table = saliency_table(small_model(), torch.randn(8, 3, 16, 16), steps=4)
    assert set(table) == {"attention (weight received)", "Grad-CAM", "input x gradient", "random order"}
    assert all({"deletion", "insertion", "deletion_ci95", "insertion_ci95"} <= set(v) for v in table.values())
