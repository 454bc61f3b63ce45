#!/usr/bin/env bash
# The whole GPU acceptance in one command (issue 13): build + check the CUDA ops against the reference,
# the tests marked gpu, generation and training speed (side by side with NVIDIA's code when a checkout
# is given), and a short end-to-end train -> generate -> invert run. At most ~8 minutes on one H200.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR] [--nvidia-repo=PATH] [--budget=SECONDS]
#
# OUT_DIR defaults to $OUT, else ./gpu_check_out. Writes OUT_DIR/gpu_check.md (the table),
# OUT_DIR/gpu_check.json and one log per step. SG3C_NVIDIA_REPO may name the NVIDIA checkout instead.
set -u
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    echo "gpu_check.sh: needs CUDA (torch.cuda.is_available() is false on this machine)" >&2
    exit 1
fi
out=${OUT:-gpu_check_out}
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
    out=$1
    shift
fi
exec "$PYTHON" benchmarks/gpu_check.py --out "$out" "$@"
