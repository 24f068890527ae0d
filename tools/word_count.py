"""Words of prose per notebook, outside folded solutions (<details> blocks) and code: the main line's length.

    python tools/word_count.py            # every notebook
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def prose_words(path: Path) -> int:
    words = 0
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = re.sub(r"<details>.*?</details>", " ", "".join(cell["source"]), flags=re.S)
        words += len(text.split())  # whitespace-separated, as `wc -w` counts
    return words


if __name__ == "__main__":
    paths = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for p in paths:
        print(f"{prose_words(p):6,}  {p.name}")
