# Shared paths and helpers for the build scripts. Sourced, not run.
NVMX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NVMX_CACHE=${NVMX_CACHE:-$HOME/.cache/nvmx}
KERNEL_TARBALL=/usr/src/linux-source-7.3.tar.xz
KERNEL_FRAGMENT=$NVMX_ROOT/scripts/kernel/nvmx.config
# Kernel tools: Debian's rustc (it has the Rust sources the kernel needs) and clang-19.
KMAKE_FLAGS=(LLVM=-19 RUSTC=/usr/bin/rustc BINDGEN="$NVMX_CACHE/bin/bindgen")
export LIBCLANG_PATH=/usr/lib/llvm-19/lib

# The cached kernel tree is keyed by the linux-source package version and the fragment's hash.
kernel_key() {
    local ver
    ver=$(dpkg-query -W -f='${Version}' linux-source-7.3 2>/dev/null || echo unknown)
    echo "linux-$ver-$( (cat "$KERNEL_FRAGMENT"; cat "$NVMX_ROOT/scripts/build-kernel.sh") | sha256sum | cut -c1-12)"
}
kernel_dir() { echo "$NVMX_CACHE/$(kernel_key)/linux"; }
# Bochs is built once per set of patches (scripts/bochs/*.patch).
bochs_prefix() {
    echo "$NVMX_CACHE/bochs-3.0-$( (cat "$NVMX_ROOT"/scripts/bochs/*.patch; cat "$NVMX_ROOT/scripts/build-bochs.sh") | sha256sum | cut -c1-12)"
}

log() { printf '==> %s\n' "$*" >&2; }

# The test paths of a selftest list (selftests/*.list): a line is a path, optionally followed
# by the test's arguments; comments and blank lines are skipped.
list_tests() { grep -v -e '^#' -e '^$' "$NVMX_ROOT/selftests/$1" | cut -d' ' -f1; }

# Everything the test machines need, built or taken from the cache: host packages and bindgen,
# the kernel, Bochs, nvmx.ko and the selftests.
build_all() {
    "$NVMX_ROOT/scripts/setup-host.sh"
    "$NVMX_ROOT/scripts/build-kernel.sh" >/dev/null
    "$NVMX_ROOT/scripts/build-bochs.sh" >/dev/null
    make -s -C "$NVMX_ROOT" module
    "$NVMX_ROOT/scripts/build-selftests.sh"
    "$NVMX_ROOT/scripts/build-status-tool.sh"
}
