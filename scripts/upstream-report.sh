#!/usr/bin/env bash
# `make upstream-report`: build every x86 and common upstream KVM selftest, run them all in
# Bochs against kvm_intel and nvmx (each test with a time limit), and regenerate
# Documentation/upstream-report.rst from that run. Takes long in emulation: not part of check.
#
# A test that wedges a column's machine (its console falls silent, or the boot times out)
# is reported as hanging it, and the column goes on in a fresh boot from the next test: no
# test is left out because one before it broke the machine, and no hang list is kept by hand.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
build_all
NVMX_UPSTREAM_ALL=1 "$NVMX_ROOT/scripts/build-upstream-selftests.sh"
limit=${NVMX_REPORT_LIMIT:-20}
real=${NVMX_REPORT_REAL:-600} idle=${NVMX_REPORT_IDLE:-900}
tests=$(ls "$NVMX_ROOT/build/upstream-all")
# Its own machine directory: make check and 'one' runs can go on beside it.
export NVMX_VM_OUT=$NVMX_ROOT/build/vm-report
NVMX_UPSTREAM_DIR=$NVMX_ROOT/build/upstream-all "$NVMX_ROOT/scripts/make-image.sh"
res=$NVMX_ROOT/build/results/upstream-report; mkdir -p "$res"

# The tests after $1 in the column's order (vm/init runs /upstream in `ls` order).
next_test() { echo "$tests" | sed -n "/^$1\$/{n;p;q}"; }

run_column() { # column
    local col=$1 from= boot=0 out hung
    : > "$res/$col.serial"
    while :; do
        boot=$((boot + 1))
        out=$res/$col-$boot.serial
        NVMX_ISO_ONLY=1 NVMX_UPSTREAM_DIR=$NVMX_ROOT/build/upstream-all \
            NVMX_EXTRA_CMDLINE="nvmxlimit=$limit${from:+ nvmxfrom=$from}" \
            "$NVMX_ROOT/scripts/make-image.sh" "report-$col-$boot"
        # The guest kills a test after $limit of its seconds. The host stops the machine when
        # a test has run $real s of real time (emulation is slow: the test goes on to the
        # next boot as a timeout), or when the console, which the guest's heartbeat keeps
        # busy while its clock runs, fell silent for $idle s (the test wedged the machine).
        NVMX_BOCHS_MEGS=2048 NVMX_BOCHS_IDLE=$idle \
            NVMX_BOCHS_STEP_MARK='^@@REPORT-BEGIN ' NVMX_BOCHS_STEP_LIMIT=$real \
            "$NVMX_ROOT/scripts/run-bochs.sh" "report-$col-$boot" "$out" "${NVMX_REPORT_TIMEOUT:-14400}"
        cat "$out" >> "$res/$col.serial"
        grep -q '^@@NVMX-DONE' "$out" && return 0
        # The test that began and never reported: the one the machine stopped in.
        hung=$(awk '/^@@REPORT-BEGIN /{t=$3} /^@@REPORT [^ ]+ [^ ]+ rc=/{t=""} END{print t}' "$out")
        if [ -z "$hung" ]; then
            log "upstream-report: $col boot $boot ended outside a test; column stops here"
            return 0
        fi
        if grep -q '^@@NVMX-ERROR step over' "$out"; then
            log "upstream-report: $hung ran over ${real}s of real time on $col; next boot after it"
            echo "@@REPORT $col $hung rc=slow" >> "$res/$col.serial"
        else
            log "upstream-report: $hung stopped the $col machine; next boot after it"
            echo "@@REPORT $col $hung rc=hang" >> "$res/$col.serial"
        fi
        from=$(next_test "$hung")
        [ -n "$from" ] || return 0
    done
}

# One column per Bochs (one host core each), side by side.
run_column kvm_intel & run_column nvmx & wait
cat "$res/kvm_intel.serial" "$res/nvmx.serial" > "$res/report.serial"
python3 "$NVMX_ROOT/scripts/upstream_report.py" "$res/report.serial" \
    "$NVMX_ROOT/Documentation/upstream-report.rst" "$(date -u +%Y-%m-%d)" \
    "Bochs 3.0 corei7_skylake_x on $(uname -m) $(nproc) cores (host: $(. /etc/os-release; echo "$PRETTY_NAME")), at most $limit s of guest time and $real s of real time per test" \
    "$NVMX_ROOT/build/upstream-all"
