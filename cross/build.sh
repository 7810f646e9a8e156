#!/usr/bin/env bash
# Cross-build edge-runtime for a Raspberry Pi without Docker and without rustup targets.
#
#   cross/build.sh TARGET [CARGO_ARGS...]
#     TARGET: aarch64-unknown-linux-gnu (64-bit Raspberry Pi OS) or
#             armv7-unknown-linux-gnueabihf (32-bit Raspberry Pi OS)
#     CARGO_ARGS: passed to cargo, e.g. `--features camera`.
#   PERCH_CROSS_PROFILE=deploy|release|qemu-check (default deploy: the measured deployment profile)
#   PERCH_CROSS_LINKER=zig|gcc (default zig, see below)
#   PERCH_MAX_GLIBC (default 2.31): the build fails when the binary needs a newer glibc.
#
# Result: target/<TARGET>/release/edge-runtime (whatever the profile; it is the path users and
# cross/test-qemu.sh look for).
#
# Why this works: rustup here only has the x86_64 std, but Debian 12 ships a newer rustc
# (`rustc-web`, from bookworm-security) together with a prebuilt std for arm64 and armhf
# (`libstd-rust-web-dev:<arch>`). The rustup cargo drives that rustc for this one build only
# (RUSTC is set in this script's environment, never globally), so the normal x86 builds keep
# using the rustup toolchain. The cross build uses its own CARGO_TARGET_DIR so it never
# invalidates or blocks the x86 build cache.
#
# Which glibc: a binary asks for the newest symbol versions of the glibc it was *linked* against.
# Debian 12's cross gcc links against glibc 2.36, so its binaries need GLIBC_2.34 and do not start
# on Raspberry Pi OS bullseye (glibc 2.31). The default linker is therefore `zig cc` through
# cargo-zigbuild (both from PyPI: `ziglang`, `cargo-zigbuild`, installed with pip if missing) with
# the target `<TARGET>.2.31`: zig links against glibc 2.31 stubs, so the binary runs on bullseye
# (2.31) and bookworm (2.36) alike. zig also compiles the C/assembly parts (tract-linalg's
# kernels). It replaces `-lgcc_s` with its own static LLVM libunwind, so the binary needs no
# libgcc_s.so either. PERCH_CROSS_LINKER=gcc keeps the Debian gcc link (bookworm and later only;
# set PERCH_MAX_GLIBC=2.36 with it). No `-C target-cpu`: one file runs on a Pi 3, 4 and 5
# (tract picks its NEON/dotprod kernels at run time).
#
# Idempotent; installs missing Debian and PyPI packages (needs root the first time).
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:-}
[ $# -gt 0 ] && shift
case "$target" in
  aarch64-unknown-linux-gnu) deb_arch=arm64; gnu=aarch64-linux-gnu; qemu=qemu-aarch64 ;;
  armv7-unknown-linux-gnueabihf) deb_arch=armhf; gnu=arm-linux-gnueabihf; qemu=qemu-arm ;;
  *) echo "usage: cross/build.sh aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf [cargo args]" >&2
     exit 2 ;;
esac
profile=${PERCH_CROSS_PROFILE:-deploy}
linker=${PERCH_CROSS_LINKER:-zig}
case "$linker" in zig|gcc) ;; *) echo "cross/build.sh: PERCH_CROSS_LINKER must be zig or gcc" >&2; exit 2 ;; esac
max_glibc=${PERCH_MAX_GLIBC:-2.31}
# The glibc the zig link targets (cargo-zigbuild's `<target>.<glibc>` suffix).
zig_glibc=${PERCH_ZIG_GLIBC:-2.31}
# Pinned: the versions this script was checked with (PyPI wheels; the zig binary ships inside).
ziglang_pin=0.17.1
zigbuild_pin=0.24.1
# PERCH_CROSS_TARGET_DIR: keep the cross build cache elsewhere (e.g. shared between clones).
cross_dir=${PERCH_CROSS_TARGET_DIR:-$PWD/target/cross-build}
debian_rustc=/usr/bin/rustc
# The std for TARGET: installed by apt into the Debian rustc's own sysroot, or (fallback below)
# unpacked into a private sysroot passed with --sysroot to target crates only.
private_sysroot=$cross_dir/sysroot-$target

log() { echo "cross/build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }
apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2
}
system_std_present() { compgen -G "/usr/lib/rustlib/$target/lib/libstd-*.rlib" >/dev/null; }
# The private copy records its version: a later rustc-web security update needs a new one.
private_std_present() { [ "$(cat "$private_sysroot/version" 2>/dev/null)" = "$rustc_ver" ]; }
target_std_present() { system_std_present || private_std_present; }

# 1. Host tools: Debian's rustc (with its x86_64 std for build scripts), the cross C toolchain
#    (the gcc route's linker and C/assembly compiler; its binutils' objdump for the glibc check;
#    its target glibc for qemu -L), qemu to run the result. The camera feature's V4L2 bindings
#    run bindgen at build time, which loads libclang: installed unless the build opts out of the
#    default features without asking for camera.
host_pkgs=(rustc-web "gcc-$gnu" "libc6-dev-$deb_arch-cross" qemu-user)
case " $* " in
  *camera*) host_pkgs+=(libclang-dev) ;;
  *--no-default-features*) ;;
  *) host_pkgs+=(libclang-dev) ;;
esac
missing=()
for p in "${host_pkgs[@]}"; do [ -n "$(pkg_version "$p")" ] || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root apt-get update >&2 || log "apt-get update reported errors; trying with the indexes it has"
  apt_install "${missing[@]}"
fi
rustc_ver=$(pkg_version rustc-web)

# 2. The target's std, which must be the exact build of the Debian rustc (same package version).
if ! target_std_present; then
  added_arch=""
  if ! dpkg --print-foreign-architectures | grep -qx "$deb_arch"; then
    as_root dpkg --add-architecture "$deb_arch"
    added_arch=$deb_arch
  fi
  as_root apt-get update >&2 || log "apt-get update reported errors (see above)"
  candidate=$(apt-cache policy "libstd-rust-web-dev:$deb_arch" | awk '/Candidate:/ {print $2}')
  if [ "$candidate" = "$rustc_ver" ]; then
    apt_install "libstd-rust-web-dev:$deb_arch=$rustc_ver"
  else
    # The $deb_arch index could not be fetched in the version matching rustc-web (seen with a
    # mirror serving a bookworm-security armhf index that does not match its InRelease: apt then
    # ignores the whole security suite, for every architecture). Undo the architecture so apt
    # keeps working for everyone, and unpack the .deb from the same pool directory as the
    # rustc-web package apt verified.
    log "apt offers libstd-rust-web-dev:$deb_arch '$candidate', need '$rustc_ver'; fetching the .deb directly"
    if [ -n "$added_arch" ]; then
      as_root dpkg --remove-architecture "$added_arch"
      as_root apt-get update >&2 || true
    fi
    uri=$(apt-get --print-uris download "rustc-web=$rustc_ver" | awk '{print $1}' | tr -d "'")
    [ -n "$uri" ] || die "cannot locate rustc-web $rustc_ver in the apt sources"
    deb_uri=${uri/\/rustc-web_/\/libstd-rust-web-dev_}
    deb_uri=${deb_uri%_*.deb}_$deb_arch.deb
    mkdir -p "$cross_dir"
    curl -fsSL -o "$cross_dir/libstd-$deb_arch.deb" "$deb_uri" || die "download failed: $deb_uri"
    got=$(dpkg-deb -f "$cross_dir/libstd-$deb_arch.deb" Package Version Architecture | tr '\n' ' ')
    [ "$got" = "Package: libstd-rust-web-dev Version: $rustc_ver Architecture: $deb_arch " ] ||
      die "$deb_uri is not libstd-rust-web-dev $rustc_ver for $deb_arch ($got)"
    rm -rf "$private_sysroot"
    dpkg-deb -x "$cross_dir/libstd-$deb_arch.deb" "$private_sysroot"
    echo "$rustc_ver" > "$private_sysroot/version"
  fi
  target_std_present || die "no std for $target after installing libstd-rust-web-dev:$deb_arch"
fi

# 3. zig and cargo-zigbuild (zig route): PyPI wheels, for the python3 on PATH.
if [ "$linker" = zig ]; then
  python=$(command -v python3) || die "python3 is needed for the zig linker (PERCH_CROSS_LINKER=gcc avoids it)"
  scripts=$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  zigbuild=$scripts/cargo-zigbuild
  if ! "$python" -m ziglang version >/dev/null 2>&1 || ! [ -x "$zigbuild" ]; then
    log "installing ziglang $ziglang_pin and cargo-zigbuild $zigbuild_pin from PyPI"
    "$python" -m pip install --quiet --disable-pip-version-check \
      "ziglang==$ziglang_pin" "cargo-zigbuild==$zigbuild_pin" >&2
  fi
  [ -x "$zigbuild" ] || die "cargo-zigbuild not found at $zigbuild after pip install"
  # cargo-zigbuild runs zig as `python3 -m ziglang`: the same interpreter pip installed it for.
  export CARGO_ZIGBUILD_PYTHON_PATH=$python
fi

# 4. Build. Everything target-specific is an environment variable scoped to this process.
triple_env=$(echo "$target" | tr 'a-z-' 'A-Z_')
export RUSTC=$debian_rustc
export CARGO_TARGET_DIR=$cross_dir
export CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback
export "CARGO_TARGET_${triple_env}_RUNNER=$qemu -L /usr/$gnu"
if [ "$linker" = gcc ]; then
  export "CARGO_TARGET_${triple_env}_LINKER=$gnu-gcc"
  export "CC_${target//-/_}=$gnu-gcc" "AR_${target//-/_}=$gnu-ar"
  # bindgen (camera feature) parses the target's linux/videodev2.h from the cross sysroot.
  export "BINDGEN_EXTRA_CLANG_ARGS_${target//-/_}=--sysroot=/usr/$gnu"
fi
# (zig route: cargo-zigbuild sets the linker, CC and bindgen's include paths to zig's own glibc
# 2.31 and Linux headers; setting them here would override it.)
if ! system_std_present; then
  export "CARGO_TARGET_${triple_env}_RUSTFLAGS=--sysroot=$private_sysroot/usr"
fi
log "building edge-runtime for $target (profile $profile, linker $linker, $($RUSTC -V))"
build_start=$(date +%s)
if [ "$linker" = zig ]; then
  "$zigbuild" zigbuild --locked -p edge-runtime --bin edge-runtime --target "$target.$zig_glibc" --profile "$profile" "$@"
else
  cargo build --locked -p edge-runtime --bin edge-runtime --target "$target" --profile "$profile" "$@"
fi
log "cargo finished in $(( $(date +%s) - build_start )) s"
built=$cross_dir/$target/$profile/edge-runtime

# 5. The oldest OS it starts on: the newest GLIBC_x.y symbol version the binary references.
#    Raspberry Pi OS bullseye has glibc 2.31, bookworm 2.36.
need=$("$gnu-objdump" -T "$built" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -n 1)
log "needs ${need:-no versioned glibc symbols} (at most GLIBC_$max_glibc allowed): $("$gnu-objdump" -T "$built" | grep -wF "${need:-none}" | head -n 1 | tr -s ' ')"
if [ -n "$need" ] && [ "$(printf '%s\n' "${need#GLIBC_}" "$max_glibc" | sort -V | tail -n 1)" != "$max_glibc" ]; then
  die "$built needs $need > GLIBC_$max_glibc: it would not start on Raspberry Pi OS bullseye (see the linker notes at the top of this script)"
fi

out=target/$target/release
mkdir -p "$out"
# Copy to a temporary name and rename, so a reader never sees a half-written binary.
cp "$built" "$out/.edge-runtime.tmp"
mv -f "$out/.edge-runtime.tmp" "$out/edge-runtime"
log "built $out/edge-runtime ($(stat -c %s "$out/edge-runtime") bytes)"
