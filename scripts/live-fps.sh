#!/usr/bin/env bash
# fps of `edge-runtime run --http` with and without a browser showing the live page: the same
# inference-bound run (the fixture photos as a looping dir: source, MobileNetV2, one thread) twice per
# condition, alternating; a headless Chromium keeps the page open (it polls /api/status twice a
# second and loads each new /api/frame.jpg) during the "page open" runs.
#
#   bash scripts/live-fps.sh [FRAMES]      (default 300; needs chromium and ../shared/weights)
set -euo pipefail
cd "$(dirname "$0")/.."
frames=${1:-300}
weights=${PERCH_WEIGHTS:-../shared/weights}
bin=target/release/edge-runtime
[ -x "$bin" ] || bin=target/debug/edge-runtime
[ -x "$bin" ] || { echo "build edge-runtime first: cargo build --release -p edge-runtime" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

one_run() { # $1 = none|page
  local browser=""
  "$bin" run --source dir:tests/fixtures/photos --loop --frames "$frames" --model "$weights/mobilenet_v2_1.0_224.onnx" \
    --preset mobilenetv2 --labels "$weights/imagenet_labels.txt" --http "127.0.0.1:$port" --emit jsonl \
    >/dev/null 2>"$tmp/err" &
  local pid=$!
  if [ "$1" = page ]; then
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$tmp/profile" "http://127.0.0.1:$port/" >/dev/null 2>&1 &
    browser=$!
  fi
  wait "$pid"
  [ -n "$browser" ] && kill "$browser" 2>/dev/null && wait "$browser" 2>/dev/null || true
  grep -o '[0-9.]* fps' "$tmp/err" | head -n 1 | cut -d' ' -f1
}

echo "| condition | run 1 fps | run 2 fps |"
echo "| --- | ---: | ---: |"
a1=$(one_run none); b1=$(one_run page); a2=$(one_run none); b2=$(one_run page)
echo "| no page open | $a1 | $a2 |"
echo "| page open in Chromium | $b1 | $b2 |"
