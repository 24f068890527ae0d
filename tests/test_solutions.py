"""Every folded solution agrees with its check cell, so a solution cannot go stale.

For each check cell `sh.check("NN.k", <answer expression>)` of a notebook, the folded solution that follows it
must assign the check's variables (in a ```python block or an inline `answer_k = ...`); where those assignments
are plain numbers, tuples or a little arithmetic, the answer expression is evaluated with them and scored by the
same comparison `sh.check` uses, against the same expected value (`sacnn_helpers.exercises`).
"""
import ast
import json
import re
from pathlib import Path

import pytest

from sacnn_helpers import exercises

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LITERAL_NODES = (ast.Expression, ast.Constant, ast.Tuple, ast.List, ast.BinOp, ast.UnaryOp, ast.operator,
                 ast.unaryop, ast.Load)


def code_in(markdown: str) -> list[ast.stmt]:
    """Python statements of a solution: its ```python blocks and its inline code spans that parse."""
    blocks = re.findall(r"```python\n(.*?)```", markdown, re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", markdown, flags=re.S))
    statements = []
    for text in blocks + spans:
        try:
            statements += ast.parse(text).body
        except SyntaxError:
            pass
    return statements


def exercises_of(path: Path) -> list[dict]:
    """Each check cell of a notebook with the solution cell that follows it."""
    cells = json.loads(path.read_text())["cells"]
    found = []
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or "sh.check(" not in source:
            continue
        call = next(node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
                    and getattr(node.func, "attr", None) == "check")
        key = call.args[0].value
        atol = next((k.value.value for k in call.keywords if k.arg == "atol"), None)
        variables = [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
                     and isinstance(node.value, ast.Constant) and node.value.value is None
                     for t in node.targets if isinstance(t, ast.Name)]  # the blanks the learner fills
        solution = next("".join(c["source"]) for c in cells[i + 1:] if "<summary>Solution" in "".join(c["source"]))
        block = re.search(r"<summary>Solution[^<]*</summary>(.*?)</details>", solution, re.S).group(1)
        found.append(dict(key=key, answer=ast.unparse(call.args[1]), inputs=len(call.args) > 2, atol=atol,
                          variables=variables, solution=code_in(block)))
    return found


ALL = [e for path in NOTEBOOKS for e in exercises_of(path)]
VALUE_EXERCISES = [e for e in ALL if not e["inputs"]]  # the learner gives a value, not a function


def assignments(statements: list[ast.stmt]) -> dict[str, ast.expr]:
    """name -> value expression, for `a = 1` and `a, b = 1, 2`."""
    out = {}
    for node in statements:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                out[target.id] = node.value
            elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                out.update({t.id: v for t, v in zip(target.elts, node.value.elts) if isinstance(t, ast.Name)})
    return out


def test_every_check_was_found():
    assert {e["key"] for e in ALL} == set(exercises.EXPECTED)


@pytest.mark.parametrize("exercise", VALUE_EXERCISES, ids=[e["key"] for e in VALUE_EXERCISES])
def test_the_folded_solution_passes_its_check(exercise):
    given = assignments(exercise["solution"])
    missing = [v for v in exercise["variables"] if v not in given]
    assert not missing, f"the solution of {exercise['key']} does not say what to put in {missing}"
    if not all(isinstance(n, LITERAL_NODES) for v in exercise["variables"] for n in ast.walk(given[v])):
        pytest.skip(f"the solution of {exercise['key']} computes its answer in the notebook (code, not a number)")
    namespace = {v: eval(compile(ast.Expression(given[v]), "<solution>", "eval")) for v in exercise["variables"]}
    answer = eval(exercise["answer"], {}, namespace)
    atol = exercises.tolerance(exercise["key"]) if exercise["atol"] is None else exercise["atol"]
    ok, hint = exercises._same(answer, exercises.EXPECTED[exercise["key"]](), atol)
    assert ok, f"the solution of {exercise['key']} says {answer!r}: {hint}"
