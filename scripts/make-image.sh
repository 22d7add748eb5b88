#!/usr/bin/env bash
# Build the test machine's initramfs (busybox, nvmx.ko, the kernel's modules, the selftests,
# vm/init) and one bootable ISO per mode for Bochs. Usage: make-image.sh MODE [MODE...]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

kdir=$(kernel_dir)
out=${NVMX_VM_OUT:-$NVMX_ROOT/build/vm}
root=$out/root
# NVMX_ISO_ONLY=1: only new ISOs (another command line) around the initramfs built last.
if [ "${NVMX_ISO_ONLY:-0}" != 1 ] || [ ! -f "$out/initrd.gz" ]; then
rm -rf "$root"; mkdir -p "$root"/{bin,dev,proc,sys,tmp,tests,lib/modules/nvmx}
cp /bin/busybox "$root/bin/busybox"
cp "$NVMX_ROOT/build/console_drain" "$root/bin/console_drain"
cp "$NVMX_ROOT/build/nvmx-status" "$root/bin/nvmx-status"
install -m 0755 "$NVMX_ROOT/vm/init" "$root/init"
cp "$NVMX_ROOT/nvmx.ko" "$root/lib/modules/nvmx/"
make -s -C "$kdir" "${KMAKE_FLAGS[@]}" INSTALL_MOD_PATH="$root" INSTALL_MOD_STRIP=1 \
    modules_install >/dev/null
rm -f "$root"/lib/modules/*/build
cp "$NVMX_ROOT"/build/selftests/* "$root/tests/"
mkdir -p "$root/upstream"
cp "${NVMX_UPSTREAM_DIR:-$NVMX_ROOT/build/upstream}"/* "$root/upstream/" 2>/dev/null || true
cp "$NVMX_ROOT/build/upstream-args" "$root/upstream.args" 2>/dev/null || : > "$root/upstream.args"
mkdir -p "$root/upstream-nvmx"
cp "$NVMX_ROOT"/build/upstream-nvmx/* "$root/upstream-nvmx/" 2>/dev/null || true
mkdir -p "$root/bench"
cp "$NVMX_ROOT"/build/bench/* "$root/bench/" 2>/dev/null || true
# Debian's QEMU for vm/init's run_qemu: the binary with the libraries it links, the microvm
# firmware (qboot) and the option ROM it loads with -kernel, and its guest: this kernel and
# a busybox initramfs whose init is vm/guest-init.
mkdir -p "$root/usr/bin" "$root/usr/share/qemu" "$root/guest"
cp /usr/bin/qemu-system-x86_64 "$root/usr/bin/"
qemu_libs=$(ldd /usr/bin/qemu-system-x86_64 | awk '/=>/ { print $3 } /ld-linux/ { print $1 }')
for lib in $qemu_libs; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cp /usr/share/qemu/qboot.rom /usr/share/qemu/linuxboot_dma.bin /usr/share/qemu/kvmvapic.bin "$root/usr/share/qemu/"
guest=$out/guest-root
rm -rf "$guest"; mkdir -p "$guest"/{bin,dev,proc,sys}
cp /bin/busybox "$guest/bin/busybox"
install -m 0755 "$NVMX_ROOT/vm/guest-init" "$guest/init"
(cd "$guest" && find . | cpio -o -H newc --quiet | gzip -6) > "$root/guest/initrd.gz"
# The L1 hypervisor guest: the same, with KVM's modules and the upstream selftests that
# run inside it against its kvm_intel (selftests/l1.list).
kver=$(ls "$root/lib/modules" | grep -v '^nvmx$' | head -n 1)
mkdir -p "$guest/lib/modules/$kver/kernel" "$guest/l1"
cp "$root/lib/modules/$kver"/modules.* "$guest/lib/modules/$kver/"
cp -r "$root/lib/modules/$kver/kernel/arch" "$root/lib/modules/$kver/kernel/virt" "$guest/lib/modules/$kver/kernel/"
grep -v '^#' "$NVMX_ROOT/selftests/l1.list" | awk 'NF { print $1 }' > "$guest/l1.list"
cp "$guest/l1.list" "$root/l1.list"
for t in $(cat "$guest/l1.list"); do
    cp "${NVMX_UPSTREAM_DIR:-$NVMX_ROOT/build/upstream}/$(basename "$t")" "$guest/l1/"
done
# nvmx itself and nvmx-status, for the verdict inside L1.
cp "$NVMX_ROOT/nvmx.ko" "$NVMX_ROOT/build/nvmx-status" "$guest/"
(cd "$guest" && find . | cpio -o -H newc --quiet | gzip -6) > "$root/guest/l1-initrd.gz"
# L2, booted by QEMU inside L1: this kernel with an initramfs whose init says one line and
# powers off. vm/init packs QEMU (from this root), its libraries and firmware, the kernel and
# this initramfs into the cpio archive L1 gets as a disk (the files of guest/l2-files).
l2=$out/l2-root
rm -rf "$l2"; mkdir -p "$l2/bin" "$l2/proc"
cp /bin/busybox "$l2/bin/busybox"
install -m 0755 "$NVMX_ROOT/vm/l2-init" "$l2/init"
(cd "$l2" && find . | cpio -o -H newc --quiet | gzip -6) > "$root/guest/l2-initrd.gz"
{ echo usr/bin/qemu-system-x86_64
  for lib in $qemu_libs; do echo "${lib#/}"; done
  echo usr/share/qemu/qboot.rom; echo usr/share/qemu/linuxboot_dma.bin
  echo guest/bzImage; echo guest/l2-initrd.gz; } > "$root/guest/l2-files"
cp "$kdir/arch/x86/boot/bzImage" "$root/guest/bzImage"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -6) > "$out/initrd.gz"
cp "$kdir/arch/x86/boot/bzImage" "$out/bzImage"
fi

# tsc_early_khz=200000: Bochs' TSC counts one tick per instruction, at its ips=200000000
# (run-bochs.sh), while CPUID says 3.5 GHz; believing CPUID, the kernel's clock ran 17.5 times
# slower than the emulated timers, and a guest second cost minutes of real time (tests that
# run "for 1 s" seemed to hang). The kernel refines an early value against the HPET/PM timer,
# so under QEMU or on hardware it still finds the real frequency.
for mode in "$@"; do
    iso=$out/iso-$mode
    rm -rf "$iso"; mkdir -p "$iso/isolinux"
    cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$iso/isolinux/"
    cp "$out/bzImage" "$out/initrd.gz" "$iso/"
    cat > "$iso/isolinux/isolinux.cfg" <<CFG
DEFAULT nvmx
LABEL nvmx
  KERNEL /bzImage
  APPEND initrd=/initrd.gz console=ttyS0,115200 quiet loglevel=4 tsc=reliable tsc_early_khz=200000 clearcpuid=aperfmperf nvmxtest=$mode nvmxcpus=2 ${NVMX_EXTRA_CMDLINE:-}
CFG
    xorriso -as mkisofs -quiet -o "$out/boot-$mode.iso" -b isolinux/isolinux.bin \
        -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table "$iso" 2>/dev/null
done
