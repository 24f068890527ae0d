"""Every number in the prose is one we measured (`tools/check_numbers.py`): each decimal and percentage in a
notebook's markdown, README.md and weights/README.md is found in that document's outputs, in a source named for it,
or on the allow-list of definitions; a planted wrong number is caught, and numbers inside code are not read."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("check_numbers", ROOT / "tools" / "check_numbers.py")
check_numbers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_numbers)

DOCUMENTS = check_numbers.documents()


@pytest.mark.parametrize("name, markdown, outputs", DOCUMENTS, ids=[d[0] for d in DOCUMENTS])
def test_every_number_in_the_prose_is_found(name, markdown, outputs):
    unknown = check_numbers.check_document(name, markdown, outputs)
    assert not unknown, f"{name}: numbers found in no output or source: {', '.join(unknown)} (tools/check_numbers.py)"


def notebook_08():
    return next(d for d in DOCUMENTS if d[0] == "08")


def test_a_planted_wrong_number_is_reported():
    name, markdown, outputs = notebook_08()
    right = "86.16 %"
    assert right in check_numbers.CODE.sub(" ", markdown), "notebook 08's prose no longer quotes 86.16 %"
    assert check_numbers.check_document(name, markdown, outputs) == []
    planted = markdown.replace(right, "87.77 %", 1)
    assert check_numbers.check_document(name, planted, outputs) == ["87.77"]


def test_a_planted_wrong_decimal_is_reported():
    name, markdown, outputs = notebook_08()
    assert check_numbers.check_document(name, markdown + "\n\nThe loss fell to 0.4321.", outputs) == ["0.4321"]


def test_numbers_in_code_are_not_read():
    name, markdown, outputs = notebook_08()
    code = "\n\nRun `lr = 87.77` or `print(f'{87.77:.2f} %')`:\n\n```python\nx = 12.3456\nprint('99.99 %')\n```\n"
    assert check_numbers.prose_numbers(code) == []
    assert check_numbers.check_document(name, markdown + code, outputs) == []
    assert check_numbers.check_document(name, markdown + code + "Outside code: 87.77 %.", outputs) == ["87.77"]


def test_a_count_in_millions_matches_its_integer():
    assert check_numbers.check_document("06", "It has 1.40 M parameters.", "total 1,398,859") == []
    assert check_numbers.check_document("06", "It has 1.50 M parameters.", "total 1,398,859") == ["1.50"]


def test_every_allowed_number_names_its_reason_and_is_used():
    prose = {name: check_numbers.prose_numbers(markdown) for name, markdown, _ in DOCUMENTS}
    for (name, number), why in check_numbers.ALLOWED.items():
        assert why.strip(), f"{name} {number}: say why it is allowed"
        assert number in prose.get(name, []), f"ALLOWED has {name} {number}, which its prose no longer writes"
