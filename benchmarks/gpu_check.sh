#!/usr/bin/env bash
# Everything this project checks on a CUDA GPU, in one go:
#   1. the test suite with every notebook under strict nbval, on the GPU, in the CI's small size
#      (the CUDA-only tests in tests/test_gpu.py run here, and only here);
#   2. benchmarks/gpu.py: the gpu recipe with and without attention, airbench94 on the same data, and the
#      seed network's fused vs explicit attention throughput (--quick unless FULL=1).
# Run from anywhere:  bash benchmarks/gpu_check.sh        (FULL=1 bash benchmarks/gpu_check.sh for 5 seeds)
# Needs CUDA torch; CIFAR-10 in data/ (or the offline copy in .cifar/: cifar10_jpeg.npz, batches.meta and
# materialize.py); nbval, ipywidgets and airbench installed, or their wheels in .whl/ (tools/gpu_wheels.sh).
# Logs and results go to $OUT (default benchmarks/results/).
# On a GPU machine without internet: run tools/gpu_wheels.sh on a machine with internet, copy cifar10_jpeg.npz,
# batches.meta and materialize.py of the offline CIFAR-10 copy into .cifar/, and bring .whl/ and .cifar/ along
# (both are git-ignored). Expected run time on one H100: a few minutes (not yet measured).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
if [ ! -f data/cifar-10-batches-py/test_batch ] && [ -f .cifar/materialize.py ]; then
  python3 .cifar/materialize.py data/
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, '| CUDA GPU:', torch.cuda.get_device_name())" || exit 1

start=$(date +%s)
SACNN_SMOKE=1 python3 -m pytest --nbval -q -p no:cacheprovider -o addopts="" 2>&1 | tee "$OUT/gpu_pytest.log"
tests=${PIPESTATUS[0]}
echo "gpu_check: pytest --nbval exit $tests after $(( $(date +%s) - start )) s"
if [ -n "${FULL:-}" ]; then mode=(--seeds 5); else mode=(--quick); fi
python3 benchmarks/gpu.py "${mode[@]}" 2>&1 | tee "$OUT/gpu_benchmark.log"
bench=${PIPESTATUS[0]}
echo "gpu_check: benchmark exit $bench after $(( $(date +%s) - start )) s in all"
exit $(( tests || bench ))
