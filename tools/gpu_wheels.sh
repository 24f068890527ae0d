#!/usr/bin/env bash
# Put into .whl/ (or $WHEELS) every wheel an offline GPU machine needs beyond torch, torchvision and numpy: the
# test stack (pytest, nbval, ipykernel, jsonschema, coverage, ...), ipywidgets, ipyevents, matplotlib, tqdm and
# airbench, with all that they need. Nothing is removed on the guess that the GPU machine has it: check the set with
# tools/check_gpu_wheels.sh (a fresh virtual environment with numpy only installs it with --no-index).
# For Python 3.12 on x86-64 by default; PYVER=3.11 tools/gpu_wheels.sh for another Python.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
WHEELS=${WHEELS:-.whl}
mkdir -p "$WHEELS"
python3 -m pip download -q --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 --platform any -d "$WHEELS" nbval ipywidgets ipyevents pytest matplotlib tqdm
python3 -m pip wheel -q --no-deps -w "$WHEELS" airbench==0.1.8
# the GPU machine has its own numpy (torch is built against it): one version of each package only
rm -f "$WHEELS"/numpy-*
du -sh "$WHEELS" && ls "$WHEELS" | wc -l
