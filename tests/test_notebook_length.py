"""Every notebook's main line stays a 20-minute read: at most about 1,500 words of prose outside folded solutions
(counted as `tools/word_count.py` counts, whitespace-separated words of markdown outside <details> blocks)."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
spec = importlib.util.spec_from_file_location("word_count", ROOT / "tools" / "word_count.py")
word_count = importlib.util.module_from_spec(spec)
spec.loader.exec_module(word_count)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name[:2] for p in NOTEBOOKS])
def test_the_main_line_is_at_most_about_1500_words(path):
    assert word_count.prose_words(path) <= 1500, f"{path.name}: cut its prose (tools/word_count.py)"
