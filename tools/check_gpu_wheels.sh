#!/usr/bin/env bash
# Shows that the wheel set of tools/gpu_wheels.sh is complete: in a fresh virtual environment that has only
# numpy (torch is needed by none of these packages' metadata), `pip install --no-index` of the packages the GPU
# check needs succeeds from .whl/ alone, and they import. Builds the wheels for this Python first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
work=$(mktemp -d)  # this Python's wheels, away from .whl/ (which holds the GPU machine's)
WHEELS="$work/whl" PYVER=$PYVER bash tools/gpu_wheels.sh
venv=$work/venv
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q numpy  # what the GPU machine has beside torch
"$venv/bin/python" -m pip install -q --no-index --find-links "$work/whl" nbval ipywidgets ipyevents pytest matplotlib tqdm airbench
"$venv/bin/python" -c "import nbval, ipywidgets, ipyevents, jsonschema, coverage, attrs, ipykernel, matplotlib, tqdm; print('check_gpu_wheels: every package installed from .whl/ with --no-index and imported')"
"$venv/bin/python" -m pip list 2>/dev/null | wc -l
