#!/usr/bin/env bash
# Reproduce the pretrained garment model from scratch on CPU (or continue an interrupted run).
#
#   bash pretrained/train_demo.sh [OUTDIR]          # train; default OUTDIR: runs/pretrained-garments (git-ignored)
#   bash pretrained/train_demo.sh OUTDIR release    # then: ship stage 3's newest snapshot and measure it
#
# Three stages, each in its own run directory under OUTDIR:
#   1. batch 32 from scratch for STAGE1_KIMG (default 188.8): garment shapes, colours and classes;
#   2. batch 16 from stage 1's last snapshot (--transfer=1: weights copied, optimizers fresh) until
#      STAGE2_KIMG (default 157.264, counted within stage 2): twice the optimizer steps per image, which is
#      when the patterns and the gap between trouser legs appeared;
#   3. the same from stage 2's snapshot at STAGE2_KIMG (its newest if that one is missing), optimizers fresh
#      again and --seed=STAGE3_SEED (default 13), for STAGE3_KIMG (default 4.048): the shipped model, the
#      best of 92 such short continuations on separate selection samples (pretrained/NOTES.md).
# Running it again continues where it stopped (--resume=latest within the stage); a larger STAGE2_KIMG
# trains stage 2 on (stage 3 then starts from the new snapshot only in a fresh OUTDIR or after deleting it).
# Environment: STAGE1_KIMG, STAGE2_KIMG, STAGE3_KIMG, STAGE3_SEED, GPUS (default 1), WORKERS (DataLoader
# workers, default 0 = read in the main process). The shipped model's lengths are in pretrained/README.md.
#
# Why these options: a 64x64 conditional StyleGAN2 with 16-32 feature maps (--cbase=1024 --cmax=32) and a
# 2-layer mapping network trains at about 25 s/kimg on a quiet 2-core CPU, where stylegan3-t at the same
# width was more than 3x slower (see pretrained/NOTES.md). --mbstd-by-class=True: with NVIDIA's mixed-class
# minibatch-std groups every earlier run here collapsed to one garment per class within 20-50 kimg (G ignored
# z); within-class groups let D see it. --gamma=1, not NVIDIA's heuristic 0.0002*res^2/batch (0.026 here):
# at 0.1 an earlier run's D ran away (scores +3.3 / -2.7). The 6,000 garments (x2 with --mirror) need no ADA
# in a run this short (--aug=noaug). Batch 16 from the start collapsed by 56 kimg in an earlier run without
# --mbstd-by-class (pretrained/NOTES.md); with it, only the continuation from stage 1 has been tried.
# A snapshot every kimg in stage 1 keeps the 1-kimg model that the quality bar compares against.
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-runs/pretrained-garments}
STAGE1_KIMG=${STAGE1_KIMG:-188.8}
STAGE2_KIMG=${STAGE2_KIMG:-157.264}
STAGE3_KIMG=${STAGE3_KIMG:-4.048}
STAGE3_SEED=${STAGE3_SEED:-13}
DATA='synthetic:garments?n=6000&resolution=64&seed=0'
STAGE1="$OUTDIR/stage1-batch32"
STAGE2="$OUTDIR/stage2-batch16"
STAGE3="$OUTDIR/stage3-seed$STAGE3_SEED"
COMMON=(--cfg=stylegan2 --data="$DATA" --cond=1 --mirror=1 --aug=noaug --gpus="${GPUS:-1}" --gamma=1
        --mbstd-by-class=1 --cbase=1024 --cmax=32 --map-depth=2 --tick=1 --metrics=none
        --workers="${WORKERS:-0}")

newest() { { ls "$1"/*/network-snapshot-*.pkl 2>/dev/null || true; } | sort | tail -1; }
kimg_of() { basename "$1" .pkl | sed 's/network-snapshot-0*//'; }

if [ "${2:-}" = release ]; then
    # The classifier first (if missing): it scores the model. The 1-kimg snapshot of stage 1 is the baseline.
    [ -f pretrained/garment-classifier-64x64.pt ] || python pretrained/train_classifier.py
    SNAP=$(newest "$STAGE3")
    BASE=$(ls "$STAGE1"/*/network-snapshot-000001*.pkl | head -1)
    python pretrained/make_release.py --snapshot="$SNAP"
    exec python pretrained/evaluate.py --network=garments --baseline="$BASE" --data="$DATA" \
        --json-out=pretrained/quality.json
fi

# One stage: skipped once it has reached its length; else started, or continued exactly.
stage() {   # DIR KIMG FIRST-RUN-OPTIONS...
    local dir=$1 kimg=$2 last
    shift 2
    last=$(newest "$dir")
    if [ -z "$last" ]; then
        python train.py --outdir="$dir" "$@" --kimg="$kimg"
    elif awk "BEGIN {exit !($(kimg_of "$last") < $kimg)}"; then
        python train.py --outdir="$dir" --resume=latest --kimg="$kimg"
    fi
}
stage "$STAGE1" "$STAGE1_KIMG" "${COMMON[@]}" --seed=0 --batch=32 --snap=1
stage "$STAGE2" "$STAGE2_KIMG" --resume="$(newest "$STAGE1")" --transfer=1 "${COMMON[@]}" --seed=0 --batch=16 --snap=4

# Stage 3 from stage 2's snapshot at STAGE2_KIMG.
FROM=$(ls "$STAGE2"/*/network-snapshot-"$(printf '%010.3f' "$STAGE2_KIMG")".pkl 2>/dev/null | head -1 || true)
stage "$STAGE3" "$STAGE3_KIMG" --resume="${FROM:-$(newest "$STAGE2")}" --transfer=1 "${COMMON[@]}" \
    --seed="$STAGE3_SEED" --batch=16 --snap=1
