"""The `gpu` recipe is airbench94's training: checked on the CPU against the PyPI package `airbench` 0.1.8
itself, with its `.cuda()`/`.half()` calls and CUDA timers patched out (airbench runs on CUDA only)."""
import pytest
import torch
import torch.nn as nn

import sacnn_helpers as sh
from sacnn_helpers import speedrun
from sacnn_helpers.models import Airbench94Net

import airbench_harness  # tests/airbench_harness.py (pytest puts tests/ on the path)

airbench = pytest.importorskip("airbench", reason="pip install airbench==0.1.8 (requirements.txt has it)")
from airbench import lib_airbench94, utils as airbench_utils  # noqa: E402


@pytest.fixture
def airbench_on_cpu(tmp_path):
    """airbench's own code on the CPU in float32 (`airbench_harness.airbench_on_cpu`), in a fresh folder."""
    with airbench_harness.airbench_on_cpu(tmp_path):
        yield tmp_path


def _tiny_cifar(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g))


def test_without_attention_the_network_is_make_net94_weight_for_weight(airbench_on_cpu):
    torch.manual_seed(0)
    theirs = lib_airbench94.make_net94()
    torch.manual_seed(0)
    ours = speedrun.prepare_net(Airbench94Net(attention=False), torch.device("cpu"))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(a, b), name
    assert [p.requires_grad for p in ours.parameters()] == [p.requires_grad for p in theirs.parameters()]
    assert [(m.eps, m.momentum) for m in ours.modules() if isinstance(m, nn.BatchNorm2d)] == \
        [(m.eps, m.momentum) for m in theirs.modules() if isinstance(m, nn.BatchNorm2d)]
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=0, atol=0)


def test_the_shared_layers_start_the_same_with_and_without_attention():
    torch.manual_seed(3)
    plain = Airbench94Net(attention=False)
    torch.manual_seed(3)
    attending = Airbench94Net(attention=True, attention_after=2, heads=4, **sh.recipes.RECOMMENDED_ATTENTION)
    shared = {k: v for k, v in attending.state_dict().items() if not k.startswith("4.")}
    renamed = {(f"{int(k.split('.')[0]) - 1}" + k[k.index("."):] if int(k.split(".")[0]) > 4 else k): v
               for k, v in shared.items()}
    assert list(renamed) == list(plain.state_dict())
    for name, value in plain.state_dict().items():
        assert torch.equal(value, renamed[name]), name
    assert isinstance(attending[4], sh.SelfAttention) and attending[4].size == (7, 7)


@pytest.mark.slow  # over 5 s: left out of the fast run (pytest -m "not slow")
def test_twenty_steps_give_airbench94s_weights_and_tta_logits(airbench_on_cpu):
    """Same seed, same images: 128 images in batches of 16 for 2.5 epochs = 20 steps (lookahead at
    steps 5, 10, 15, 20; the whitening bias frozen after epoch 1) end on airbench's weights exactly."""
    images, labels = _tiny_cifar(128)
    airbench_harness.write_airbench_data(airbench_on_cpu, sh.ImageSet(images, labels, [str(i) for i in range(10)]),
                                 sh.ImageSet(images, labels, [str(i) for i in range(10)]))
    settings = dict(epochs=2.5, whiten_bias_epochs=1)

    torch.manual_seed(0)
    loader = airbench_utils.CifarLoader("cifar10", train=True, batch_size=16, aug=dict(flip=True, translate=2),
                                        altflip=True)
    theirs = lib_airbench94.train94(train_loader=loader, verbose=False, **settings)

    torch.manual_seed(0)
    ours = speedrun.prepare_net(Airbench94Net(attention=False), torch.device("cpu"))
    our_loader = speedrun.Loader(speedrun.to_float_images(images, torch.device("cpu")), labels, 16)
    history = speedrun.train94(ours, our_loader, **settings)

    assert len(history) == 3 and our_loader.epoch == 3
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs from airbench94's after 20 steps"
    test_loader = airbench_utils.CifarLoader("cifar10", train=False, batch_size=2000)
    for level in (0, 1, 2):
        expected = airbench_utils.infer(theirs, test_loader, tta_level=level)
        got = sh.predict(ours, our_loader.normalize(speedrun.to_float_images(images, torch.device("cpu"))),
                         batch_size=2000, tta_level=level)
        assert torch.equal(got, expected.float()), f"TTA level {level}"


def test_the_optimiser_groups_add_only_the_attention_scores():
    plain = Airbench94Net(attention=False)
    groups = speedrun.make_optimizer(plain, 1024, 11.5, 0.85, 0.0153, 64.0).param_groups
    assert len(groups) == 2  # airbench's two: BatchNorm biases, everything else
    kilostep = 1024 * (1 + 1 / 0.15)
    assert groups[1]["lr"] == pytest.approx(11.5 / kilostep) and groups[0]["lr"] == pytest.approx(64 * 11.5 / kilostep)
    attending = Airbench94Net(attention=True, heads=4, **sh.recipes.RECOMMENDED_ATTENTION)
    groups = speedrun.make_optimizer(attending, 1024, 11.5, 0.85, 0.0153, 64.0, attention_lr_scale=10).param_groups
    assert len(groups) == 3 and groups[2]["weight_decay"] == 0 and groups[2]["lr"] == pytest.approx(10 * groups[1]["lr"])
    layer = attending[4]
    assert {id(p) for p in groups[2]["params"]} == {id(p) for p in (layer.query.weight, layer.query.bias, layer.key.weight,
                                                                    layer.key.bias, layer.log_temperature,
                                                                    layer.position_table)}


@pytest.mark.slow  # over 5 s: left out of the fast run (pytest -m "not slow")
def test_the_gpu_recipe_trains_through_fit_and_its_checkpoint_scores_the_same(real_cifar10, tmp_path, monkeypatch):
    """8 steps through `fit` on the CPU (that they learn what airbench94's steps learn is the twenty-step test's
    job): the recipe's settings reach airbench's trainer, and the reported accuracy is the saved network's, scored
    again with airbench's normalisation and TTA."""
    recipe = sh.get_recipe("gpu", train_limit=512, test_limit=100, epochs=1, batch_size=64, lr=9.0, warmup=0.3)
    data = sh.load_recipe_data(recipe)
    received, real_train94 = {}, speedrun.train94
    monkeypatch.setattr(speedrun, "train94", lambda model, loader, **kw: received.update(kw) or real_train94(
        model, loader, **kw))
    sh.seed_everything(0)
    result = sh.fit(sh.build_recipe_model(recipe, data["train"]), data, recipe, device="cpu", progress=False,
                    checkpoint=tmp_path / "gpu.pt")
    assert {k: received[k] for k in ("epochs", "lr", "momentum", "weight_decay", "label_smoothing", "peak",
                                     "attention_lr_scale")} == dict(
        epochs=1, lr=9.0, momentum=0.85, weight_decay=0.0153, label_smoothing=0.2, peak=0.3, attention_lr_scale=10.0)
    assert result["trainer"] == "airbench94" and result["tta_level"] == 2 and result["val_images"] == 0
    (row,) = result["history"]
    assert row["val_accuracy"] is None and set(row["gammas"]) == {"4"} and row["attention"][0]["kind"] == "layer"
    loaded, meta = sh.load_model(tmp_path / "gpu.pt")
    assert meta["result"]["test_accuracy"] == result["test_accuracy"]
    assert (meta["mean"], meta["std"]) == (list(sh.data.CIFAR10_MEAN), list(sh.data.CIFAR10_STD))  # airbench's, exact
    images = sh.normalise(speedrun.to_float_images(data["test"].images, torch.device("cpu")), speedrun.MEAN_01,
                          speedrun.STD_01)
    logits = sh.predict(loaded, images, batch_size=2000, tta_level=2)
    assert result["test_accuracy"] == (logits.argmax(1) == data["test"].labels).sum().item() / 100


def test_the_gpu_recipe_records_the_settings_it_trains_with_and_refuses_the_others():
    recipe = sh.get_recipe("gpu")
    opt = speedrun.HYP["opt"]
    assert (recipe.lr, recipe.momentum, recipe.weight_decay, recipe.label_smoothing, recipe.batch_size,
            recipe.epochs) == (opt["lr"], opt["momentum"], opt["weight_decay"], opt["label_smoothing"],
                               opt["batch_size"], opt["train_epochs"])
    g = torch.Generator().manual_seed(0)
    train = sh.ImageSet(torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8, generator=g),
                        torch.randint(0, 10, (300,), generator=g), [str(i) for i in range(10)])
    data = sh.split_data(train, train.subset(slice(0, 50)), val_size=0)
    with pytest.raises(ValueError, match="no compile switch"):
        sh.fit(Airbench94Net(), data, sh.get_recipe("gpu", compile=True), device="cpu", progress=False)
    with pytest.raises(TypeError, match="trains an Airbench94Net"):
        sh.fit(sh.AttentionCNN(), data, recipe, device="cpu", progress=False)
    with pytest.raises(ValueError, match="300 training images give no batch of 1024"):
        sh.fit(Airbench94Net(), data, recipe, device="cpu", progress=False)
    with pytest.raises(ValueError, match="fit trains whole epochs"):
        sh.fit(sh.AttentionCNN(), data, sh.get_recipe("smoke", epochs=1.5), device="cpu", progress=False)


def test_attention_learns_in_float32_inside_the_float16_network():
    """On CUDA the gpu recipe runs the network in float16 (airbench's choice). The attention layer's own
    parameters must stay float32: its temperature starts at log 10 = 2.303, where float16's spacing is about
    0.002, so the small steps it takes would round away and it could never learn. A CPU stand-in in float16."""
    torch.manual_seed(0)
    model = Airbench94Net(widths=(16, 32, 32), heads=2, **sh.recipes.RECOMMENDED_ATTENTION)
    layer = next(m for m in model.modules() if isinstance(m, sh.SelfAttention))
    start = {name: p.detach().clone().float() for name, p in layer.named_parameters()}
    model = speedrun.prepare_net(model, torch.device("cpu"), dtype=torch.float16)
    assert model[2].conv1.weight.dtype == torch.float16  # the rest of the network is float16, as on CUDA
    assert {p.dtype for p in layer.parameters()} == {torch.float32}
    images, labels = _tiny_cifar(256)
    loader = speedrun.Loader(speedrun.to_float_images(images, torch.device("cpu")).half(), labels, batch_size=32)
    history = speedrun.train94(model, loader, epochs=12 / len(loader))  # 12 steps
    assert len(history) == 2 and model(loader.normalize(loader.images[:4])).dtype == torch.float16
    moved = {name: (p.detach().float() - start[name]).abs().max().item() for name, p in layer.named_parameters()}
    assert moved["log_temperature"] > 0 and moved["position_table"] > 0 and moved["gamma"] > 0, moved
    # and by steps finer than float16 can hold: the temperature is no longer a float16 number. (At airbench's
    # widths a float16 temperature never leaves float16's nearest value to log 10, 2.3027: every step is
    # smaller than half the spacing there, while a float32 one moves by about 3e-3 in 12 steps.)
    t = layer.log_temperature.detach()
    assert (t.half().float() != t).all(), t
