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
    assert [(r["part"], r["ok"]) for r in rows] == [("recipe", True), ("recipe", True), ("airbench", False),
                                                   ("throughput", True), ("throughput", True)]
    assert "planted failure" in rows[2]["error"]
    for r in rows:
        assert {"gpu", "torch", "cuda", "device", "dry_run", "date_utc"} <= set(r) and r["dry_run"]
    assert [r["attention"] for r in rows[:2]] == [True, False] and rows[0]["dtype"] == "torch.float32"
    md = (tmp_path / "gpu.md").read_text()
    assert "DRY RUN" in md and "planted failure" in md


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
