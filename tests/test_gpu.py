"""On a CUDA GPU only (skipped elsewhere): fused attention kernels, bf16 training, compile, determinism."""
import pytest
import torch

import sacnn_helpers as sh

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_flash_attention_takes_nchw_and_channels_last_maps(memory_format):
    """With only the flash kernel allowed, SDPA raises unless q/k/v qualify (stride 1 along each head, bf16)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    torch.manual_seed(0)
    layer = sh.SelfAttention(64, heads=1, gamma_init=1.0).cuda()
    x = torch.randn(8, 64, 32, 32, device="cuda").contiguous(memory_format=memory_format)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            fused = layer(x)
        explicit, _ = layer(x, return_attention=True)
    torch.testing.assert_close(fused.float(), explicit.float(), atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("side", [16, 7])  # 7 x 7 = 49 keys: the gpu recipe's map, not a multiple of 8
def test_relative_position_bias_runs_forward_and_backward_in_the_memory_efficient_kernel(side):
    """With the position bias passed as attn_mask, only the memory-efficient kernel (or math) may run:
    forward and backward through it agree with the explicit path, gradients reach the position table."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    torch.manual_seed(0)
    layer = sh.SelfAttention(64, heads=2, qk_norm=True, position="relative", size=(side, side),
                             gamma_init=1.0).cuda()
    with torch.no_grad():
        layer.position_table.normal_()
    x = torch.randn(4, 64, side, side, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        fused = layer(x)
    fused.float().square().mean().backward()
    grads = [t.grad.clone() for t in (x, layer.position_table, layer.query.weight)]
    for t in (x, layer.position_table, layer.query.weight):
        t.grad = None
    with torch.autocast("cuda", dtype=torch.bfloat16):
        explicit, _ = layer(x, return_attention=True)
    explicit.float().square().mean().backward()
    torch.testing.assert_close(fused.float(), explicit.float(), atol=5e-2, rtol=5e-2)
    for g, t in zip(grads, (x, layer.position_table, layer.query.weight)):
        assert torch.isfinite(g).all() and g.abs().sum() > 0
        torch.testing.assert_close(g, t.grad, atol=5e-2, rtol=1e-1)


def tiny_gpu_run(**changes):
    recipe = sh.get_recipe("smoke", **changes)
    data = sh.load_recipe_data(recipe)
    sh.seed_everything(0)
    model = sh.build_recipe_model(recipe, data["train"])
    return model, sh.fit(model, data, recipe, device="cuda", progress=False)


def test_the_smoke_recipe_trains_on_cuda_in_bf16_and_stays_there(real_cifar10):
    model, result = tiny_gpu_run()
    assert result["amp"] is True and result["device"].startswith("cuda")
    test = sh.load_recipe_data(sh.get_recipe("smoke"))["test"]  # re-scored: the same number from the model
    _, accuracy = sh.evaluate(model, test.images, test.labels, result["mean"], result["std"], flip=True, amp=True)
    assert result["test_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert next(model.parameters()).is_cuda  # the model stays on the GPU: inputs must follow it
    images = sh.load_cifar10(train=False).images[:8]
    logits = sh.predict(model, sh.normalise(images, result["mean"], result["std"]))  # CPU images in, CPU logits out
    assert logits.shape == (8, 10) and logits.device.type == "cpu"


def test_the_gpu_recipe_is_airbench94_in_float16_on_cuda(real_cifar10):
    """Two epochs of the gpu recipe (airbench94's training) on a 10,000-image subset: float16 on CUDA, and far
    above chance. The same run in float32 on the CPU reaches 47.57 % and 48.17 % (seeds 0 and 1,
    benchmarks/gpu_test_calibration.md): the threshold leaves about 8 points for float16 and the GPU's kernels."""
    recipe = sh.get_recipe("gpu", train_limit=10_000, epochs=2)
    data = sh.load_recipe_data(recipe)
    sh.seed_everything(0)
    model = sh.build_recipe_model(recipe, data["train"])
    result = sh.fit(model, data, recipe, device="cuda", progress=False)
    assert result["dtype"] == "torch.float16" and result["trainer"] == "airbench94"
    assert result["test_accuracy"] > 0.40
    assert next(model.parameters()).dtype == torch.float32  # handed back in float32 for the helpers


def test_compile_trains_without_recompiling_for_the_last_batch(real_cifar10):
    from torch._dynamo.utils import counters
    recipe = sh.get_recipe("smoke", compile=True, epochs=2, batch_size=100)  # 1,024 = 10 x 100 + 24
    data = sh.load_recipe_data(recipe)
    counters.clear()
    model = sh.build_recipe_model(recipe, data["train"])
    result = sh.fit(model, data, recipe, device="cuda", progress=False)
    assert result["compile"] and counters["stats"]["unique_graphs"] == 1


def test_deterministic_runs_repeat_bit_for_bit(real_cifar10):
    a, _ = tiny_gpu_run(deterministic=True)
    b, _ = tiny_gpu_run(deterministic=True)
    torch.use_deterministic_algorithms(False)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_augmentation_draws_on_the_gpu():
    g = torch.Generator("cuda").manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, device="cuda")
    dy, dx, mirror = sh.data.draw_augmentation(16, 2, True, g)
    assert dy.is_cuda and dx.is_cuda and mirror.is_cuda
    assert sh.augment(images, generator=g).is_cuda
