#!/usr/bin/env bash
# Engines side by side on this machine (issue 12's report, committed under docs/bench/engines/):
#  1. `edge-runtime bench` over the reference MobileNetV2 and EfficientNet-Lite0 (and perch exports
#     given in PERCH_BENCH_EXPORTS, e.g. an fp32 and an int8 file) with --engine tract,ort at
#     --threads 1,2, preprocessing a real 640x480 JPEG (a hymenoptera photo resized by PIL);
#  2. onnxruntime's own Python latency on the same files, 1 thread (benches/python/ort_latency.py);
#  3. end to end: `edge-runtime run --source dir:` over 150 such 640x480 JPEGs with each engine,
#     beside the Python onnxruntime + PIL loop on the same folder (benches/python/ort_loop.py).
# Usage: scripts/bench-engines.sh [OUT_DIR]   (default docs/bench/engines)
# Needs: a release build (cargo build --release -p edge-runtime), ../shared, python3 (the venv with
# onnxruntime and pillow is made by tests/python/venv.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out=${1:-docs/bench/engines}
weights=${PERCH_WEIGHTS:-$root/../shared/weights}
bin=${EDGE_RUNTIME:-${CARGO_TARGET_DIR:-$root/target}/release/edge-runtime}
[ -x "$bin" ] || { echo "no release build at $bin: cargo build --release -p edge-runtime" >&2; exit 1; }
ORT_DYLIB_PATH=$(bash tests/python/venv.sh); export ORT_DYLIB_PATH
py=${PERCH_PY_VENV:-$root/target/python-venv}/bin/python
mkdir -p "$out"
frames=$(mktemp -d /tmp/perch-640.XXXXXX); trap 'rm -rf "$frames"' EXIT
"$py" - "$root/../shared/datasets/hymenoptera/val" "$frames" <<'PY'
import glob, sys
from PIL import Image
files = sorted(glob.glob(sys.argv[1] + "/*/*.jpg"))[:150]
for i, f in enumerate(files):
    Image.open(f).convert("RGB").resize((640, 480), Image.BICUBIC).save(f"{sys.argv[2]}/{i:03d}.jpg", quality=90)
PY
models=(--model "$weights/mobilenet_v2_1.0_224.onnx" --preset mobilenetv2 --labels "$weights/imagenet_labels.txt"
        --model "$weights/efficientnet_lite0.onnx" --preset efficientnet-lite0 --labels "$weights/imagenet_labels.txt")
files=("$weights/mobilenet_v2_1.0_224.onnx" "$weights/efficientnet_lite0.onnx")
for f in ${PERCH_BENCH_EXPORTS:-}; do models+=(--model "$f"); files+=("$f"); done
echo "== bench: tract and ort, 1 and 2 threads ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
"$bin" bench "${models[@]}" --engine tract,ort --threads 1,2 --image "$frames/000.jpg" \
  --json "$out/report.json" --markdown "$out/report.md" --plot "$out/latency.png"
echo "== onnxruntime's own Python latency, 1 thread"
"$py" benches/python/ort_latency.py "${files[@]}" | tee "$out/python-ort-latency.jsonl"
echo "== end to end over 150 640x480 JPEGs"
{
  for engine in tract ort; do
    "$bin" run --source "dir:$frames" --model "$weights/mobilenet_v2_1.0_224.onnx" --preset mobilenetv2 \
      --labels "$weights/imagenet_labels.txt" --emit jsonl --threads 1 --engine "$engine" 2>&1 >/dev/null | grep '^summary: source' | sed "s/^/$engine: /"
  done
  "$py" benches/python/ort_loop.py "$weights/mobilenet_v2_1.0_224.onnx" "$frames"
} | tee "$out/end-to-end.txt"
