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
