#!/usr/bin/env bash
# Put into .whl/ (or $WHEELS) the wheels an offline GPU machine lacks for benchmarks/gpu_check.sh: the test stack
# (nbval, ipykernel, ...), ipywidgets, ipyevents and airbench, with what they need, for Python $PYVER (3.12, the
# GPU machine's). Wheels of packages the machine already has (tools/gpu_machine_packages.txt: torch, numpy,
# pytest, matplotlib, tqdm, ...) are left out: they would only cost carry space, and gpu_check.sh installs with
# pip, which keeps an installed package that satisfies a requirement. ALL=1 keeps every wheel (for a bare check).
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
WHEELS=${WHEELS:-.whl}
rm -rf "$WHEELS" && mkdir -p "$WHEELS"
python3 -m pip download -q --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 --platform any -d "$WHEELS" nbval ipywidgets ipyevents pytest matplotlib tqdm \
  2>&1 | grep -v "^WARNING: Location" || true
python3 -m pip wheel -q --no-deps -w "$WHEELS" airbench==0.1.8 2>&1 | grep -v "^WARNING: Location" || true
if [ "${ALL:-0}" != 1 ]; then
  for wheel in "$WHEELS"/*.whl; do
    name=$(basename "$wheel" | sed 's/-[0-9].*//' | tr 'A-Z_.' 'a-z--')
    if grep -qx "$name" tools/gpu_machine_packages.txt; then rm "$wheel"; fi
  done
fi
echo "gpu_wheels: $(ls "$WHEELS" | wc -l) wheels, $(du -sm "$WHEELS" | cut -f1) MiB in $WHEELS (Python $PYVER)"
