#!/usr/bin/env bash
# CI step: cross-build edge-runtime for a Raspberry Pi target, run it under qemu on the reference
# MobileNetV2 and real photos, and check it agrees with the x86 build (same top-5 classes, scores
# within 1e-4).
#
#   bash cross/test-qemu.sh [TARGET]
#   TARGET: aarch64-unknown-linux-gnu (default, CI) or armv7-unknown-linux-gnueabihf
#   (cross/check-all.sh runs both).
#   PERCH_SHARED (default ../shared): weights and datasets.
#   PERCH_CROSS_PROFILE (default qemu-check here, see Cargo.toml: the deploy profile's fat LTO and
#   full optimisation cost CI minutes and do not change what is checked: aarch64 codegen and kernels).
#
# Idempotent; on a fresh Debian 12 machine it installs the Debian packages it needs (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback
target=${1:-aarch64-unknown-linux-gnu}
case "$target" in
  aarch64-unknown-linux-gnu) qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu) ;;
  armv7-unknown-linux-gnueabihf) qemu=(qemu-arm -L /usr/arm-linux-gnueabihf) ;;
  *) echo "usage: cross/test-qemu.sh [aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf]" >&2; exit 2 ;;
esac
shared=${PERCH_SHARED:-../shared}
model=$shared/weights/mobilenet_v2_1.0_224.onnx
labels=$shared/weights/imagenet_labels.txt
for f in "$model" "$labels"; do
  [ -f "$f" ] || { echo "cross/test-qemu.sh: missing $f (set PERCH_SHARED to the shared folder)" >&2; exit 1; }
done

PERCH_CROSS_PROFILE=${PERCH_CROSS_PROFILE:-qemu-check} bash cross/build.sh "$target"
arm_bin=target/$target/release/edge-runtime
file "$arm_bin" 2>/dev/null || true

# The x86 reference: the dev-profile binary, whose dependencies the unit-test step already built
# (--workspace: the same feature unification as the test build, so nothing is rebuilt).
cargo build --locked --workspace --bin edge-runtime
x86_bin=${CARGO_TARGET_DIR:-target}/debug/edge-runtime

# A few real photos: the first two of each class in hymenoptera/val and the committed cat
# photo. Few, because qemu emulates NEON slowly: about 35-40 s per MobileNetV2 image on one
# thread (timings under qemu say nothing about a device's speed).
photos=()
for class_dir in "$shared"/datasets/hymenoptera/val/*/; do
  while IFS= read -r p; do photos+=("$p"); done < <(find "$class_dir" -maxdepth 1 -type f | sort | head -n 2)
done
[ -f tests/fixtures/photos/chelsea.png ] && photos+=(tests/fixtures/photos/chelsea.png)
[ ${#photos[@]} -gt 0 ] || { echo "cross/test-qemu.sh: no photos found under $shared/datasets/hymenoptera/val" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(classify --model "$model" --preset mobilenetv2 --labels "$labels" --top-k 5 --json "${photos[@]}")
"$x86_bin" "${args[@]}" > "$out/x86.json"
# One thread: rayon's spinning worker threads made a two-thread run take over 10 minutes for one
# image under qemu.
qemu_start=$(date +%s)
"${qemu[@]}" "$arm_bin" "${args[@]}" > "$out/$target.json"
echo "cross/test-qemu.sh: $target: ${#photos[@]} photos under ${qemu[0]} in $(( $(date +%s) - qemu_start )) s"
python3 cross/compare.py "$out/x86.json" "$out/$target.json" --top 5 --tol 1e-4
