#!/usr/bin/env bash
# Boot an nvmx test ISO in Bochs 3.0 (VMX with EPT, VPID, VMCS shadowing): 2 CPUs,
# corei7_skylake_x, serial console to a file, a hard timeout. The Bochs log is kept.
# Usage: run-bochs.sh MODE SERIAL_OUT [TIMEOUT_SECONDS]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
mode=$1 serial=$2 limit=${3:-1200}
bochs=$(bochs_prefix)/bin/bochs
vm=${NVMX_VM_OUT:-$NVMX_ROOT/build/vm}
dir=$vm/bochs-$mode
mkdir -p "$dir"; : > "$serial"
cat > "$dir/bochsrc" <<RC
memory: guest=${NVMX_BOCHS_MEGS:-512}, host=${NVMX_BOCHS_MEGS:-512}
cpu: model=corei7_skylake_x, count=2, ips=200000000, reset_on_triple_fault=0
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
ata0-master: type=cdrom, path=$vm/boot-$mode.iso, status=inserted
boot: cdrom
display_library: nogui
com1: enabled=1, mode=file, dev=$serial
log: $dir/bochs.log
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
clock: sync=none
RC
log "bochs: booting mode '$mode' (2 CPUs, timeout ${limit}s), serial -> $serial"
rc=0
timeout --kill-after=10 "$limit" "$bochs" -q -f "$dir/bochsrc" </dev/null >"$dir/bochs.stdout" 2>&1 &
pid=$!
# NVMX_BOCHS_IDLE=N: also stop the machine when its console has been silent for N seconds
# (a wedged guest kernel; make upstream-report then boots again after the test that did it).
# NVMX_BOCHS_STEP_MARK=RE NVMX_BOCHS_STEP_LIMIT=N: stop it when N seconds passed since the
# last console line matching RE (one step, e.g. one test of make upstream-report, took too long).
idle=${NVMX_BOCHS_IDLE:-0} step_limit=${NVMX_BOCHS_STEP_LIMIT:-0} silent=0 size=0 stopped=0
steps=0 step_time=0
stop() { # why
    pkill -KILL -P "$pid" 2>/dev/null || true
    log "bochs: $1, machine stopped"
    echo "@@NVMX-ERROR $1" >> "$serial"
    stopped=1
}
# A kernel panic (the debug kernel panics on lockups and hung tasks) halts the guest for
# good: stop the machine at once instead of waiting for the timeout. Only the machine's own
# kernel counts: the consoles of guests it runs are echoed as "# ..." lines.
while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    if grep -a -q -E '^(\[[ 0-9.]*\] )?Kernel panic - not syncing' "$serial"; then
        stop "kernel panic"; break
    fi
    now=$(stat -c %s "$serial")
    if [ "$now" = "$size" ]; then silent=$((silent + 5)); else silent=0 size=$now; fi
    if [ "$idle" -gt 0 ] && [ "$silent" -ge "$idle" ]; then
        stop "console silent for ${idle}s"; break
    fi
    if [ "$step_limit" -gt 0 ]; then
        n=$(grep -a -c -E "${NVMX_BOCHS_STEP_MARK:-^@@}" "$serial" || true)
        if [ "$n" != "$steps" ]; then steps=$n step_time=0; else step_time=$((step_time + 5)); fi
        if [ "$n" -gt 0 ] && [ "$step_time" -ge "$step_limit" ]; then
            stop "step over ${step_limit}s"; break
        fi
    fi
done
wait "$pid" || rc=$?
if [ "$stopped" = 0 ] && { [ "$rc" = 124 ] || [ "$rc" = 137 ]; }; then
    log "bochs: timed out after ${limit}s (log: $dir/bochs.log)"
    echo "@@NVMX-ERROR bochs timed out after ${limit}s" >> "$serial"
fi
grep -q '@@NVMX-DONE' "$serial" || { log "bochs: the guest did not finish; last lines of $dir/bochs.log:"; tail -n 20 "$dir/bochs.log" >&2 || true; }
exit 0
