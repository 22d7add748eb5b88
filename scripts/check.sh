#!/usr/bin/env bash
# `make check`: everything from a fresh machine to the final `N passed, N failed` line.
# Set-up and builds are cached under $NVMX_CACHE; results go to build/results.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
res=$NVMX_ROOT/build/results
mkdir -p "$res"
t0=$(date +%s)
step() { log "[$(( $(date +%s) - t0 ))s] $*"; }

set -e
step "host set-up (packages, bindgen)"; "$NVMX_ROOT/scripts/setup-host.sh"
step "kernel"; "$NVMX_ROOT/scripts/build-kernel.sh" >/dev/null
step "bochs"; "$NVMX_ROOT/scripts/build-bochs.sh" >/dev/null
step "module"; make -s -C "$NVMX_ROOT" module
step "selftests"; "$NVMX_ROOT/scripts/build-selftests.sh"
step "nvmx-status"; "$NVMX_ROOT/scripts/build-status-tool.sh"
step "upstream KVM selftests (from the kernel tree)"; "$NVMX_ROOT/scripts/build-upstream-selftests.sh"
step "test images"; "$NVMX_ROOT/scripts/make-image.sh" check
set +e

step "cargo test (nvmx-core)"
(cd "$NVMX_ROOT/rust/core" && cargo test --quiet -- --test-threads=2 --format=pretty) > "$res/cargo-core.txt" 2>&1
step "cargo test (nvmx-status)"
(cd "$NVMX_ROOT/rust/nvmx-status" && CARGO_TARGET_DIR=$NVMX_ROOT/build/nvmx-status-target \
    cargo test --quiet -- --test-threads=2 --format=pretty) > "$res/cargo-status.txt" 2>&1

step "module layers (no import circle among rust/*.rs)"
{ echo "@@NVMX-TAP-BEGIN layers"; python3 "$NVMX_ROOT/scripts/layers.py" --tap; echo "@@NVMX-TAP-END layers rc=$?"; } > "$res/layers.txt" 2>&1

step "QEMU TCG, AMD vendor (refusal: not Intel)"
"$NVMX_ROOT/scripts/run-qemu.sh" tcg-amd tcg-amd "$res/tcg-amd.serial"
step "QEMU TCG, Intel vendor without VMX (refusal: no VMX)"
"$NVMX_ROOT/scripts/run-qemu.sh" tcg-intel tcg-intel "$res/tcg-intel.serial"
# One Bochs machine. Two side by side on the 2 cores did not pay: paired, the one with the
# L1 hypervisors advanced one guest second per ~9 real seconds; alone, QEMU's steps take
# ~3.4 (microvm, q35). The whole run took ~60 minutes on the machine of 2026-12-08.
step "Bochs, 2 CPUs with VMX"
NVMX_BOCHS_MEGS=2048 NVMX_BOCHS_IDLE=${NVMX_BOCHS_IDLE:-300} \
    "$NVMX_ROOT/scripts/run-bochs.sh" check "$res/bochs-check.serial" "${NVMX_BOCHS_TIMEOUT:-4500}"

# Each upstream test runs twice in the Bochs boot: against kvm_intel and against nvmx.
upstream=$(list_tests upstream.list | sed 's|.*/||' | while read -r t; do
    printf ',upstream-kvm_intel-%s,upstream-nvmx-%s' "$t" "$t"; done)
# nvmx-only library tests run once, against nvmx.
upstream+=$(list_tests nvmx-only.list | sed 's|.*/||' | while read -r t; do
    printf ',upstream-nvmx-%s' "$t"; done)
# nvmx-status verdicts (vm/init's run_status).
status="status-not-loaded,status-usable,status-loaded,status-sysfs-facts,status-kvm-intel-holds-vmx"
# The benchmark, once per column with a tiny count: that it runs, not how fast (make bench).
bench="bench-kvm_intel,bench-nvmx"
# Debian's QEMU booting Linux, once per column on microvm and once on q35 (vm/init's
# run_qemu and run_qemu_q35), and an L1 hypervisor under QEMU running selftests/l1.list
# against its kvm_intel and Linux as L2, migrated while L2 runs (run_qemu_l1).
qemu="qemu-kvm_intel,qemu-nvmx,qemu-q35-kvm_intel,qemu-q35-nvmx,qemu-l1-kvm_intel,qemu-l1-nvmx"
# nvmx's own raw-ioctl tests, and what vm/init runs beside them, in check mode (vm/init).
own="nvmx_module_test,mitigations,nvmx_device_test,nvmx_vm_test,nvmx_run_test,nvmx_apic_test,nvmx_busy_test"
machines=(
    --machine tree "$res/layers.txt" layers
    --machine tcg-amd "$res/tcg-amd.serial" nvmx_novmx_test,status-amd,kernel-log
    --machine tcg-intel "$res/tcg-intel.serial" nvmx_novmx_test,status-no-vmx,kernel-log
    --machine bochs "$res/bochs-check.serial" "$own,$status,$bench,$qemu$upstream,kernel-log"
)
if [ -w /dev/kvm ] && grep -qw vmx /proc/cpuinfo; then
    step "QEMU/KVM with the host's VMX"
    "$NVMX_ROOT/scripts/run-qemu.sh" kvm check "$res/kvm-check.serial" 600
    machines+=(--machine qemu-kvm "$res/kvm-check.serial" "$own,kernel-log")
else
    step "no /dev/kvm with VMX on this host: the QEMU/KVM machine is not run"
fi
step "benchmark smoke run (not judged; make bench for figures)"
python3 "$NVMX_ROOT/scripts/bench_report.py" "$res/bochs-check.serial" "$res/bench" \
    --machine "Bochs smoke run of make check" > "$res/bench-report.txt" 2>&1 || true
step "results"
python3 "$NVMX_ROOT/scripts/summarize.py" --cargo cargo-nvmx-core "$res/cargo-core.txt" \
    --cargo cargo-nvmx-status "$res/cargo-status.txt" "${machines[@]}"
