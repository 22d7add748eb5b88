/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A small real-mode guest on /dev/nvmx for the raw-ioctl tests (selftests/nvmx_*_test.c):
 * 64 KiB of memory, code at 0x1000.
 */
#ifndef NVMX_GUEST_H
#define NVMX_GUEST_H

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
#define CODE_GPA 0x1000

struct guest {
	int sys, vm, vcpu;
	char *mem;
	struct kvm_run *run;
};

/*
 * Give `vcpu` the CPUID /dev/nvmx supports, as every KVM client does before running; VMX
 * (nested virtualization) only if `vmx`: a VMM asks for it by leaving CPUID.1:ECX.VMX set.
 */
static inline int set_supported_cpuid(int sys, int vcpu, int vmx)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 256 * sizeof(c->entries[0]));
	int r;

	if (!c)
		return -1;
	c->nent = 256;
	r = ioctl(sys, KVM_GET_SUPPORTED_CPUID, c);
	for (__u32 i = 0; !r && i < c->nent; i++)
		if (c->entries[i].function == 1 && !vmx)
			c->entries[i].ecx &= ~(1U << 5);
	if (!r)
		r = ioctl(vcpu, KVM_SET_CPUID2, c);
	free(c);
	return r;
}

/* A 64 KiB VM with `code` at 0x1000, CS = 0 (base 0), IP = 0x1000, real mode. */
static inline int guest_create(struct guest *g, const unsigned char *code, size_t len)
{
	struct kvm_userspace_memory_region2 r = { 0 };
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = CODE_GPA, .rflags = 2, .rsp = 0x8000 };

	g->sys = open("/dev/nvmx", O_RDWR | O_CLOEXEC);
	if (g->sys < 0)
		return -1;
	g->vm = ioctl(g->sys, KVM_CREATE_VM, 0);
	g->mem = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g->vm < 0 || g->mem == MAP_FAILED)
		return -1;
	memcpy(g->mem + CODE_GPA, code, len);
	r.memory_size = 16 * PAGE;
	r.userspace_addr = (unsigned long)g->mem;
	if (ioctl(g->vm, KVM_SET_USER_MEMORY_REGION2, &r))
		return -1;
	g->vcpu = ioctl(g->vm, KVM_CREATE_VCPU, 0);
	if (g->vcpu < 0 || set_supported_cpuid(g->sys, g->vcpu, 0))
		return -1;
	g->run = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, g->vcpu, 0);
	if (g->run == MAP_FAILED)
		return -1;
	if (ioctl(g->vcpu, KVM_GET_SREGS, &sregs))
		return -1;
	sregs.cs.selector = 0;
	sregs.cs.base = 0;
	if (ioctl(g->vcpu, KVM_SET_SREGS, &sregs) || ioctl(g->vcpu, KVM_SET_REGS, &regs))
		return -1;
	return 0;
}

static inline void guest_destroy(struct guest *g)
{
	munmap(g->run, 2 * PAGE);
	munmap(g->mem, 16 * PAGE);
	close(g->vcpu);
	close(g->vm);
	close(g->sys);
}

#endif /* NVMX_GUEST_H */
