#!/usr/bin/env bash
# The fast tests (tests/ without the slow marker; no notebooks) on the oldest torch and torchvision that
# requirements.txt admits, in a virtual environment of their own. The floors are read from requirements.txt
# (torch>=A.B, torchvision>=C.D -> torch==A.B.0, torchvision==C.D.0), so raising them there moves this check.
# The environment is kept in $SACNN_FLOOR_VENV (default ~/.cache/sacnn/floor-torch-A.B) and rebuilt when
# requirements.txt changes: about a minute to build (the PyPI wheels, CUDA builds, run on the CPU), 30 s to test.
set -euo pipefail
cd "$(dirname "$0")/.."
torch_floor=$(sed -n 's/^torch>=\([0-9.]*\).*/\1/p' requirements.txt)
vision_floor=$(sed -n 's/^torchvision>=\([0-9.]*\).*/\1/p' requirements.txt)
[ -n "$torch_floor" ] && [ -n "$vision_floor" ] || { echo "floor_tests: no torch>= / torchvision>= line in requirements.txt" >&2; exit 2; }
venv=${SACNN_FLOOR_VENV:-$HOME/.cache/sacnn/floor-torch-$torch_floor}
stamp="$torch_floor $vision_floor $(grep -v '^-e' requirements.txt | sha256sum | cut -c1-16)"
if [ "$(cat "$venv/.sacnn-stamp" 2>/dev/null)" != "$stamp" ]; then
  start=$(date +%s)
  rm -rf "$venv"
  python3 -m venv "$venv"
  # everything requirements.txt asks for but this package itself (the tests import it from the checkout)
  grep -v '^-e' requirements.txt > "$venv/requirements.txt"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$venv/requirements.txt" \
    "torch==$torch_floor.0" "torchvision==$vision_floor.0"
  echo "$stamp" > "$venv/.sacnn-stamp"
  echo "floor_tests: built $venv in $(( $(date +%s) - start )) s"
fi
"$venv/bin/python" -c "import torch, torchvision; print('floor_tests: torch', torch.__version__, 'torchvision', torchvision.__version__)"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" SACNN_SMOKE=1 "$venv/bin/python" -m pytest tests -m "not slow" -q \
  -p no:cacheprovider
