#!/usr/bin/env bash
# Build Bochs 3.0 with VMX (EPT, VPID, VMCS shadowing) from Debian's source tarball, once.
# bookworm's bochs 2.7 cannot boot Linux 7.3, and trixie's binary drags trixie's libc in.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

prefix=$(bochs_prefix)
if [ -x "$prefix/bin/bochs" ]; then echo "$prefix/bin/bochs"; exit 0; fi

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$work"
log "fetching the Bochs 3.0 source from Debian (deb-src trixie)"
# The .dsc may be missing from the mirror; the orig tarball is all we need.
apt-get source -q --download-only bochs/trixie >&2 || true
tarball=$(ls bochs_3.0*.orig.tar.* 2>/dev/null | head -n1)
[ -n "$tarball" ] || { log "no bochs 3.0 orig tarball from deb-src trixie"; exit 1; }
tar -xf "$tarball"
cd "$(find . -maxdepth 1 -type d -name 'bochs*' | head -n1)"
# Fixes of Bochs' emulation that nvmx's tests ran into (scripts/bochs/*.patch, each says why).
for p in "$NVMX_ROOT"/scripts/bochs/*.patch; do
    log "patching Bochs: $(basename "$p")"
    patch -s -p1 < "$p" >&2
done
log "configuring and building Bochs (about 2 minutes)"
./configure -q --prefix="$prefix" --with-nogui --enable-x86-64 --enable-vmx=2 --enable-smp \
    --enable-cpu-level=6 --enable-avx --enable-evex --enable-pci --enable-all-optimizations >&2
make -s -j"$(nproc)" >&2
make -s install >&2
echo "$prefix/bin/bochs"
