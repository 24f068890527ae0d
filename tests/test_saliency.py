"""Gradient saliency and the deletion/insertion test (sacnn_helpers.saliency), checked on small models."""
import pytest
import torch

from sacnn_helpers import AttentionCNN, SelfAttention, seed_everything
from sacnn_helpers.saliency import (attention_received, deletion_insertion, grad_cam, input_x_gradient,
                                    saliency_areas, summarise_areas)


def small_model():
    seed_everything(0)
    return AttentionCNN(widths=[8, 8], attention_at=[2], qk_norm=True, gamma_init=1.0, image_size=16).eval()


def test_maps_are_distributions_on_the_attention_grid():
    model, x = small_model(), torch.randn(5, 3, 16, 16)
    for maps in (attention_received(model, x), grad_cam(model, x), input_x_gradient(model, x, (4, 4))):
        assert maps.shape == (5, 4, 4) and (maps >= 0).all()
        torch.testing.assert_close(maps.sum(dim=(1, 2)), torch.ones(5))
    assert model.training is False


class LinearOverCells(torch.nn.Module):
    """An attention layer that adds a fixed vector to every cell (uniform attention over values that are the value
    conv's bias alone, (1, -1), gate 1), then logit_k = sum over cells of m[cell] * w[k] . (the cell's channels).
    The gradient of logit k at a cell is m[cell] * w[k]; its mean over cells is 1.25 * w[k], so Grad-CAM for class
    k is relu(w[k] . (x + (1, -1))) per cell, normalised: worked out by hand."""

    def __init__(self):
        super().__init__()
        self.attention = SelfAttention(2, gamma_init=1.0, uniform=True)
        with torch.no_grad():
            self.attention.value.weight.zero_()
            self.attention.value.bias.copy_(torch.tensor([1.0, -1.0]))
        self.register_buffer("w", torch.tensor([[1.0, -2.0], [-1.0, 3.0]]))
        self.register_buffer("m", torch.tensor([[1.0, 1.0], [1.0, 2.0]]))  # the cells count unequally

    def forward(self, x):
        return torch.einsum("bchw,kc,hw->bk", self.attention(x), self.w, self.m)


def test_grad_cam_gives_the_maps_worked_out_by_hand():
    """Image 0: features f = x + (1, -1) = ([[4, 2], [1, 3]], [[0, -1], [0, -1]]), logits (19, -22), class 0:
    relu(f0 - 2 f1) = [[4, 4], [1, 5]] / 14. Image 1: f = ([[1, 1], [1, 1]], [[1, -1], [-1, 2]]), logits (-1, 4),
    class 1: relu(-f0 + 3 f1) = [[2, 0], [0, 5]] / 7. Class 0's weights, the layer's input instead of its output,
    or each cell's own gradient instead of the mean would all give other maps."""
    x = torch.tensor([[[[3.0, 1.0], [0.0, 2.0]], [[1.0, 0.0], [1.0, 0.0]]],
                      [[[0.0, 0.0], [0.0, 0.0]], [[2.0, 0.0], [0.0, 3.0]]]])
    model = LinearOverCells()
    torch.testing.assert_close(model(x), torch.tensor([[19.0, -22.0], [-1.0, 4.0]]))
    maps, empty = grad_cam(model, x, return_empty=True)
    expected = torch.stack([torch.tensor([[4.0, 4.0], [1.0, 5.0]]) / 14, torch.tensor([[2.0, 0.0], [0.0, 5.0]]) / 7])
    torch.testing.assert_close(maps, expected)
    assert not empty.any()


class FallsWithItsFeatures(torch.nn.Module):
    """An attention layer that passes its input through (gamma = 0), then a class-0 logit of 100 minus the sum
    of the layer's output: class 0 is always predicted, and its gradient is -1 at every cell and channel, so
    Grad-CAM is relu(-(sum of the channels)) per cell, empty exactly where no cell's channel sum is negative."""

    def __init__(self):
        super().__init__()
        self.attention = SelfAttention(2)

    def forward(self, x):
        total = self.attention(x).sum(dim=(1, 2, 3))
        return torch.stack([100 - total, torch.zeros_like(total)], 1)


def test_grad_cam_reports_its_empty_maps():
    """Images 0, 2 and 3 have no cell whose channels sum below 0 (all positive, all zero, or a negative channel
    outweighed by a positive one): their maps are empty, returned as uniform. Image 1 has one cell with a
    negative sum: its map puts all the weight there. The count is 3 of 4."""
    x = torch.ones(4, 2, 4, 4)
    x[1, :, 2, 3] = -1.0  # one cell of image 1 sums to -2
    x[2] = 0.0
    x[3, 1] = -0.5  # channel 1 negative everywhere, but each cell sums to +0.5
    maps, empty = grad_cam(FallsWithItsFeatures(), x, return_empty=True)
    assert empty.tolist() == [True, False, True, True] and int(empty.sum()) == 3
    torch.testing.assert_close(maps[empty], torch.full((3, 4, 4), 1 / 16))
    expected = torch.zeros(4, 4)
    expected[2, 3] = 1.0
    torch.testing.assert_close(maps[1], expected)
    torch.testing.assert_close(grad_cam(FallsWithItsFeatures(), x), maps)  # the default returns the maps alone


def test_the_fair_table_leaves_out_the_empty_images():
    """saliency_areas gives per-image areas and Grad-CAM's empty mask; summarise_areas over the mask averages
    only the images where Grad-CAM is not empty, for every ranking alike."""
    model, x = small_model(), torch.randn(8, 3, 16, 16)
    areas, empty = saliency_areas(model, x, steps=4)
    assert empty.shape == (8,) and empty.dtype == torch.bool
    where = torch.tensor([True, False] * 4)
    table = summarise_areas(areas, where=where)
    for name, kinds in areas.items():
        assert kinds["deletion"].shape == (8,)
        assert table[name]["deletion"] == pytest.approx(float(kinds["deletion"][where].mean()))


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


def test_every_ranking_is_scored():
    areas, _ = saliency_areas(small_model(), torch.randn(8, 3, 16, 16), steps=4)
    table = summarise_areas(areas)
    assert set(table) == {"attention (weight received)", "Grad-CAM", "input x gradient", "random order"}
    assert all(set(v) == {"deletion", "insertion", "deletion_ci95", "insertion_ci95"} for v in table.values())
