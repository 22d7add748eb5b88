#!/usr/bin/env bash
# Build the in-VM selftests statically against the cached tree's uapi headers and its
# kselftest harness (tools/testing/selftests/kselftest_harness.h).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
kdir=$(kernel_dir)
out=$NVMX_ROOT/build/selftests
mkdir -p "$out"
for src in "$NVMX_ROOT"/selftests/*_test.c; do
    bin=$out/$(basename "$src" .c)
    gcc -static -O2 -g0 -Wall -Werror -D_GNU_SOURCE \
        -isystem "$kdir/usr/include" -I "$kdir/tools/testing/selftests" \
        -I "$NVMX_ROOT/include/uapi" -I "$NVMX_ROOT/selftests" \
        -o "$bin" "$src" -lpthread
done
# The test machine's console helper (see vm/init).
gcc -static -O2 -Wall -Werror -o "$NVMX_ROOT/build/console_drain" "$NVMX_ROOT/vm/console_drain.c"

