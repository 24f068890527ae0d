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


@pytest.mark.slow  # over 5 s: left out of the fast run (pytest -m "not slow")
def test_the_dry_run_runs_every_part_and_a_failure_loses_nothing(real_cifar10, tmp_path, monkeypatch):
    pytest.importorskip("airbench")
    gpu = load_benchmark()

    def broken(*args, **kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(gpu, "airbench_run", broken)
    assert gpu.main(["--dry-run", "--seeds", "1", "--out", str(tmp_path)]) == 1  # one run failed
    rows = [json.loads(line) for line in (tmp_path / "gpu_runs.jsonl").read_text().splitlines()]
    assert [(r["part"], r["ok"]) for r in rows] == [("data", True), ("warm-up", True), ("warm-up", True),
                                                   ("recipe", True), ("recipe", True), ("airbench", False),
                                                   ("throughput", True), ("throughput", True)]
    assert rows[0]["train_images"] == gpu.TOY["train_limit"]
    rows = rows[1:]
    assert "planted failure" in rows[4]["error"]
    recipe = gpu.sh.get_recipe("gpu", **gpu.TOY)
    for r in rows[2:4]:  # toy-sized runs of the gpu recipe: the test accuracy counts whole test images
        correct = r["test_accuracy"] * recipe.test_limit
        assert r["epochs"] == gpu.TOY["epochs"] and correct == pytest.approx(round(correct), abs=1e-6)
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
def test_the_dry_run_calls_airbench_itself(real_cifar10, tmp_path):
    pytest.importorskip("airbench")
    gpu = load_benchmark()
    recipe = gpu.sh.get_recipe("gpu", **gpu.TOY)
    data = gpu.sh.load_recipe_data(recipe)
    row = gpu.airbench_run(data["train"], data["test"], gpu.torch.device("cpu"), 0, True, [False])
    assert row["epochs"] == gpu.TOY["epochs"] and row["train_seconds"] > 0
    correct = row["test_accuracy"] * len(data["test"])
    assert correct == pytest.approx(round(correct), abs=1e-3)
