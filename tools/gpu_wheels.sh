#!/usr/bin/env bash
# Put into .whl/ the wheels a GPU machine without internet lacks (it has torch, numpy, matplotlib, pytest, tqdm):
# nbval and ipywidgets with what they need, and airbench (the PyPI package, for the side-by-side).
# For Python 3.12 on x86-64 by default; PYVER=3.11 tools/gpu_wheels.sh for another Python.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
mkdir -p .whl
python3 -m pip download -q --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 --platform any -d .whl nbval ipywidgets
python3 -m pip wheel -q --no-deps -w .whl airbench
# the machine's own copies of these are newer or the same; two versions of one package stop `pip install`
rm -f .whl/numpy-* .whl/pytest-* .whl/pluggy-* .whl/iniconfig-* .whl/packaging-* .whl/pygments-* .whl/psutil-* \
  .whl/typing_extensions-* .whl/attrs-* .whl/python_dateutil-* .whl/tzdata-* .whl/coverage-*
du -sh .whl && ls .whl | wc -l
