#!/usr/bin/env bash
# Build and check the device binaries for every current Raspberry Pi OS: 64-bit (aarch64: Pi 3,
# 4, 5, Zero 2 W) and 32-bit (armv7: Pi 2, 3, 4, Zero 2 W). For each: cross/build.sh (fails when
# the binary needs a glibc newer than 2.31, i.e. would not start on bullseye), then
# cross/test-qemu.sh (top-5 agreement with the x86 binary on real photos under qemu). Ends with a
# table of sizes, glibc requirement and qemu result.
#
#   bash cross/check-all.sh [TARGET...]        (default: both targets)
#   PERCH_CROSS_PROFILE (default deploy here: the files you would copy to a Pi)
#
# CI runs only the aarch64 half (.ci/run: two cores, and a second cold cross build of
# edge-runtime would not fit its time); run this before a release or after changing the
# dependencies, the build scripts or anything target-specific. Cold, on two shared cores, each
# target takes roughly 20-30 minutes to build plus about 3 minutes under qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback
export PERCH_CROSS_PROFILE=${PERCH_CROSS_PROFILE:-deploy}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
failed=0
for target in "${targets[@]}"; do
  case "$target" in
    aarch64-unknown-linux-gnu) gnu=aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) gnu=arm-linux-gnueabihf ;;
    *) echo "cross/check-all.sh: unknown target $target" >&2; exit 2 ;;
  esac
  echo "== $target ($PERCH_CROSS_PROFILE)"
  start=$(date +%s)
  log=$(mktemp)
  # test-qemu.sh builds first (cross/build.sh, glibc check included), then compares under qemu.
  if bash cross/test-qemu.sh "$target" 2>&1 | tee "$log"; then result=ok; else result=FAILED; failed=1; fi
  bin=target/$target/release/edge-runtime
  size=$( [ -f "$bin" ] && stat -c %s "$bin" || echo "-")
  glibc=$( [ -f "$bin" ] && "$gnu-objdump" -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -n 1 || echo "-")
  qemu_line=$(grep -o 'cross: [0-9]* passed, [0-9]* failed.*' "$log" | tail -n 1 || true)
  printf '| %s | %s B | %s | %s | %s s |\n' "$target" "$size" "${glibc:--}" "${qemu_line:-$result}" \
    "$(( $(date +%s) - start ))" >> "$summary"
  rm -f "$log"
done
echo
echo "| target | size ($PERCH_CROSS_PROFILE) | newest glibc symbol | qemu vs x86 | time |"
echo "| --- | ---: | --- | --- | ---: |"
cat "$summary"
exit $failed
