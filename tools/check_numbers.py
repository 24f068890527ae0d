"""Every number in the prose is one we measured: each decimal number and percentage in a notebook's markdown, in
README.md and in weights/README.md must appear in that document's stored outputs or in a source named for it below
(a benchmarks/ file, a result JSON, a weights/ record), or be a definition on the short allow-list.

    python tools/check_numbers.py            # lists every number it cannot find; exit 1 if any

A source matches a number written with the same digits, or rounded from one of its own numbers (0.0999 -> 0.10),
or, for a fraction, as a percentage (0.8616 -> 86.16 %). Numbers inside code (`...` and fenced blocks) are not
read: code is checked by running it. tests/test_numbers.py runs this in CI and shows that a planted wrong number
fails.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# decimals (86.16, 2,112.5) and percentages (94 %, 86.2%), with an optional sign
NUMBER = re.compile(r"(?<![\w.])[-+−±]?(\d+(?:,\d{3})*\.\d+|\d+(?:\.\d+)?(?=\s?%))")
CODE = re.compile(r"```.*?```|`[^`]*`", re.S)

# the sources each document may quote besides its own outputs (paths relative to the repository; globs allowed)
SOURCES: dict[str, list[str]] = {
    "README.md": ["benchmarks/*.md", "benchmarks/long_range_results.json", "benchmarks/results/xeon-2026-11/*.json",
                  "weights/*.json", "notebooks/09_attention_maps.ipynb", "sacnn_helpers/speedrun.py"],
    "weights/README.md": ["weights/*.json", "benchmarks/*.md", "benchmarks/results/*_seed0.json"],
    "01": [], "02": [], "03": [], "04": [], "05": ["weights/sacnn_cpu_recipe.json"],
    "06": ["benchmarks/cpu_recipe.md"],
    "07": ["benchmarks/attention_maps.md", "weights/plain_layer.json", "weights/sacnn_cpu_recipe.json"],
    "08": ["benchmarks/cpu_recipe.md", "benchmarks/results/cpu_*_seed*.json"],
    "09": ["benchmarks/attention_maps.md", "benchmarks/saliency.md", "benchmarks/cpu_recipe.md", "weights/*.json"],
    "10": ["benchmarks/long_range_results.md", "benchmarks/long_range_results.json"],
    "11": ["benchmarks/cpu_recipe.md", "weights/attention_pool.json", "sacnn_helpers/speedrun.py"],
}
# numbers that are definitions or facts of arithmetic, not measurements: (document, number) -> why
ALLOWED: dict[tuple[str, str], str] = {}


def tokens(text: str) -> set[str]:
    """Every number written in `text`, as written (commas dropped), rounded to fewer decimals, and, for a
    fraction in 0..1, as a percentage with 0 to 2 decimals."""
    found: set[str] = set()
    for raw in re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?", text):
        s = raw.replace(",", "")
        found.add(s)
        try:
            v = float(s)
        except ValueError:
            continue
        decimals = len(s.split(".")[1]) if "." in s and "e" not in s.lower() else 6
        for d in range(0, decimals):
            found.add(f"{v:.{d}f}")
        if 0 < v <= 1:
            for d in range(0, 3):
                found.add(f"{100 * v:.{d}f}")
    return found


def notebook_text(path: Path) -> tuple[str, str]:
    """(markdown, outputs) of a stored notebook."""
    nb = json.loads(path.read_text())
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    outputs = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if "text" in out:
                outputs.append("".join(out["text"]))
            outputs += ["".join(v) for k, v in out.get("data", {}).items() if k.startswith("text/")]
    return markdown, "\n".join(outputs)


def source_text(patterns: list[str]) -> str:
    texts = []
    for pattern in patterns:
        for path in sorted(ROOT.glob(pattern)):
            texts.append(notebook_text(path)[1] if path.suffix == ".ipynb" else path.read_text())
    return "\n".join(texts)


def prose_numbers(markdown: str) -> list[str]:
    return [m.group(1) for m in NUMBER.finditer(CODE.sub(" ", markdown))]


def check_document(name: str, markdown: str, own_outputs: str = "") -> list[str]:
    """The numbers of `markdown` found nowhere it may quote from."""
    known = tokens(own_outputs) | tokens(source_text(SOURCES.get(name, [])))
    return [n for n in prose_numbers(markdown)
            if n.replace(",", "") not in known and (name, n) not in ALLOWED]


def documents() -> list[tuple[str, str, str]]:
    """(name, markdown, outputs) of every notebook, README.md and weights/README.md."""
    docs = [(p.name[:2], *notebook_text(p)) for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    return docs + [(name, (ROOT / name).read_text(), "") for name in ("README.md", "weights/README.md")]


def main() -> int:
    missing = 0
    for name, markdown, outputs in documents():
        unknown = check_document(name, markdown, outputs)
        missing += len(unknown)
        if unknown:
            print(f"{name}: {len(unknown)} of {len(prose_numbers(markdown))} numbers found nowhere: {', '.join(unknown)}")
    print(f"check_numbers: {missing} numbers found nowhere")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
