#!/usr/bin/env bash
# `make upstream-report`: build every x86 and common upstream KVM selftest, run them all in one
# Bochs boot against kvm_intel and nvmx (each with a time limit), and regenerate
# Documentation/upstream-report.rst from that run. Takes long in emulation: not part of check.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
build_all
NVMX_UPSTREAM_ALL=1 "$NVMX_ROOT/scripts/build-upstream-selftests.sh"
limit=${NVMX_REPORT_LIMIT:-20}
# Tests that hang a column's machine (open bugs, named in the issue notes) are listed, not run:
# memslot_perf_test on nvmx. On kvm_intel under Bochs every test after hardware_disable_test
# hung (hwcr_msr_test, hyperv_clock, hyperv_cpuid): hardware_disable_test, which crashes,
# most likely leaves kvm_intel wedged, so it is the one listed (not yet confirmed by a run).
hang=${NVMX_REPORT_HANG:-nvmx:memslot_perf_test,kvm_intel:hardware_disable_test}
NVMX_UPSTREAM_DIR=$NVMX_ROOT/build/upstream-all NVMX_EXTRA_CMDLINE="nvmxlimit=$limit nvmxhang=$hang" \
    "$NVMX_ROOT/scripts/make-image.sh" report-kvm_intel report-nvmx
res=$NVMX_ROOT/build/results; mkdir -p "$res"
# One boot per column, side by side (Bochs uses one host core each).
for col in kvm_intel nvmx; do
    NVMX_BOCHS_MEGS=1536 "$NVMX_ROOT/scripts/run-bochs.sh" "report-$col" \
        "$res/bochs-report-$col.serial" "${NVMX_REPORT_TIMEOUT:-14400}" &
done
wait
cat "$res/bochs-report-kvm_intel.serial" "$res/bochs-report-nvmx.serial" > "$res/bochs-report.serial"
python3 "$NVMX_ROOT/scripts/upstream_report.py" "$res/bochs-report.serial" \
    "$NVMX_ROOT/Documentation/upstream-report.rst" "$(date -u +%Y-%m-%d)" \
    "Bochs 3.0 corei7_skylake_x on $(uname -m) $(nproc) cores (host: $(. /etc/os-release; echo "$PRETTY_NAME")), $limit s per test" \
    "$NVMX_ROOT/build/upstream-all"
