"""Fixtures shared by the test files (the repository's conftest.py sets the smoke size for the notebooks)."""
from pathlib import Path

import pytest


class Planted:
    """An object whose pickle, when loaded by plain `pickle.load` (or `torch.load(weights_only=False)`),
    creates the file `marker`: a harmless stand-in for a payload that could as well run a shell."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def planted() -> type[Planted]:
    """The `Planted` class: `planted(path)` is an object that creates `path` when unpickled unsafely."""
    return Planted


@pytest.fixture
def real_cifar10() -> Path:
    """The real CIFAR-10 folder; skips the test when it is not there (the CI script materialises it)."""
    from sacnn_helpers import data
    folder = data.resolve_data_dir() / data.CIFAR10_FOLDER
    if not (folder / "test_batch").is_file():
        pytest.skip(f"no CIFAR-10 in {folder}: run `python ../shared/data/cifar10/materialize.py data/` "
                    f"or download it to run the tests that need the real files")
    return folder


@pytest.fixture(scope="session")
def cli_smoke_run(tmp_path_factory) -> dict:
    """The training command's CIFAR-10 smoke run, trained once per test session in its own process (one
    thread, as torchrun gives each process): {"result": its JSON, "checkpoint": path, "stdout": text}."""
    import json
    import os
    import subprocess
    import sys
    from sacnn_helpers import data
    if not (data.resolve_data_dir() / data.CIFAR10_FOLDER / "test_batch").is_file():
        pytest.skip("CIFAR-10 is not in data/ (the CI script materialises it)")
    folder = tmp_path_factory.mktemp("cli_smoke")
    out, checkpoint = folder / "one.json", folder / "one.pt"
    cmd = [sys.executable, "-m", "sacnn_helpers.train", "--recipe", "smoke", "--device", "cpu", "--quiet",
           "--out", str(out), "--checkpoint", str(checkpoint)]
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"result": json.loads(out.read_text()), "checkpoint": checkpoint, "stdout": done.stdout}
