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
models=(--model "$weights/mobilenet_v2_1.0_224.onnx" --model "$weights/efficientnet_lite0.onnx"
        --preset mobilenetv2 --preset efficientnet-lite0 --labels "$weights/imagenet_labels.txt")
files=("$weights/mobilenet_v2_1.0_224.onnx" "$weights/efficientnet_lite0.onnx")
exports=()
for f in ${PERCH_BENCH_EXPORTS:-}; do exports+=(--model "$f"); files+=("$f"); done
echo "== bench: tract and ort, 1 and 2 threads ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
bench=(--engine tract,ort --threads 1,2 --image "$frames/000.jpg")
"$bin" bench "${models[@]}" "${bench[@]}" --json "$frames/reference.json" --markdown /dev/null
reports=("$frames/reference.json")
if [ ${#exports[@]} -gt 0 ]; then
  "$bin" bench "${exports[@]}" "${bench[@]}" --json "$frames/exports.json" --markdown /dev/null
  reports+=("$frames/exports.json")
fi
"$bin" bench report "${reports[@]}" --json "$out/report.json" --markdown "$out/report.md" --plot "$out/latency.png"
echo "== onnxruntime's own Python latency, 1 thread"
"$py" benches/python/ort_latency.py "${files[@]}" | tee "$out/python-ort-latency.jsonl"
# The wrapper's overhead: perch --engine ort and Python onnxruntime alternately, 3 rounds per
# file (this VM's speed drifts by 20-30 % within minutes), median p50 of each.
echo "== perch --engine ort vs Python onnxruntime, 1 thread, 3 alternating rounds"
for f in "${files[@]}"; do
  preset=(); case "$f" in
    */mobilenet_v2_1.0_224.onnx) preset=(--preset mobilenetv2 --labels "$weights/imagenet_labels.txt") ;;
    */efficientnet_lite0.onnx) preset=(--preset efficientnet-lite0 --labels "$weights/imagenet_labels.txt") ;;
  esac
  for round in 1 2 3; do
    "$bin" bench --model "$f" "${preset[@]}" --engine ort --threads 1 --json "$frames/ab.json" --markdown /dev/null 2>/dev/null
    "$py" -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print(json.dumps({'model': r['model'], 'who': 'perch', 'p50_ms': r['p50_ms']}))" "$frames/ab.json"
    "$py" benches/python/ort_latency.py "$f" | "$py" -c "import json,sys; r=json.loads(sys.stdin.read()); print(json.dumps({'model': r['model'], 'who': 'python', 'p50_ms': r['p50_ms']}))"
  done
done >"$frames/ab.jsonl"
"$py" - "$frames/ab.jsonl" <<'PY' | tee "$out/ort-overhead.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| model | perch --engine ort p50 (median of 3) | Python onnxruntime p50 (median of 3) | perch / Python |")
print("| --- | ---: | ---: | ---: |")
for m in dict.fromkeys(r["model"] for r in rows):
    p = statistics.median(r["p50_ms"] for r in rows if r["model"] == m and r["who"] == "perch")
    q = statistics.median(r["p50_ms"] for r in rows if r["model"] == m and r["who"] == "python")
    print(f"| {m} | {p:.2f} ms | {q:.2f} ms | {p / q:.2f} |")
PY
echo "== end to end over 150 640x480 JPEGs"
{
  for threads in 1 2; do
    for engine in tract ort; do
      "$bin" run --source "dir:$frames" --model "$weights/mobilenet_v2_1.0_224.onnx" --preset mobilenetv2 \
        --labels "$weights/imagenet_labels.txt" --emit jsonl --threads "$threads" --engine "$engine" 2>&1 >/dev/null |
        grep '^summary: source' | sed "s/^/$engine, --threads $threads: /"
    done
    "$py" benches/python/ort_loop.py "$weights/mobilenet_v2_1.0_224.onnx" "$frames" --threads "$threads"
  done
} | tee "$out/end-to-end.txt"
