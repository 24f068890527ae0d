"""Every number in the prose is one we measured: each decimal number and percentage in a notebook's markdown, in
README.md and in weights/README.md must appear in that document's stored outputs or in a source named for it below
(a benchmarks/ file, a result JSON, a weights/ record), or be a definition on the short allow-list.

    python tools/check_numbers.py            # lists every number it cannot find; exit 1 if any

A source matches a number written with the same digits, or rounded from one of its own numbers (0.0999 -> 0.10),
or, for a fraction, as a percentage (0.8616 -> 86.16 %), or, for a count of a million or more, in millions
(1,398,859 -> 1.40 M). Numbers inside code (`...` and fenced blocks) are not
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
                  "weights/*.json", "notebooks/09_attention_maps.ipynb", "sacnn_helpers/speedrun.py", "sacnn_helpers/recipes.py"],
    "docs/training.md": ["benchmarks/*.md", "benchmarks/long_range_results.json", "weights/*.json",
                         "benchmarks/results/xeon-2026-11/*.json", "sacnn_helpers/speedrun.py", "sacnn_helpers/recipes.py"],
    "docs/attention_maps.md": ["benchmarks/*.md", "weights/*.json", "notebooks/09_attention_maps.ipynb",
                               "notebooks/07_the_recommended_layer.ipynb"],
    "weights/README.md": ["weights/*.json", "benchmarks/*.md", "benchmarks/results/*_seed0.json"],
    "01": [], "02": [], "03": [], "04": [], "05": ["weights/sacnn_cpu_recipe.json"],
    "06": ["benchmarks/cpu_recipe.md"],
    "07": ["benchmarks/attention_maps.md", "weights/plain_layer.json", "weights/sacnn_cpu_recipe.json"],
    "08": ["benchmarks/cpu_recipe.md", "benchmarks/results/cpu_*_seed*.json"],
    "09": ["benchmarks/attention_maps.md", "benchmarks/saliency.md", "benchmarks/cpu_recipe.md", "weights/*.json"],
    "10": ["benchmarks/long_range_results.md", "benchmarks/long_range_results.json"],
    "11": ["benchmarks/cpu_recipe.md", "weights/attention_pool.json", "sacnn_helpers/speedrun.py", "sacnn_helpers/recipes.py"],
}
# numbers that are definitions or facts of arithmetic, not measurements: (document, number) -> why
_TABLE_01_3 = "printed by the folded solution's own code (exercise 01.3)"
ALLOWED: dict[tuple[str, str], str] = {
    ("01", "3.2"): "a section number: Vaswani et al. 2017, section 3.2.1",
    ("01", "0.5"): "a definition: sh.example_qkv draws the 1x1 weights from N(0, 0.5^2)",
    **{("01", n): _TABLE_01_3 for n in ("0.98", "0.0153", "0.122", "3.54", "0.0138", "0.221", "14.37", "0.0140",
                                         "0.449")},
    ("01", "14.7"): "arithmetic on that table: 14.37 / 0.98 (exercise 01.3)",
    ("02", "1.414"): "arithmetic: the tiny example's score 2 / sqrt(2) = sqrt(2)",
    ("02", "88.7"): "a float32 limit: ln of the largest float32 (exp overflows above it)",
    ("02", "3.4"): "a float32 limit: the largest float32, 3.4e38",
    ("02", "6.93"): "arithmetic: ln 1023 (exercise 02.1's solution)",
    ("02", "4.14"): "arithmetic: ln 63 (exercise 02.1's solution)",
    ("04", "0.5"): "a definition: the projection weights are drawn from N(0, 0.5^2)",
    ("10", "65"): "a bound computed in the text: 0.5 * 3/6 + 0.5 * 24/30",
    ("10", "5.5"): "arithmetic: 11 / 2 (exercise 10.2's solution)",
    ("10", "1.96"): "a definition: the normal distribution's 97.5 % quantile (exercise 10.1)",
    ("10", "1.1"): "arithmetic: 100 * sqrt(0.25 / 2000), one standard deviation of chance (exercise 10.1)",
    ("10", "2.2"): "arithmetic: 1.96 * 1.1, the 95 % band of chance on 2,000 test images (exercise 10.1)",
    ("11", "2103.00020"): "an arXiv id (CLIP, Radford et al. 2021)",
    ("README.md", "3.11"): "the Python version the series is tested with",
    ("00", "2.11"): "the oldest PyTorch the requirements admit (a version, tested by tools/floor_tests.sh)",
    ("README.md", "2.11"): "the oldest PyTorch the requirements admit (a version, tested by tools/floor_tests.sh)",
    ("docs/training.md", "86.13"): "the Intel Xeon mean of 5 seeds: the mean test_accuracy of "
                            "benchmarks/results/xeon-2026-11/cpu_attention_seed*.json (0.86126)",
}


def tokens(text: str) -> set[str]:
    """Every number written in `text`, as written (commas dropped), rounded to fewer decimals, for a fraction in
    0..1 as a percentage with 0 to 2 decimals, and for an integer of a million or more in millions with 1 or 2
    decimals (1,398,859 -> 1.4, 1.40)."""
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
        if s.isdigit() and v >= 1e6:
            for d in (1, 2):
                found.add(f"{v / 1e6:.{d}f}")
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
    return docs + [(name, (ROOT / name).read_text(), "") for name in
                   ("README.md", "docs/training.md", "docs/attention_maps.md", "weights/README.md")]


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
