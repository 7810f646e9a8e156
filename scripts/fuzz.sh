#!/usr/bin/env bash
# Fuzzes every loader of user or camera bytes (fuzz/src/targets.rs) for SECONDS each
# (default 60): the regressions and the seed corpus are replayed first, then mutants run until
# the time is up. Exits 1 when any target crashed (panic, abort, hang): the inputs are in
# fuzz/crashes/TARGET/; fix the loader, then move the input to fuzz/regressions/TARGET/.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# Environment: PERCH_FUZZ_PROFILE (cargo profile; default dev, whose dependencies are built
# with opt-level 3, like the tests), PERCH_FUZZ_SEED (mutator seed; default from the clock),
# PERCH_FUZZ_MEM_MB (address-space limit per target, default 8192: a loader that tries to
# allocate without bound fails here instead of swapping), PERCH_FUZZ_LOG (a file that gets the
# one-line result of each target appended).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds=${1:-60}
shift || true
profile=${PERCH_FUZZ_PROFILE:-dev}
export CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=${CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS:-fallback}
cargo build --quiet --locked -p perch-fuzz --profile "$profile" || exit 1
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/$([ "$profile" = dev ] && echo debug || echo "$profile")/perch-fuzz"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <("$bin" list | awk '{print $1}')
seed_args=()
[ -n "${PERCH_FUZZ_SEED:-}" ] && seed_args=(--seed "$PERCH_FUZZ_SEED")

scratch=$( [ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")
status=0
for t in "${targets[@]}"; do
  current=$(mktemp "$scratch/perch-fuzz-$t.XXXXXX")
  # A process that dies (abort, out of memory) or hangs leaves its input in $current.
  out=$( (ulimit -v $(( ${PERCH_FUZZ_MEM_MB:-8192} * 1024 )); timeout -k 10 $(( seconds + 120 )) "$bin" "$t" --seconds "$seconds" --current "$current" "${seed_args[@]}") )
  rc=$?
  echo "$out"
  [ -n "${PERCH_FUZZ_LOG:-}" ] && echo "$out" >>"$PERCH_FUZZ_LOG"
  if [ $rc -ne 0 ]; then
    status=1
    if [ $rc -ge 124 ] && [ -f "$current" ]; then
      kind=$([ $rc -eq 124 ] || [ $rc -eq 137 ] && echo hang || echo abort)
      keep=fuzz/crashes/$t/$kind-$(sha256sum "$current" | cut -c1-16).bin
      mkdir -p "fuzz/crashes/$t"
      cp "$current" "$keep"
      echo "CRASH in $t: the process ended with status $rc ($kind); input saved to $keep"
      [ -n "${PERCH_FUZZ_LOG:-}" ] && echo "fuzz $t: $kind (status $rc), input $keep" >>"$PERCH_FUZZ_LOG"
    fi
  fi
  rm -f "$current"
done
exit $status
