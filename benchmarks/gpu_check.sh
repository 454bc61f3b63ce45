#!/usr/bin/env bash
# The GPU acceptance of the CUDA ops, runs 1 and 2 in one command that fits 9 minutes of a lent GPU
# (benchmarks/gpu_check.py says what each measures; docs/cuda_ops.md how a session runs them):
#
#   bash benchmarks/gpu_check.sh [OUT_DIR] [--run=1|2|1,2] [--nvidia-repo=PATH] [--nvidia-python=PYTHON] [--budget=S]
#       run 1: build, racecheck, kernels vs reference, op times beside NVIDIA's ops        (<= 225 s alone)
#       run 2: generation img/s and training s/kimg beside NVIDIA's code, pytest -m gpu    (<= 340 s alone)
#       both (the default): 525 s
#   bash benchmarks/gpu_check.sh --rehearse [OUT_DIR] [--nvidia-repo=... --nvidia-python=...]
#       every step of both runs on this machine's CPU at tiny shapes (no build: the reference ops stand in
#       for the kernels; NVIDIA's checkout runs its reference path), in under 5 minutes: run it before a
#       GPU is lent, so that a broken step shows here.
#
# OUT_DIR defaults to $OUT, else ./gpu_check_out; it receives gpu_check.md, gpu_check.json and
# gpu_check_logs.tar. SG3C_NVIDIA_REPO / SG3C_NVIDIA_PYTHON may stand for the two options.
set -u
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python3}
out=${OUT:-gpu_check_out}
args=()
rehearse=0
for arg in "$@"; do
    if [ "${arg#--}" = "$arg" ]; then
        out=$arg
    else
        [ "$arg" = "--rehearse" ] && rehearse=1
        args+=("$arg")
    fi
done
if [ $rehearse = 0 ] && ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    echo "gpu_check.sh: needs CUDA (torch.cuda.is_available() is false on this machine; --rehearse runs on the CPU)" >&2
    exit 1
fi
exec "$PYTHON" benchmarks/gpu_check.py --out "$out" ${args[@]+"${args[@]}"}
