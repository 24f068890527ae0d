"""The package's shape: its imports form no cycle (so they can be drawn in layers, each importing only below), the
module table in docs/package.md names every public name, and `import sacnn_helpers` loads no module until a name
is used."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import sacnn_helpers as sh

PACKAGE = Path(sh.__file__).resolve().parent
ROOT = PACKAGE.parent


def internal_imports() -> dict[str, set[str]]:
    """module -> the package's modules it imports, at the top or inside a function (TYPE_CHECKING blocks
    excluded: they are type hints only)."""
    graph = {}
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        hints = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                 and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
        graph[path.stem] = {node.module.split(".")[0] for node in ast.walk(tree)
                            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
                            and id(node) not in hints}
    return graph


def test_imports_form_no_cycle():
    graph = internal_imports()
    done, active = set(), []

    def visit(module: str) -> None:
        assert module not in active, f"import cycle: {' -> '.join(active[active.index(module):] + [module])}"
        if module in done:
            return
        active.append(module)
        for target in graph.get(module, ()):
            visit(target)
        active.pop()
        done.add(module)

    for module in graph:
        visit(module)


def test_the_module_table_lists_every_public_name_under_its_module():
    table = (ROOT / "docs" / "package.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in table.splitlines() if line.startswith("| `")}
    for module, names in sh.PUBLIC.items():
        assert module in rows, f"docs/package.md has no row for {module}"
        missing = [n for n in names if f"`{n}`" not in rows[module]]
        assert not missing, f"docs/package.md's {module} row misses {missing}"


@pytest.mark.slow  # over 5 s: a fresh process (left out of the fast run, pytest -m "not slow")
def test_importing_the_package_loads_no_module_until_a_name_is_used():
    code = ("import sys, sacnn_helpers as sh; assert 'torch' not in sys.modules, 'torch loaded at import';"
            "sh.get_recipe('cpu'); assert 'torch' not in sys.modules, 'recipes loaded torch';"
            "sh.fit; assert 'sacnn_helpers.training' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
