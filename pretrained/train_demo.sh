#!/usr/bin/env bash
# Reproduce the pretrained garment model from scratch on CPU (or continue an interrupted run).
#
#   bash pretrained/train_demo.sh [OUTDIR]          # train; default OUTDIR: runs/pretrained-garments (git-ignored)
#   bash pretrained/train_demo.sh OUTDIR release    # then: ship the newest snapshot and measure it
#
# Running it again continues the newest snapshot in OUTDIR exactly (--resume=latest), so a longer run on a
# better machine only needs a larger KIMG:  KIMG=500 bash pretrained/train_demo.sh runs/pretrained-garments
# Environment: KIMG (stop after this many kimg, default 200; the shipped model's length is in
# pretrained/README.md), GPUS (default 1), WORKERS (DataLoader workers, default 0 = read in the main process).
#
# Why these options: a 64x64 conditional StyleGAN2 with 16-32 feature maps (--cbase=1024 --cmax=32) and a
# 2-layer mapping network trains at about 25 s/kimg on a quiet 2-core CPU, where stylegan3-t at the same
# width was more than 3x slower (see pretrained/README.md). --mbstd-by-class=True: with NVIDIA's mixed-class
# minibatch-std groups every earlier run here collapsed to one garment per class within 20-50 kimg (G ignored
# z); within-class groups let D see it. --gamma=1, not NVIDIA's heuristic 0.0002*res^2/batch (0.026 here):
# at 0.1 an earlier run's D ran away (scores +3.3 / -2.7). The 6,000 garments (x2 with --mirror) need no ADA
# in a run this short (--aug=noaug).
# A snapshot every kimg keeps the 1-kimg model that the quality bar compares against.
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-runs/pretrained-garments}
KIMG=${KIMG:-200}
DATA='synthetic:garments?n=6000&resolution=64&seed=0'

if [ "${2:-}" = release ]; then
    # The classifier first (if missing): it scores the model. The 1-kimg snapshot of the same run is the baseline.
    [ -f pretrained/garment-classifier-64x64.pt ] || python pretrained/train_classifier.py
    SNAP=$(ls "$OUTDIR"/*/network-snapshot-*.pkl | sort | tail -1)
    BASE=$(ls "$OUTDIR"/*/network-snapshot-000001*.pkl | head -1)
    python pretrained/make_release.py --snapshot="$SNAP"
    exec python pretrained/evaluate.py --network=garments --baseline="$BASE" --data="$DATA" \
        --json-out=pretrained/quality.json
fi

if ls "$OUTDIR"/*/network-snapshot-*.pkl >/dev/null 2>&1; then
    exec python train.py --outdir="$OUTDIR" --resume=latest --kimg="$KIMG" --tick=1 --snap=1 --metrics=none \
        --workers="${WORKERS:-0}"
fi
exec python train.py --outdir="$OUTDIR" --cfg=stylegan2 --data="$DATA" --cond=1 --mirror=1 --aug=noaug \
    --gpus="${GPUS:-1}" --batch=32 --gamma=1 --mbstd-by-class=1 --cbase=1024 --cmax=32 --map-depth=2 \
    --kimg="$KIMG" --tick=1 --snap=1 --seed=0 --metrics=none --workers="${WORKERS:-0}"
