#!/usr/bin/env bash
# Boot the nvmx test machine under QEMU. Usage: run-qemu.sh tcg-amd|tcg-intel|kvm MODE SERIAL_OUT
#  tcg-amd:   TCG, qemu64 (AuthenticAMD) -> nvmx must refuse: not Intel
#  tcg-intel: TCG, qemu64 with vendor GenuineIntel; TCG has no VMX -> nvmx must refuse: no VMX
#  kvm:       -accel kvm -cpu host, for hosts whose /dev/kvm offers nested VMX
set -euo pipefail
. "$(dirname "$0")/lib.sh"
machine=$1 mode=$2 serial=$3 limit=${4:-300}
out=${NVMX_VM_OUT:-$NVMX_ROOT/build/vm}
case "$machine" in
tcg-amd)   accel=(-accel tcg -cpu qemu64 -smp 2) ;;
tcg-intel) accel=(-accel tcg -cpu qemu64,vendor=GenuineIntel -smp 2) ;;
kvm)       accel=(-accel kvm -cpu host -smp 2) ;;
*) echo "run-qemu: unknown machine $machine" >&2; exit 2 ;;
esac
log "qemu: booting mode '$mode' on $machine, serial -> $serial"
timeout --kill-after=10 "$limit" qemu-system-x86_64 "${accel[@]}" -m ${NVMX_QEMU_MEGS:-512} -nographic -no-reboot \
    -kernel "$out/bzImage" -initrd "$out/initrd.gz" \
    -append "console=ttyS0,115200 quiet loglevel=4 nvmxtest=$mode nvmxcpus=2 ${NVMX_EXTRA_CMDLINE:-}" \
    -serial "file:$serial" -monitor none -display none </dev/null >/dev/null 2>&1 || true
grep -q '@@NVMX-DONE' "$serial" || echo "@@NVMX-ERROR qemu ($machine) did not finish" >> "$serial"
