#!/usr/bin/env bash
# Builds the trainer's two GPU variants and reports build time and binary size: a slow check
# (each is a release build of burn's GPU backends, 20-40 minutes cold on two cores) kept out of
# CI. It needs no GPU: it checks that both link.
#   bash scripts/gpu-builds.sh [cuda] [wgpu]      (default: both)
# Target dir: $PERCH_GPU_TARGET_DIR (default target/gpu), so the CPU build is not disturbed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback
export CARGO_TARGET_DIR=${PERCH_GPU_TARGET_DIR:-target/gpu}
features=("$@")
[ ${#features[@]} -eq 0 ] && features=(cuda wgpu)
for f in "${features[@]}"; do
  case "$f" in
    cuda) bash scripts/seed-llvm.sh ;;
    wgpu) ;;
    *) echo "gpu-builds.sh: unknown feature '$f' (cuda or wgpu)" >&2; exit 2 ;;
  esac
  start=$(date +%s)
  cargo build --release --locked -p trainer --features "$f"
  secs=$(( $(date +%s) - start ))
  bin=$CARGO_TARGET_DIR/release/trainer
  cp "$bin" "$CARGO_TARGET_DIR/trainer-$f"
  size=$(stat -c %s "$bin")
  echo "== --features $f: built in ${secs}s, $CARGO_TARGET_DIR/trainer-$f is $(( size / 1024 / 1024 )) MiB"
  # The binary runs without a GPU; asking for the device is a clear error, not a crash.
  # (RUST_BACKTRACE unset: anyhow would end the message with a backtrace.)
  if out=$(env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$CARGO_TARGET_DIR/trainer-$f" fit --backbone mobilenetv2 --data /nonexistent --out /tmp/none \
      --device "$f" 2>&1); then
    echo "$out"
  else
    echo "   --device $f here: $(echo "$out" | tail -n 1)"
  fi
done
