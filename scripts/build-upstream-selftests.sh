#!/usr/bin/env bash
# Build the upstream KVM selftests named in selftests/upstream.list, statically, from the
# cached kernel tree (never vendored). Output: build/upstream/<name>.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
kdir=$(kernel_dir)
# NVMX_UPSTREAM_ALL=1: every x86 and common test of the tree (make upstream-report), into
# build/upstream-all; otherwise the list in selftests/upstream.list, into build/upstream.
if [ "${NVMX_UPSTREAM_ALL:-0}" = 1 ]; then
    out=$NVMX_ROOT/build/upstream-all
    nvmx_out=
    list=$(sed -n 's/^TEST_GEN_PROGS_\(COMMON\|x86\) *+\?= *\([a-z0-9_/]*\)$/\2/p' \
        "$kdir/tools/testing/selftests/kvm/Makefile.kvm")
else
    out=$NVMX_ROOT/build/upstream
    list=$(list_tests upstream.list)
    # Tests of nvmx-only interfaces (selftests/nvmx-only.list), run against nvmx only.
    nvmx_only=$(list_tests nvmx-only.list)
    # The arguments, by test name, for vm/init (build/upstream-args -> /upstream.args).
    cat "$NVMX_ROOT/selftests/upstream.list" "$NVMX_ROOT/selftests/nvmx-only.list" |
        sed -n 's|^\([^# ]*/\)\?\([^# /]*\) \+\([^#]*[^# ]\).*$|\2 \3|p' > "$NVMX_ROOT/build/upstream-args"
    nvmx_out=$NVMX_ROOT/build/upstream-nvmx
    # The benchmark (make bench; make check runs it once, tiny), into build/bench.
    bench=x86/nvmx_bench
fi
obj=$NVMX_ROOT/build/upstream-obj
# Exactly the listed tests: a test dropped from the list must not linger in the image.
rm -rf "$out" ${nvmx_out:+"$nvmx_out"}
mkdir -p "$out" ${nvmx_out:+"$nvmx_out"} "$obj"
targets=()
for t in $list ${nvmx_only:-} ${bench:-}; do targets+=("$obj/$t"); done
[ ${#targets[@]} -gt 0 ] || exit 0
# selftests/upstream-lib adds nvmx's own tests written with the same library (x86/nvmx_*).
make -s -C "$kdir/tools/testing/selftests/kvm" -f "$NVMX_ROOT/selftests/upstream-lib/Makefile" \
    OUTPUT="$obj" EXTRA_CFLAGS=-static \
    -j"$(nproc)" "${targets[@]}" >&2
for t in $list; do cp "$obj/$t" "$out/"; done
for t in ${nvmx_only:-}; do cp "$obj/$t" "$nvmx_out/"; done
if [ -n "${bench:-}" ]; then
    mkdir -p "$NVMX_ROOT/build/bench"
    cp "$obj/$bench" "$NVMX_ROOT/build/bench/"
    strip "$NVMX_ROOT/build/bench/nvmx_bench"
fi
strip "$out"/* ${nvmx_out:+"$nvmx_out"/*}
