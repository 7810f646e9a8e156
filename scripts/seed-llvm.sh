#!/usr/bin/env bash
# Seeds the LLVM that `cargo build -p trainer --features cuda` links, so the cuda build needs
# no download from GitHub at build time:
#   bash scripts/seed-llvm.sh && cargo build --release -p trainer --features cuda
#
# Why: burn-cuda -> cubecl-cuda -> cubecl-llvm links a static LLVM 23 (with NVPTX) through the
# build script of `tracel-llvm-bundler` 23.1.0-4, which downloads a bundle from GitHub unless
# its install folder already holds the sentinel file
#   ${XDG_DATA_HOME:-~/.local/share}/tracel/tracel-llvm-23.1.0-4/.tracel-llvm-installed
# The PyPI wheels mlc-llvm-static + mlc-llvm-static-extra-targets (23.1.1.post0) hold a
# matching LLVM (static libraries, headers, NVPTX and the other targets, and an `llvm-config`)
# under mlc_llvm_static/static/. This script installs that tree there and writes the sentinel.
#
# Needs: python3 with pip (PyPI, or a pip index/--find-links mirror through pip's own
# settings), and the development links of zlib and zstd that LLVM's `--system-libs` name
# (Debian: zlib1g-dev libzstd-dev; installed here when apt-get is there and we are root).
# Idempotent: a complete install is left alone (pass --force to redo it). Linux x86-64 and
# aarch64 only (the platforms both the wheels and the bundler support).
set -euo pipefail

version=23.1.1.post0
bundle=tracel-llvm-23.1.0-4
data_home=${XDG_DATA_HOME:-$HOME/.local/share}
dest=$data_home/tracel/$bundle
sentinel=$dest/.tracel-llvm-installed
force=0
[ "${1:-}" = "--force" ] && force=1

if [ "$force" = 0 ] && [ -f "$sentinel" ] && [ -x "$dest/bin/llvm-config" ]; then
  echo "LLVM already seeded: $dest ($("$dest/bin/llvm-config" --version))"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64 | Linux-aarch64) ;;
  *) echo "seed-llvm.sh: $(uname -s) $(uname -m) is not supported (Linux x86-64 or aarch64)" >&2; exit 1 ;;
esac

# LLVM's --system-libs: -lz -lzstd need the .so development links at link time.
need=()
[ -e /usr/include/zstd.h ] || need+=(libzstd-dev)
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y --no-install-recommends "${need[@]}"
  else
    echo "seed-llvm.sh: install ${need[*]} first (LLVM links -lz -lzstd)" >&2
    exit 1
  fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/seed-llvm.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "installing mlc-llvm-static $version (+ extra targets) from PyPI into a temporary folder"
python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$work/py" \
  "mlc-llvm-static==$version" "mlc-llvm-static-extra-targets==$version"
src=$work/py/mlc_llvm_static/static
if [ ! -x "$src/bin/llvm-config" ]; then
  echo "seed-llvm.sh: the wheels have no mlc_llvm_static/static/bin/llvm-config" >&2
  exit 1
fi

# Built beside the destination and renamed into place, so an interrupted run never leaves a
# half-filled folder with a sentinel in it.
mkdir -p "$data_home/tracel"
stage=$(mktemp -d "$data_home/tracel/.$bundle.XXXXXX")
cp -a "$src/." "$stage/"
got=$("$stage/bin/llvm-config" --version)
targets=$("$stage/bin/llvm-config" --targets-built)
case "$got" in 23.*) ;; *) echo "seed-llvm.sh: llvm-config says $got, expected LLVM 23" >&2; rm -rf "$stage"; exit 1 ;; esac
case " $targets " in *" NVPTX "*) ;; *) echo "seed-llvm.sh: this LLVM lacks NVPTX ($targets)" >&2; rm -rf "$stage"; exit 1 ;; esac
# llvm-config reports paths from its own location, so the tree can move.
touch "$stage/.tracel-llvm-installed"
rm -rf "$dest"
mv "$stage" "$dest"
echo "LLVM $got seeded in $dest (targets: $targets)"
echo "now: cargo build --release -p trainer --features cuda"
