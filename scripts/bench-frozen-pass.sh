#!/usr/bin/env bash
# Epoch-1 images/s of `trainer fit` (the frozen backbone pass + the first head epoch) for every
# backbone x --frozen-engine, on hymenoptera (244 train + 153 val images). Writes
# docs/bench/frozen-pass/epoch1.txt. The ort rows need libonnxruntime (ORT_DYLIB_PATH, or the
# checks' venv: tests/python/venv.sh installs it).
#   bash scripts/bench-frozen-pass.sh [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback
data=${1:-../shared/datasets/hymenoptera}
export PERCH_WEIGHTS=${PERCH_WEIGHTS:-../shared/weights}
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(bash tests/python/venv.sh)}
cargo build --locked --workspace --bin trainer
trainer=${CARGO_TARGET_DIR:-target}/debug/trainer
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=docs/bench/frozen-pass/epoch1.txt
: > "$out.tmp"
for b in mobilenetv2 efficientnet-lite0 efficientnet-b0; do
  for e in burn tract ort auto; do
    # A fresh run folder and cache each time: every feature is computed.
    "$trainer" fit --backbone "$b" --data "$data" --out "$work/$b-$e" --frozen-engine "$e" >"$work/$b-$e.log" 2>&1
    python3 - "$work/$b-$e" "$b" "$e" >>"$out.tmp" <<'PY'
import json, sys
run, b, e = sys.argv[1:]
h = json.load(open(f"{run}/history.json"))
r = json.load(open(f"{run}/run.json"))
print(f"{b} {e} epoch1 {h[0]['seconds']:.2f}s {h[0]['images_per_s']:.1f} img/s val {r['val_accuracy']:.4f} engine {r.get('frozen_engine')}")
PY
    grep -h "frozen pass" "$work/$b-$e.log" | sed 's/.*frozen pass/  frozen pass/' >>"$out.tmp" || true
  done
done
mv "$out.tmp" "$out"
cat "$out"
