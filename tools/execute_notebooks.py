"""Execute notebooks top to bottom at full size and store their outputs, ready to commit.

    python tools/execute_notebooks.py notebooks/03_context_vectors.ipynb [more.ipynb ...]
    python tools/execute_notebooks.py --all

Strict nbval compares the stored outputs, so after changing a notebook run it here, in one clean kernel, with
SACNN_SMOKE unset (a learner's full-size run; the test command runs the small version). Then the script tidies
what a notebook viewer cannot use, without touching what the cells printed or drew:
- the widget state nbclient stores in the notebook's metadata (JupyterLab does not save it either);
- the frozen text of tqdm progress-bar widgets ("0%| | 0/141"): without a kernel a viewer shows only that
  text, while the lines the training loop prints after each epoch stay;
- stream outputs split into pieces by timing are joined (nbval joins them too).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
TQDM_TEXT = re.compile(r"\d+%\|")  # "epoch 1/3:   0%|          | 0/141 [00:00<?, ?it/s]"


def is_progress_bar(output: dict) -> bool:
    data = output.get("data", {})
    return ("application/vnd.jupyter.widget-view+json" in data
            and bool(TQDM_TEXT.search("".join(data.get("text/plain", "")))))


def tidy(nb: nbformat.NotebookNode) -> None:
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            if out.output_type == "display_data" and is_progress_bar(out):
                continue
            if (out.output_type == "stream" and outputs and outputs[-1].output_type == "stream"
                    and outputs[-1].name == out.name):
                outputs[-1].text += out.text
                continue
            outputs.append(out)
        cell.outputs = outputs


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=None, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    tidy(nb)
    nbformat.write(nb, path)
    print(f"{path.relative_to(ROOT)}: executed in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--all", action="store_true", help="every notebook in notebooks/, in order")
    args = parser.parse_args()
    paths = sorted((ROOT / "notebooks").glob("*.ipynb")) if args.all else [p.resolve() for p in args.notebooks]
    if not paths:
        parser.error("name the notebooks to execute, or pass --all")
    os.environ.pop("SACNN_SMOKE", None)  # the kernel inherits this environment: full size
    for path in paths:
        execute(path)


if __name__ == "__main__":
    main()
