"""benchmarks/gpu.py rehearses on the CPU (--dry-run) and saves every run the moment it ends."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tta2_accuracy(gpu, model, test) -> float:
    """`model`'s accuracy on `test` with airbench's normalisation and TTA level 2, as airbench scores it."""
    speedrun = gpu.sh.speedrun
    images = gpu.sh.normalise(speedrun.to_float_images(test.images, gpu.torch.device("cpu")), speedrun.MEAN_01,
                              speedrun.STD_01)
    logits = gpu.sh.predict(model, images, batch_size=2000, tta_level=2)
    return (logits.argmax(1) == test.labels).float().mean().item()


@pytest.mark.slow  # over 5 s: left out of the fast run (pytest -m "not slow")
def test_the_dry_run_runs_every_part_and_a_failure_loses_nothing(real_cifar10, tmp_path, monkeypatch):
    pytest.importorskip("airbench")
    gpu = load_benchmark()

    def broken(*args, **kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(gpu, "airbench_run", broken)
    fitted, real_fit = [], gpu.sh.fit

    def fit_and_keep(model, *args, **kwargs):
        fitted.append((model, real_fit(model, *args, **kwargs)))
        return fitted[-1][1]

    monkeypatch.setattr(gpu.sh, "fit", fit_and_keep)
    assert gpu.main(["--dry-run", "--seeds", "1", "--out", str(tmp_path)]) == 1  # one run failed
    rows = [json.loads(line) for line in (tmp_path / "gpu_runs.jsonl").read_text().splitlines()]
    assert [(r["part"], r["ok"]) for r in rows] == [("data", True), ("warm-up", True), ("warm-up", True),
                                                   ("recipe", True), ("recipe", True), ("airbench", False),
                                                   ("throughput", True), ("throughput", True)]
    assert rows[0]["train_images"] == gpu.TOY["train_limit"]
    rows = rows[1:]
    assert "planted failure" in rows[4]["error"]
    recipe = gpu.sh.get_recipe("gpu", **gpu.TOY)
    test = gpu.sh.load_recipe_data(recipe)["test"]
    for r, (model, result) in zip(rows[2:4], fitted[2:4]):  # the toy runs' accuracy: their model, scored again
        assert r["epochs"] == gpu.TOY["epochs"] and r["test_accuracy"] == result["test_accuracy"]
        assert r["test_accuracy"] == pytest.approx(tta2_accuracy(gpu, model, test), abs=1e-6)
    assert rows[0]["epochs"] == recipe.batch_size / recipe.train_limit  # the warm-up rehearses one step
    assert [r["parameters"] for r in rows[2:4]] == [r["parameters"] for r in rows[:2]]
    assert rows[2]["parameters"] > rows[3]["parameters"]  # with attention, then without
    for r in rows:
        assert {"gpu", "torch", "cuda", "device", "dry_run", "date_utc"} <= set(r) and r["dry_run"]
    assert [r["attention"] for r in rows[2:4]] == [True, False] and rows[2]["dtype"] == "torch.float32"
    md = (tmp_path / "gpu.md").read_text()
    assert "DRY RUN" in md and "planted failure" in md


def test_a_missing_data_set_is_recorded_like_any_failed_run(tmp_path, monkeypatch):
    gpu = load_benchmark()
    monkeypatch.setenv("SACNN_DATA_DIR", str(tmp_path / "nowhere"))
    def no_network(root):
        raise OSError("no network")

    monkeypatch.setattr(gpu.sh.data, "_download", no_network)  # the GPU machine reaches nothing
    assert gpu.main(["--dry-run", "--seeds", "1", "--out", str(tmp_path / "out")]) == 1
    rows = [json.loads(line) for line in (tmp_path / "out" / "gpu_runs.jsonl").read_text().splitlines()]
    assert [(r["part"], r["ok"]) for r in rows] == [("data", False)]
    assert "CIFAR" in rows[0]["error"] or "no network" in rows[0]["error"]


@pytest.mark.slow  # over 5 s: left out of the fast run (pytest -m "not slow")
def test_the_dry_run_calls_airbench_itself(real_cifar10, tmp_path, monkeypatch):
    """The row's accuracy is airbench's model, scored again here with TTA level 2: a row that scored another
    model, or no TTA, would differ."""
    airbench = pytest.importorskip("airbench")
    gpu = load_benchmark()
    trained, real_train94 = [], airbench.train94
    monkeypatch.setattr(airbench, "train94", lambda *a, **k: trained.append(real_train94(*a, **k)) or trained[-1])
    recipe = gpu.sh.get_recipe("gpu", **gpu.TOY)
    data = gpu.sh.load_recipe_data(recipe)
    cpu = gpu.torch.device("cpu")
    row = gpu.airbench_run(data["train"], data["test"], cpu, 0, True, [False])
    assert len(trained) == 2 and row["epochs"] == gpu.TOY["epochs"]  # the warm-up, then the timed run
    assert row["test_accuracy"] == tta2_accuracy(gpu, trained[1], data["test"])
