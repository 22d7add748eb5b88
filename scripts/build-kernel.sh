#!/usr/bin/env bash
# Build (once) the Rust-enabled Linux 7.3 tree nvmx is built against and booted in the test VMs.
# The tree is cached outside the clone under $NVMX_CACHE/<key>/linux; a finished build leaves
# a .nvmx-built stamp so warm runs return at once.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

dir=$(kernel_dir)
if [ -e "$dir/.nvmx-built" ]; then echo "$dir"; exit 0; fi

log "building kernel in $dir (cold: about 10-15 minutes on 2 cores)"
rm -rf "$dir"; mkdir -p "$dir"
tar -xf "$KERNEL_TARBALL" -C "$dir" --strip-components=1
cd "$dir"
make "${KMAKE_FLAGS[@]}" tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m .config "$KERNEL_FRAGMENT" >/dev/null
make "${KMAKE_FLAGS[@]}" olddefconfig >/dev/null
make "${KMAKE_FLAGS[@]}" rustavailable >&2
# Every line of the fragment must have survived olddefconfig, or the key lies about the tree.
missing=0
while IFS= read -r line; do
    case "$line" in CONFIG_*=*) grep -qx "$line" .config || { log "config: $line did not stick"; missing=1; } ;; esac
done < "$KERNEL_FRAGMENT"
[ "$missing" = 0 ] || exit 1
make "${KMAKE_FLAGS[@]}" -j"$(( $(nproc) + 1 ))" bzImage modules >&2
make "${KMAKE_FLAGS[@]}" headers >/dev/null
touch .nvmx-built
echo "$dir"
