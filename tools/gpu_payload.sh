#!/usr/bin/env bash
# Make what the GPU check carries and print what will travel: the working tree (tracked and untracked files git
# does not ignore), .cifar/ (the offline CIFAR-10 copy: cifar10_jpeg.npz, batches.meta and materialize.py from
# ../shared/data/cifar10, which benchmarks/gpu_check.sh turns into data/cifar-10-batches-py there) and .whl/
# (tools/gpu_wheels.sh: only the wheels the machine lacks). Fails when the total is over the limit (56 MiB;
# the device tool's own limit is 64 MiB). Then: run `bash benchmarks/gpu_check.sh --budget-s 540` on the device
# with carry [".cifar", ".whl"].
set -euo pipefail
cd "$(dirname "$0")/.."
limit_mib=${LIMIT_MIB:-56}
shared=${SHARED:-../shared/data/cifar10}
if [ ! -f .cifar/cifar10_jpeg.npz ]; then
  mkdir -p .cifar && cp "$shared"/cifar10_jpeg.npz "$shared"/batches.meta "$shared"/materialize.py .cifar/
fi
[ -n "$(ls .whl/*.whl 2>/dev/null)" ] || bash tools/gpu_wheels.sh
size() { if [ $# -gt 0 ]; then du -cb "$@" | tail -1 | cut -f1; else echo 0; fi; }
mapfile -d '' tree < <(git ls-files -z --cached --others --exclude-standard)
existing=(); for f in "${tree[@]}"; do [ -f "$f" ] && existing+=("$f"); done
tree_b=$(size "${existing[@]}")
data_b=$(size .cifar)
wheels_b=$(size .whl)
total_b=$(( tree_b + data_b + wheels_b ))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "gpu_payload: working tree $(mib "$tree_b") MiB + data (.cifar) $(mib "$data_b") MiB + wheels (.whl) $(mib "$wheels_b") MiB = $(mib "$total_b") MiB (limit $limit_mib MiB)"
[ "$total_b" -le $(( limit_mib * 1048576 )) ] || { echo "gpu_payload: over $limit_mib MiB" >&2; exit 1; }
