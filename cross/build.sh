#!/usr/bin/env bash
# Cross-build edge-runtime for a Raspberry Pi without Docker and without rustup targets.
#
#   cross/build.sh TARGET [CARGO_ARGS...]
#     TARGET: aarch64-unknown-linux-gnu (64-bit Raspberry Pi OS) or
#             armv7-unknown-linux-gnueabihf (32-bit Raspberry Pi OS)
#     CARGO_ARGS: passed to cargo, e.g. `--features camera`.
#   PERCH_CROSS_PROFILE=deploy|release|qemu-check (default deploy: the measured deployment profile)
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
# Idempotent; installs missing Debian packages with apt-get (needs root the first time).
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
#    (linker, and C/assembly compiler for tract-linalg's kernels), qemu to run the result.
host_pkgs=(rustc-web "gcc-$gnu" "libc6-dev-$deb_arch-cross" qemu-user)
# The camera feature's V4L2 bindings run bindgen at build time: it loads libclang.
case " $* " in *camera*) host_pkgs+=(libclang-dev) ;; esac
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

# 3. Build. Everything target-specific is an environment variable scoped to this process.
triple_env=$(echo "$target" | tr 'a-z-' 'A-Z_')
export RUSTC=$debian_rustc
export CARGO_TARGET_DIR=$cross_dir
export CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback
export "CARGO_TARGET_${triple_env}_LINKER=$gnu-gcc"
export "CARGO_TARGET_${triple_env}_RUNNER=$qemu -L /usr/$gnu"
export "CC_${target//-/_}=$gnu-gcc" "AR_${target//-/_}=$gnu-ar"
# bindgen (camera feature) parses the target's linux/videodev2.h from the cross sysroot.
export "BINDGEN_EXTRA_CLANG_ARGS_${target//-/_}=--sysroot=/usr/$gnu"
if ! system_std_present; then
  export "CARGO_TARGET_${triple_env}_RUSTFLAGS=--sysroot=$private_sysroot/usr"
fi
log "building edge-runtime for $target (profile $profile, $($RUSTC -V))"
cargo build --locked -p edge-runtime --bin edge-runtime --target "$target" --profile "$profile" "$@"

out=target/$target/release
mkdir -p "$out"
# Copy to a temporary name and rename, so a reader never sees a half-written binary.
cp "$cross_dir/$target/$profile/edge-runtime" "$out/.edge-runtime.tmp"
mv -f "$out/.edge-runtime.tmp" "$out/edge-runtime"
log "built $out/edge-runtime ($(stat -c %s "$out/edge-runtime") bytes)"
