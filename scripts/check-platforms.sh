#!/usr/bin/env bash
# Type-checks the module, its spawner, the helper, chkpwd and the server for macOS (Intel and
# Apple silicon) and FreeBSD, from a stock Debian machine: Debian's
# rustc-web builds the target's std from its rust-web-src sources
# (-Zbuild-std, allowed by RUSTC_BOOTSTRAP), and clang compiles ring's C
# for the target. No SDK is needed because nothing is linked. This proves
# the code compiles there; it does not run it (docs/guide/macos.md, docs/guide/freebsd.md).
#
# Usage: scripts/check-platforms.sh [TARGET...]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd)

# Debian's toolchain, not rustup's: only it ships the std sources.
export RUSTC=/usr/bin/rustc
cargo=/usr/bin/cargo
for tool in "$RUSTC" "$cargo" clang llvm-ar; do
  command -v "$tool" >/dev/null || { echo "check-platforms: $tool missing; run scripts/deps.sh" >&2; exit 1; }
done
[ -d /usr/lib/rustlib/src/rust/library ] || { echo "check-platforms: rust-web-src missing; run scripts/deps.sh" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1
# Its own target directory: another compiler's artifacts must not mix
# with the workspace build.
export CARGO_TARGET_DIR="${PLATFORMS_TARGET_DIR:-$PWD/target/platforms}"
# Code behind a cfg that Linux never compiles must be as clean as the rest.
export RUSTFLAGS="-D warnings"

started=$SECONDS
for target in "${targets[@]}"; do
  env_target=${target//-/_}
  export "CC_${env_target}=clang" "AR_${env_target}=llvm-ar"
  # ring's build script passes -arch and -mmacosx-version-min, which only
  # clang understands. Its C needs only clang's own freestanding headers
  # (stdint.h, stddef.h), so the host's glibc headers are kept out.
  cflags="--target=${target} -ffreestanding -nostdlibinc -DRING_CORE_NOSTDLIBINC=1"
  case "$target" in
    *-apple-darwin)
      # The one SDK header ring's C includes on Apple targets; it only
      # says which Apple OS this is. The values are the macOS SDK's.
      shim="$CARGO_TARGET_DIR/apple-sdk-shim"
      mkdir -p "$shim"
      cat >"$shim/TargetConditionals.h" <<'EOF2'
#pragma once
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_VISION 0
#define TARGET_OS_SIMULATOR 0
EOF2
      cflags="$cflags -isystem $shim"
      ;;
  esac
  export "CFLAGS_${env_target}=$cflags"
  t0=$SECONDS
  "$cargo" check --locked -q -Zbuild-std=std,panic_unwind --target "$target" \
    -p pam_authtoken -p authtoken-spawn -p authtoken-helper -p authtoken-server --lib --bins --tests
  "$cargo" check --locked -q -Zbuild-std=std,panic_unwind --target "$target" \
    -p authtoken-chkpwd --bins --tests
  echo "check-platforms: $target ok ($((SECONDS - t0)) s)"
done
echo "check-platforms: ${#targets[@]} targets type-checked in $((SECONDS - started)) s"
