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
