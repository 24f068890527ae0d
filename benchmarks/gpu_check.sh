#!/usr/bin/env bash
# Everything this project checks on a CUDA GPU, most valuable first, inside a time budget (default 540 s):
#   1. the test suite with every notebook under strict nbval, on the GPU, in the CI's small size (the CUDA-only
#      tests in tests/test_gpu.py run here, and only here), given at most 45 % of the budget;
#   2. benchmarks/gpu.py with what is left: the gpu recipe with and without attention (seed 0), airbench94 itself,
#      more paired seeds while time allows, then the fused-vs-explicit attention throughput. Every run is
#      appended to $OUT/gpu_runs.jsonl the moment it ends.
# Run from anywhere:  bash benchmarks/gpu_check.sh [--budget-s 540]
# Needs CUDA torch; CIFAR-10 in data/ (or the offline copy in .cifar/: cifar10_jpeg.npz, batches.meta and
# materialize.py); the packages of requirements.txt, or their wheels in .whl/ (tools/gpu_wheels.sh makes them).
# Logs and results go to $OUT (default benchmarks/results/).
set -uo pipefail
cd "$(dirname "$0")/.."
budget=540
while [ $# -gt 0 ]; do
  case "$1" in
    --budget-s) budget="$2"; shift 2 ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [--budget-s SECONDS]" >&2; exit 2 ;;
  esac
done
start=$(date +%s)
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}  # before anything starts CUDA
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
if [ ! -f data/cifar-10-batches-py/test_batch ] && [ -f .cifar/materialize.py ]; then
  python3 .cifar/materialize.py data/
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, '|', torch.cuda.get_device_name())" \
  || exit 1

tests_budget=$(( budget * 45 / 100 ))
SACNN_SMOKE=1 timeout "$tests_budget" python3 -m pytest --nbval -q -p no:cacheprovider -o addopts="" 2>&1 \
  | tee "$OUT/gpu_pytest.log"
tests=${PIPESTATUS[0]}
echo "gpu_check: pytest --nbval exit $tests after $(( $(date +%s) - start )) s (124: stopped at its ${tests_budget} s)"
left=$(( budget - ($(date +%s) - start) ))
python3 benchmarks/gpu.py --budget-s "$left" --out "$OUT" 2>&1 | tee "$OUT/gpu_benchmark.log"
bench=${PIPESTATUS[0]}
echo "gpu_check: benchmark exit $bench after $(( $(date +%s) - start )) s in all (budget $budget s)"
exit $(( tests || bench ))
