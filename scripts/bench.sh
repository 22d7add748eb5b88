#!/usr/bin/env bash
# `make bench`: set everything up, then one Bochs boot runs the benchmark
# (selftests/upstream-lib/x86/nvmx_bench.c) against kvm_intel (enable_apicv=0 nested=1) and
# then against nvmx; scripts/bench_report.py turns it into results.json, results.md and
# ratios.svg under build/bench-results/<date>, copies them to Documentation/bench/ and puts
# the table into README.md. NVMX_BENCH_ARGS: the benchmark's arguments (default
# "-i 1000 -r 7 -p 64": 1,000 exits per sample, 7 repeats, 64 pages per first-touch sample).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
args=${NVMX_BENCH_ARGS:--i 1000 -r 7 -p 64}
build_all
"$NVMX_ROOT/scripts/build-upstream-selftests.sh"
NVMX_EXTRA_CMDLINE="nvmxbench=$(echo $args | tr ' ' ',')" "$NVMX_ROOT/scripts/make-image.sh" bench
out=$NVMX_ROOT/build/bench-results/$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$out/qemu-kvm"
NVMX_BOCHS_MEGS=1024 "$NVMX_ROOT/scripts/run-bochs.sh" bench "$out/bench.serial" "${NVMX_BENCH_TIMEOUT:-2400}"
machine="Bochs 3.0 (2 vCPUs, corei7_skylake_x, TSC = instructions) on $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n1)"
python3 "$NVMX_ROOT/scripts/bench_report.py" "$out/bench.serial" "$out" --machine "$machine" \
    --readme "$NVMX_ROOT/README.md" --publish "$NVMX_ROOT/Documentation/bench"
echo "bench: results in $out (and Documentation/bench/)"
# On an Intel host with nested VMX in /dev/kvm, the same image under QEMU/KVM: absolute figures
# (real TSC cycles), reported on their own and not published.
if [ -w /dev/kvm ] && grep -qw vmx /proc/cpuinfo; then
    NVMX_QEMU_MEGS=1024 NVMX_EXTRA_CMDLINE="nvmxbench=$(echo $args | tr ' ' ',')" \
        "$NVMX_ROOT/scripts/run-qemu.sh" kvm bench "$out/qemu-kvm/bench.serial" 1200
    python3 "$NVMX_ROOT/scripts/bench_report.py" "$out/qemu-kvm/bench.serial" "$out/qemu-kvm" \
        --machine "QEMU/KVM on $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n1)" || true
fi
