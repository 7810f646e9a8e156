#!/usr/bin/env bash
# The main job on a real default: train a head on a shared dataset, export fp32 and int8 ONNX,
# classify with the edge runtime, and benchmark both exports.
#   bash scripts/quickstart.sh [DATA_DIR] [BACKBONE]
# DATA_DIR defaults to ../shared/datasets/hymenoptera, BACKBONE to mobilenetv2.
# Weights come from --weights-dir / PERCH_WEIGHTS (default ../shared/weights).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets/hymenoptera}
backbone=${2:-mobilenetv2}
export PERCH_WEIGHTS=${PERCH_WEIGHTS:-../shared/weights}
run=runs/$(basename "$data")-$backbone

cargo build --release --locked -p trainer -p edge-runtime
trainer=target/release/trainer
runtime=target/release/edge-runtime

# A second run of this script continues (or just re-reports) the same run instead of refusing.
resume=()
[ -f "$run/run.json" ] && resume=(--resume)
"$trainer" fit --backbone "$backbone" --data "$data" --out "$run" "${resume[@]}"
"$trainer" export --run "$run" --out "$run/model-fp32.onnx" --precision fp32
# --max-drop 2: on hymenoptera's 153 validation images one image is 0.65 points.
"$trainer" export --run "$run" --out "$run/model-int8.onnx" --precision int8 --max-drop 2
# Classify the validation (or test) images with the self-describing exported model.
val=$(ls -d "$data"/val "$data"/test 2>/dev/null | head -n 1 || true)
"$runtime" classify --model "$run/model-int8.onnx" --top-k 3 "${val:-$data}" | tail -n 25
"$runtime" bench --model "$run/model-fp32.onnx" --model "$run/model-int8.onnx" --threads 1 \
  --iterations 50 --json "$run/bench.json" --markdown "$run/bench.md"
echo "run directory: $run (curves.png, confusion.png, predictions.png, metrics.json, bench.md)"
