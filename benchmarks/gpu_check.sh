#!/usr/bin/env bash
# Everything this project checks on a CUDA GPU, most valuable first, inside a time budget (default 540 s). The CPU
# suite is CI's job; this runs only what needs the GPU:
#   1. the CUDA-only tests (`pytest -m cuda tests`: fused kernels, bf16, float16 airbench94, compile,
#      determinism), given at most a quarter of the budget;
#   2. benchmarks/gpu.py with what is left but the notebook's reserve: an untimed warm-up, the gpu recipe with and
#      without attention (seed 0), airbench94 itself, more paired seeds while time allows, then the throughput
#      table. Every run, the data set's loading included, is appended to $OUT/gpu_runs.jsonl the moment it ends;
#   3. notebook 08 at full size on CUDA (SACNN_SMOKE=0, strict nbval): the gpu recipe with and without attention.
# Prepare on the CPU machine: `bash tools/gpu_payload.sh` makes .cifar/ (the offline CIFAR-10 copy) and .whl/
# (the wheels the GPU machine lacks, tools/check_gpu_wheels.sh checks them) and prints the size that travels.
# Then on the GPU machine, with .cifar and .whl carried:  bash benchmarks/gpu_check.sh [--budget-s 540]
# Logs and results go to $OUT (default benchmarks/results/): gpu_check.log (all of it), gpu_pytest.log,
# gpu_runs.jsonl, gpu.md, gpu_notebook07.log.
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
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
elapsed() { echo $(( $(date +%s) - start )); }
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}  # before anything starts CUDA
if ls .whl/*.whl >/dev/null 2>&1; then
  # pip keeps every installed package that satisfies a requirement, and .whl/ holds only packages the machine
  # lacks (tools/gpu_wheels.sh), so this adds what is missing and replaces nothing
  python3 -m pip install -q --no-index --find-links .whl nbval ipywidgets ipyevents airbench \
    || python3 -m pip install -q --user --no-index --find-links .whl nbval ipywidgets ipyevents airbench \
    || echo "gpu_check: the wheels in .whl/ did not install; the steps that need them will fail"
fi
if [ ! -f data/cifar-10-batches-py/test_batch ]; then
  if [ -f .cifar/materialize.py ]; then
    python3 .cifar/materialize.py data/ || echo "gpu_check: .cifar/materialize.py failed"
  else
    echo "gpu_check: no CIFAR-10: neither data/cifar-10-batches-py nor .cifar/ (tools/gpu_payload.sh makes it)"
  fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, '|', torch.cuda.get_device_name())" \
  || exit 1

notebook_reserve=$(( budget * 30 / 100 ))  # notebook 08 at full size: data, two gpu-recipe runs, 300 plain steps
tests_budget=$(( budget / 4 ))
timeout "$tests_budget" python3 -m pytest -m cuda tests -v -p no:cacheprovider -o addopts="" 2>&1 | tee "$OUT/gpu_pytest.log"
tests=${PIPESTATUS[0]}
echo "gpu_check: CUDA tests exit $tests after $(elapsed) s (124: stopped at its $tests_budget s)"

left=$(( budget - $(elapsed) - notebook_reserve ))
python3 benchmarks/gpu.py --budget-s "$left" --out "$OUT"
bench=$?
echo "gpu_check: benchmark exit $bench after $(elapsed) s"

left=$(( budget - $(elapsed) ))
SACNN_SMOKE=0 timeout "$left" python3 -m pytest --nbval -v -p no:cacheprovider -o addopts="" \
  notebooks/08_train_on_cifar10.ipynb 2>&1 | tee "$OUT/gpu_notebook07.log"
notebook=${PIPESTATUS[0]}
echo "gpu_check: notebook 08 at full size exit $notebook after $(elapsed) s in all (budget $budget s)"
exit $(( tests || bench || notebook ))
