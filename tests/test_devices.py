"""Every device a learner has: nothing in float64 (Apple's MPS has none), one device per model, and the
switches that only matter on a GPU, checked on the CPU."""
import os

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import sacnn_helpers as sh
from sacnn_helpers import runtime, training
from sacnn_helpers.analysis import map_statistics, summarise, t_quantile_975


class NoFloat64(TorchDispatchMode):
    """Fails on any operation whose output is float64, naming it (MPS cannot run such an operation)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
                self.ops.append(str(func))
        return out


def test_the_float64_detector_sees_a_float64_op():
    """The check below can fail: a float64 tensor made inside the mode is caught."""
    with NoFloat64() as mode:
        torch.zeros(2, dtype=torch.float64)
        torch.ones(3) * 2
    assert mode.ops == ["aten.zeros.default"]


@pytest.mark.slow  # over 5 s: left out of the fast run (pytest -m "not slow")
def test_fit_and_every_measuring_helper_run_without_float64(real_cifar10, tmp_path):
    recipe = sh.get_recipe("smoke", epochs=2)
    data = sh.load_recipe_data(recipe)
    sh.seed_everything(0)
    model = sh.build_recipe_model(recipe, data["train"])
    images = sh.normalise(data["test"].images[:64], data["train"].mean, data["train"].std)
    labels = data["test"].labels[:64]
    with NoFloat64() as mode:
        result = sh.fit(model, data, recipe, device="cpu", progress=False)
        sh.evaluate(model, data["test"].images[:64], labels, data["train"].mean, data["train"].std, flip=True)
        sh.predict(model, images)
        _, weights, sizes = sh.collect_attention(model, images[:8])
        map_statistics(weights[0], *sizes[0])
        sh.uniform_attention_accuracy(model, images, labels)
        sh.occlusion_check(model, images[:16], k=2)
        explorer = sh.AttentionExplorer(model, images[:4], data["test"].images[:4], labels[:4])
        explorer.update(1, 2, 3)
        sh.saliency.summarise_areas(sh.saliency.saliency_areas(model, images[:8], steps=4)[0])
        sh.forward_flops(model)
        pooled = sh.AttentionCNN(widths=[8, 16, 16], pool="attention", pool_heads=2)
        sh.fit(pooled, data, recipe, device="cpu", epochs=1, progress=False, checkpoint=tmp_path / "pool.pt")
        sh.collect_pooling(pooled, images[:8])
        sh.uniform_attention_accuracy(pooled, images, labels, which="pools")
        sh.AttentionExplorer({"layer": model, "pool": pooled}, images[:4], data["test"].images[:4]).update(0, 1, 1)
        gpu = sh.get_recipe("gpu", train_limit=256, test_limit=64, batch_size=128, epochs=1)
        small = sh.load_recipe_data(gpu)
        sh.fit(sh.build_recipe_model(gpu, small["train"]), small, gpu, device="cpu", progress=False)
    assert mode.ops == [], f"float64 operations (no MPS kernel): {sorted(set(mode.ops))}"
    assert len(result["history"]) == 2 and result["history"][-1]["attention"]


def test_one_helper_finds_a_models_device():
    assert runtime.model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert runtime.model_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")
    assert runtime.model_device(nn.ReLU()) == torch.device("cpu")  # no parameters: the CPU
    buffers_only = nn.BatchNorm2d(3, affine=False).to("meta")
    assert runtime.model_device(buffers_only) == torch.device("meta")


# --- configure_backends: every call sets every switch ---------------------------------------------

def test_configure_backends_turns_deterministic_mode_off_again():
    try:
        runtime.configure_backends(torch.device("cpu"), deterministic=True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        runtime.configure_backends(torch.device("cpu"), deterministic=False)
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_the_cublas_workspace_is_set_before_cuda_starts():
    """Importing the package sets it (cuBLAS reads it once, when CUDA starts); a deterministic CUDA run
    without it says what to do instead of silently running non-deterministically."""
    assert os.environ.get(runtime.CUBLAS_ENV) in (runtime.CUBLAS_DETERMINISTIC, ":16:8")


def test_a_deterministic_cuda_run_without_the_workspace_setting_is_refused(monkeypatch):
    monkeypatch.delenv(runtime.CUBLAS_ENV, raising=False)
    with pytest.raises(RuntimeError, match="CUBLAS_WORKSPACE_CONFIG=:4096:8 before CUDA starts"):
        runtime.configure_backends(torch.device("cuda"), deterministic=True)
    assert not torch.are_deterministic_algorithms_enabled()


# --- the optimiser's groups ------------------------------------------------------------------------

def test_qk_weight_decay_decays_the_query_key_weights_and_never_the_position_table():
    model = sh.AttentionCNN(widths=[8, 16], attention_at=[2], qk_norm=True, position="relative")
    layer = sh.attention_layers(model)[0]
    for qk_decay in (True, False):
        optimizer = training.make_optimizer(model, sh.get_recipe("cpu", qk_weight_decay=qk_decay))
        decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
        assert decay[id(layer.position_table)] == 0 and decay[id(layer.log_temperature)] == 0
        assert (decay[id(layer.query.weight)] > 0) is qk_decay and (decay[id(layer.key.weight)] > 0) is qk_decay
        assert decay[id(layer.value.weight)] > 0 and decay[id(layer.gamma)] == 0


# --- 95 % intervals ---------------------------------------------------------------------------------

def test_the_t_quantile_past_ten_degrees_of_freedom():
    """Beyond 10 seeds the interval still uses t, not the normal's 1.96 (t(15) = 2.131, t(30) = 2.042)."""
    assert t_quantile_975(15) == pytest.approx(2.131, abs=1e-3)
    assert t_quantile_975(30) == pytest.approx(2.042, abs=1e-3)
    assert t_quantile_975(10) == 2.228  # 11 seeds: 10 degrees of freedom
    values = [float(v) for v in range(16)]
    mean, half = summarise(values)
    sd = torch.tensor(values).std().item()
    assert half == pytest.approx(2.131 * sd / 4, rel=1e-3)


# --- torch.compile: one batch shape ---------------------------------------------------------------

def test_the_compiled_path_does_not_recompile_for_a_short_last_batch(monkeypatch):
    """1,000 images in batches of 256 leave a last batch of 232: it runs through the uncompiled model."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    monkeypatch.setattr(training, "COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    counters.clear()
    g = torch.Generator().manual_seed(0)
    n = 1000
    train = sh.ImageSet(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g),
                        torch.randint(0, 10, (n,), generator=g), [str(i) for i in range(10)])
    data = sh.split_data(train, train.subset(slice(0, 100)), val_size=0)
    recipe = sh.get_recipe("smoke", batch_size=256, epochs=2, compile=True, train_limit=None)
    model = sh.AttentionCNN(widths=[8, 16], attention_at=[2], image_size=16)
    sh.fit(model, data, recipe, device="cpu", progress=False)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    torch._dynamo.reset()


# --- what SDPA receives: the kernels' conditions, checked on the CPU ------------------------------

@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("position", [None, "relative"])
def test_sdpa_gets_bf16_stride_one_heads_and_a_matching_bias_under_autocast(monkeypatch, memory_format, position):
    """Under bf16 autocast q, k, v reach SDPA in bf16 with stride 1 along each head; with the relative
    position bias an attn_mask comes too (which rules FlashAttention out), in the same dtype, heads x N x N
    with stride 1 along the keys (what the memory-efficient kernel takes); without it, no mask at all."""
    seen = {}
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        seen.update(q=q, k=k, v=v, mask=attn_mask)
        return real(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    layer = sh.SelfAttention(64, heads=4, qk_norm=True, position=position, size=(7, 7))
    x = torch.randn(2, 64, 7, 7).contiguous(memory_format=memory_format)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    for name in ("q", "k", "v"):
        t = seen[name]
        assert t.dtype == torch.bfloat16 and t.shape == (2, 4, 49, 16) and t.stride(-1) == 1, name
    if position is None:
        assert seen["mask"] is None
    else:
        assert seen["mask"].dtype == torch.bfloat16 and seen["mask"].shape == (4, 49, 49)
        assert seen["mask"].stride(-1) == 1


def test_channels_last_on_cuda_and_the_cpu_never_on_mps():
    fmt = sh.runtime.memory_format
    assert fmt(torch.device("cpu")) == fmt(torch.device("cuda")) == torch.channels_last
    assert fmt(torch.device("mps")) == torch.contiguous_format  # MPS convolution backward: wrong before torch 2.6
    assert fmt(torch.device("cpu"), channels_last=False) == torch.contiguous_format
