#!/usr/bin/env bash
# The GPU acceptance of the CUDA ops in two prepared runs that fit one lent H200's 15 minutes
# (benchmarks/gpu_check.py says what each measures; docs/cuda_ops.md how a session runs them):
#
#   bash benchmarks/gpu_check.sh --run=1 [OUT_DIR] [--nvidia-repo=PATH] [--nvidia-python=PYTHON] [--budget=S]
#       build, kernels vs reference at the networks' shapes, op times vs NVIDIA's ops   (<= 4 minutes)
#   bash benchmarks/gpu_check.sh --run=2 [OUT_DIR] [--nvidia-repo=PATH] [--nvidia-python=PYTHON] [--budget=S]
#       generation img/s and training s/kimg side by side with NVIDIA's code          (<= 6 minutes)
#
# OUT_DIR defaults to $OUT, else ./gpu_check_out; it receives gpu_check.md, gpu_check.json and
# gpu_check_logs.tar. SG3C_NVIDIA_REPO / SG3C_NVIDIA_PYTHON may stand for the two options.
set -u
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    echo "gpu_check.sh: needs CUDA (torch.cuda.is_available() is false on this machine)" >&2
    exit 1
fi
out=${OUT:-gpu_check_out}
args=()
for arg in "$@"; do
    if [ "${arg#--}" = "$arg" ]; then
        out=$arg
    else
        args+=("$arg")
    fi
done
exec "$PYTHON" benchmarks/gpu_check.py --out "$out" ${args[@]+"${args[@]}"}
