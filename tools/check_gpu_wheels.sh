#!/usr/bin/env bash
# Shows that .whl/ (tools/gpu_wheels.sh) completes the GPU machine for benchmarks/gpu_check.sh, on the Python that
# runs it there (3.12): a fresh 3.12 virtual environment stands in for the machine, holding the packages of
# tools/gpu_machine_packages.txt that the check needs (numpy, pytest, matplotlib, tqdm and what they need, from
# PyPI), then `pip install --no-index --find-links .whl` of nbval, ipywidgets, ipyevents and airbench must
# succeed from .whl/ alone, add only packages the machine lacks, and everything must import.
set -euo pipefail
cd "$(dirname "$0")/.."
py=""
for candidate in ${PYTHON312:-} python3.12 /root/.pyenv/versions/3.12*/bin/python3.12; do
  if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then py=$candidate; break; fi
done
[ -n "$py" ] || { echo "check_gpu_wheels: no Python 3.12 here (set PYTHON312 to one)" >&2; exit 2; }
[ -n "$(ls .whl/*.whl 2>/dev/null)" ] || bash tools/gpu_wheels.sh
work=$(mktemp -d)
"$py" -m venv "$work/machine"
pip="$work/machine/bin/python -m pip"
# the machine's own packages (stand-ins at today's versions): every wheel of the full set that .whl/ leaves out
ALL=1 WHEELS="$work/all" bash tools/gpu_wheels.sh >/dev/null
have=$(for w in "$work"/all/*.whl; do n=$(basename "$w" | sed 's/-[0-9].*//' | tr 'A-Z_.' 'a-z--')
       if grep -qx "$n" tools/gpu_machine_packages.txt; then echo "$w"; fi; done)
$pip install -q --no-index --no-deps $have
before=$($pip list --format=freeze 2>/dev/null | cut -d= -f1 | sort)
$pip install -q --no-index --find-links .whl nbval ipywidgets ipyevents airbench
after=$($pip list --format=freeze 2>/dev/null | cut -d= -f1 | sort)
added=$(comm -13 <(echo "$before") <(echo "$after") | tr 'A-Z_.' 'a-z--')
for n in $added; do
  if grep -qx "$n" tools/gpu_machine_packages.txt; then echo "check_gpu_wheels: $n would shadow the machine's own" >&2; exit 1; fi
done
# airbench imports torch, which the stand-in lacks (the machine has it): found, not imported
"$work/machine/bin/python" -c "import importlib.util, nbval, ipywidgets, ipyevents, ipykernel, jupyter_client, matplotlib, tqdm, pytest; assert importlib.util.find_spec('airbench')"
echo "check_gpu_wheels: Python $("$py" -c 'import platform; print(platform.python_version())'): $(echo "$added" | wc -w) packages added from .whl/ with --no-index, none the machine has; all import"
rm -rf "$work"
