#!/usr/bin/env bash
# `make demo`: set everything up, then boot the emulated VMX machine (Bochs, 2 CPUs) and show
# nvmx loading there: VMXON/VMXOFF on each CPU, the capability summary, the device node, and
# the refusal while kvm_intel owns VMX; then nvmx-status on the emulated machine and on this one.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
build_all
"$NVMX_ROOT/scripts/build-upstream-selftests.sh"
"$NVMX_ROOT/scripts/make-image.sh" demo
serial=$NVMX_ROOT/build/results/demo.serial
mkdir -p "$(dirname "$serial")"
NVMX_BOCHS_MEGS=2048 "$NVMX_ROOT/scripts/run-bochs.sh" demo "$serial" 1500
echo
echo "==================== the emulated machine's console (Bochs, VT-x with EPT) ===================="
sed -n '/^### nvmx demo/,/^@@NVMX-DONE/p' "$serial" | grep -v '^@@'
grep -q '^### done' "$serial"
echo
echo "==================== nvmx-status on the machine make demo ran on ===================="
# Not usable here is the expected answer on a host without VT-x: the report says why.
"$NVMX_ROOT/build/nvmx-status" || true
