#!/usr/bin/env bash
# Build the upstream KVM selftests named in selftests/upstream.list, statically, from the
# cached kernel tree (never vendored). Output: build/upstream/<name>.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
kdir=$(kernel_dir)
out=$NVMX_ROOT/build/upstream
obj=$NVMX_ROOT/build/upstream-obj
# Exactly the listed tests: a test dropped from the list must not linger in the image.
rm -rf "$out"
mkdir -p "$out" "$obj"
targets=()
while read -r t; do
    case "$t" in ''|'#'*) continue ;; esac
    targets+=("$obj/$t")
done < "$NVMX_ROOT/selftests/upstream.list"
[ ${#targets[@]} -gt 0 ] || exit 0
make -s -C "$kdir/tools/testing/selftests/kvm" OUTPUT="$obj" EXTRA_CFLAGS=-static \
    -j"$(nproc)" "${targets[@]}" >&2
cp "${targets[@]}" "$out/"
