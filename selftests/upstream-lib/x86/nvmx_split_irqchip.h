/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Run a library-based test with the split irqchip (in-kernel local APICs, I/O APIC and PIC
 * in userspace, as QEMU's microvm has it) on every hypervisor. The library asks for the full
 * in-kernel irqchip first and falls back to the split one where KVM_CREATE_IRQCHIP is ENOTTY
 * (a KVM without CONFIG_KVM_IOAPIC, nvmx): the test is linked with -Wl,--wrap=ioctl
 * (selftests/upstream-lib/Makefile) and this wrapper answers KVM_CREATE_IRQCHIP with ENOTTY,
 * so kvm_intel runs the test in the same mode as nvmx.
 */
#ifndef NVMX_SPLIT_IRQCHIP_H
#define NVMX_SPLIT_IRQCHIP_H

#include <errno.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

int __real_ioctl(int fd, unsigned long request, ...);

int __wrap_ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (request == KVM_CREATE_IRQCHIP) {
		errno = ENOTTY;
		return -1;
	}
	return __real_ioctl(fd, request, arg);
}

#endif
