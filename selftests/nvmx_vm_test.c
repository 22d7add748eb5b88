// SPDX-License-Identifier: GPL-2.0
/*
 * VMs, memory slots and vCPUs through the KVM ABI on /dev/nvmx: the fds, the errno for each
 * bad argument (KVM's, from virt/kvm/kvm_main.c), the kvm_run mmap and register state.
 */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cpuid.h>

#include "kselftest_harness.h"

/* CPUID.1:ECX of the CPU this runs on. */
static unsigned int host_leaf1_ecx(void)
{
	unsigned int a, b, c, d;

	__cpuid(1, a, b, c, d);
	return c;
}

#define PAGE 4096UL

static int region(int vm, __u32 slot, __u32 flags, __u64 gpa, __u64 size, void *uaddr)
{
	struct kvm_userspace_memory_region2 r = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (unsigned long)uaddr,
	};

	return ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r) ? errno : 0;
}

FIXTURE(vm) {
	int sys, vm;
	char *mem;
};

FIXTURE_SETUP(vm)
{
	self->sys = open("/dev/nvmx", O_RDWR | O_CLOEXEC);
	ASSERT_GE(self->sys, 0);
	self->vm = ioctl(self->sys, KVM_CREATE_VM, 0);
	ASSERT_GE(self->vm, 0) TH_LOG("KVM_CREATE_VM: %s", strerror(errno));
	self->mem = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->mem);
}

FIXTURE_TEARDOWN(vm)
{
	munmap(self->mem, 16 * PAGE);
	close(self->vm);
	close(self->sys);
}

TEST(create_vm_bad_type_is_einval)
{
	int sys = open("/dev/nvmx", O_RDWR | O_CLOEXEC);

	ASSERT_GE(sys, 0);
	EXPECT_EQ(-1, ioctl(sys, KVM_CREATE_VM, 1));
	EXPECT_EQ(EINVAL, errno);
	close(sys);
}

TEST(capabilities_report_what_works)
{
	int sys = open("/dev/nvmx", O_RDWR | O_CLOEXEC);

	ASSERT_GE(sys, 0);
	EXPECT_EQ(1, ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY));
	EXPECT_EQ(1, ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY2));
	EXPECT_EQ(1, ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT));
	EXPECT_EQ(1024, ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS));
	EXPECT_EQ(1024, ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPU_ID));
	/*
	 * KVM_CAP_IRQCHIP with the split model only, as on a KVM without CONFIG_KVM_IOAPIC:
	 * KVM_CREATE_IRQCHIP is ENOTTY (nvmx_apic_test). Read-only slots (the upstream-library
	 * x86/nvmx_readonly_mem_test); not implemented: guest_memfd.
	 */
	EXPECT_EQ(1, ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP));
	EXPECT_EQ(1, ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM));
	EXPECT_EQ(0, ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD));
	EXPECT_EQ(2 * PAGE, ioctl(sys, KVM_GET_VCPU_MMAP_SIZE, 0));
	close(sys);
}

TEST(supported_cpuid)
{
	int sys = open("/dev/nvmx", O_RDWR | O_CLOEXEC);
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 100 * sizeof(c->entries[0]));
	struct kvm_cpuid2 small = { .nent = 0 };
	int have_ext8 = 0, have_leaf1 = 0;

	ASSERT_GE(sys, 0);
	ASSERT_NE(NULL, c);
	EXPECT_EQ(-1, ioctl(sys, KVM_GET_SUPPORTED_CPUID, &small));
	EXPECT_EQ(E2BIG, errno);
	EXPECT_EQ(-1, ioctl(sys, KVM_GET_SUPPORTED_CPUID, NULL));
	EXPECT_EQ(EFAULT, errno);
	c->nent = 100;
	ASSERT_EQ(0, ioctl(sys, KVM_GET_SUPPORTED_CPUID, c)) TH_LOG("%s", strerror(errno));
	EXPECT_LT(0, c->nent);
	EXPECT_GE(100, c->nent);
	for (__u32 i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 0x80000008) {
			have_ext8 = 1;
			EXPECT_LE(36, e->eax & 0xff) TH_LOG("physical address bits");
		}
		if (e->function == 1) {
			have_leaf1 = 1;
			EXPECT_NE(0, e->ecx & (1U << 5)) TH_LOG("VMX offered (nested=1)");
			EXPECT_NE(0, e->ecx & (1U << 31)) TH_LOG("hypervisor bit");
			/* XSAVE where the host has it (and uses it: OSXSAVE), as on KVM. */
			EXPECT_EQ(host_leaf1_ecx() & (1U << 27) ? 1U << 26 : 0, e->ecx & (1U << 26))
				TH_LOG("XSAVE as the host");
		}
	}
	EXPECT_TRUE(have_ext8) TH_LOG("the selftest library needs leaf 0x80000008");
	EXPECT_TRUE(have_leaf1);
	free(c);
	close(sys);
}

TEST_F(vm, slot_create_move_delete)
{
	EXPECT_EQ(0, region(self->vm, 0, 0, 0x100000, 4 * PAGE, self->mem));
	EXPECT_EQ(0, region(self->vm, 0, 0, 0x100000, 4 * PAGE, self->mem)) TH_LOG("unchanged");
	EXPECT_EQ(0, region(self->vm, 0, 0, 0x200000, 4 * PAGE, self->mem)) TH_LOG("move");
	EXPECT_EQ(0, region(self->vm, 1, 0, 0x100000, 4 * PAGE, self->mem + 4 * PAGE));
	EXPECT_EQ(0, region(self->vm, 0, 0, 0, 0, NULL)) TH_LOG("delete");
	EXPECT_EQ(EINVAL, region(self->vm, 0, 0, 0, 0, NULL)) TH_LOG("delete twice");
}

/* MemAvailable from /proc/meminfo, in KiB. */
static long mem_available_kib(void)
{
	char line[128];
	long kib = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

/*
 * EPT tables go with the mappings that needed them: 10^5 cycles of creating a one-page
 * slot at a fresh 2 MiB-aligned address (a new page table each, a new directory every 512)
 * and deleting it leave the host's available memory within 8 MiB of where it was — not the
 * 400 MiB of tables that freeing them only with the VM would hold.
 */
#define SLOT_CYCLES 100000
TEST_F_TIMEOUT(vm, slot_cycles_free_their_ept_tables, 900)
{
	struct timespec t0, t1;
	long before, after;

	ASSERT_EQ(0, region(self->vm, 0, 0, 0, PAGE, self->mem));	/* warm-up */
	ASSERT_EQ(0, region(self->vm, 0, 0, 0, 0, NULL));
	before = mem_available_kib();
	ASSERT_LT(0, before);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 1; i <= SLOT_CYCLES; i++) {
		ASSERT_EQ(0, region(self->vm, 0, 0, i << 21, PAGE, self->mem)) TH_LOG("cycle %ld", i);
		ASSERT_EQ(0, region(self->vm, 0, 0, 0, 0, NULL)) TH_LOG("cycle %ld", i);
	}
	after = mem_available_kib();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	TH_LOG("%d cycles in %ld s, %ld KiB less available", SLOT_CYCLES,
	       (long)(t1.tv_sec - t0.tv_sec), before - after);
	EXPECT_GT(8 * 1024, before - after) TH_LOG("%ld KiB less available after %d cycles",
						  before - after, SLOT_CYCLES);
}

TEST_F(vm, slot_bad_arguments)
{
	EXPECT_EQ(EINVAL, region(self->vm, 0, 0, 0x100001, PAGE, self->mem)) TH_LOG("gpa");
	EXPECT_EQ(EINVAL, region(self->vm, 0, 0, 0x100000, PAGE + 1, self->mem)) TH_LOG("size");
	EXPECT_EQ(EINVAL, region(self->vm, 0, 0, 0x100000, PAGE, self->mem + 1)) TH_LOG("uaddr");
	EXPECT_EQ(EINVAL, region(self->vm, 0, KVM_MEM_GUEST_MEMFD, 0, PAGE, self->mem)) TH_LOG("guest_memfd");
	EXPECT_EQ(EINVAL, region(self->vm, 0, 1U << 31, 0, PAGE, self->mem)) TH_LOG("flags");
	EXPECT_EQ(509, ioctl(self->vm, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS));
	EXPECT_EQ(EINVAL, region(self->vm, 509, 0, 0, PAGE, self->mem)) TH_LOG("slot id");
	EXPECT_EQ(EINVAL, region(self->vm, 32767, 0, 0, PAGE, self->mem)) TH_LOG("slot id");
	EXPECT_EQ(EINVAL, region(self->vm, 1 << 16, 0, 0, PAGE, self->mem)) TH_LOG("as_id");
	EXPECT_EQ(EINVAL, region(self->vm, 0, 0, 0, PAGE, (void *)0xffff888000000000UL)) TH_LOG("kernel");
	EXPECT_EQ(EINVAL, region(self->vm, 0, 0, ~0xfffUL, 2 * PAGE, self->mem)) TH_LOG("gpa wraps");
	EXPECT_EQ(EINVAL, region(self->vm, 0, 0, 0, 1UL << 44, self->mem)) TH_LOG("huge");
	/* Valid arguments but memory that is not there: nothing can be pinned. */
	EXPECT_EQ(EFAULT, region(self->vm, 0, 0, 0, PAGE, (void *)0x1000)) TH_LOG("unmapped");
	EXPECT_EQ(-1, ioctl(self->vm, KVM_SET_USER_MEMORY_REGION2, NULL));
	EXPECT_EQ(EFAULT, errno);
	/* None of the failures left a slot behind: the whole range is still free. */
	EXPECT_EQ(0, region(self->vm, 0, 0, 0, 16 * PAGE, self->mem));
}

TEST_F(vm, slot_overlap_is_eexist)
{
	ASSERT_EQ(0, region(self->vm, 0, 0, 0x100000, 4 * PAGE, self->mem));
	EXPECT_EQ(EEXIST, region(self->vm, 1, 0, 0x101000, PAGE, self->mem + 8 * PAGE));
	EXPECT_EQ(EEXIST, region(self->vm, 1, 0, 0x0ff000, 2 * PAGE, self->mem + 8 * PAGE));
	EXPECT_EQ(0, region(self->vm, 1, 0, 0x104000, PAGE, self->mem + 8 * PAGE)) TH_LOG("adjacent");
	EXPECT_EQ(EINVAL, region(self->vm, 0, 0, 0x100000, 8 * PAGE, self->mem)) TH_LOG("resize");
}

TEST_F(vm, slot_memory_outlives_munmap)
{
	char *m = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_NE(MAP_FAILED, m);
	memset(m, 0x5a, 2 * PAGE);
	ASSERT_EQ(0, region(self->vm, 0, 0, 0, 2 * PAGE, m));
	/* The pages stay pinned by the slot; the VMM's mapping may go. */
	ASSERT_EQ(0, munmap(m, 2 * PAGE));
	EXPECT_EQ(0, region(self->vm, 0, 0, 0, 0, NULL));
}

TEST_F(vm, vcpu_ids)
{
	int a = ioctl(self->vm, KVM_CREATE_VCPU, 0);
	int b;

	ASSERT_GE(a, 0) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(-1, ioctl(self->vm, KVM_CREATE_VCPU, 0));
	EXPECT_EQ(EEXIST, errno);
	EXPECT_EQ(-1, ioctl(self->vm, KVM_CREATE_VCPU, 1024));
	EXPECT_EQ(EINVAL, errno);
	b = ioctl(self->vm, KVM_CREATE_VCPU, 1023);
	EXPECT_GE(b, 0);
	close(a);
	close(b);
}

TEST_F(vm, nr_mmu_pages)
{
	/* No shadow MMU: accepted within KVM's bounds, changes nothing. */
	EXPECT_EQ(-1, ioctl(self->vm, KVM_SET_NR_MMU_PAGES, 63));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(0, ioctl(self->vm, KVM_SET_NR_MMU_PAGES, 64));
	EXPECT_EQ(-1, ioctl(self->vm, KVM_GET_NR_MMU_PAGES, 0)) TH_LOG("deprecated, gone from KVM");
	EXPECT_EQ(ENOTTY, errno);
}

TEST_F(vm, max_vcpu_id_cap)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MAX_VCPU_ID, .args = { 1025 } };
	int fd;

	EXPECT_EQ(-1, ioctl(self->vm, KVM_ENABLE_CAP, &cap)) TH_LOG("beyond KVM_CAP_MAX_VCPU_ID");
	EXPECT_EQ(EINVAL, errno);
	cap.args[0] = 2;
	ASSERT_EQ(0, ioctl(self->vm, KVM_ENABLE_CAP, &cap));
	EXPECT_EQ(0, ioctl(self->vm, KVM_ENABLE_CAP, &cap)) TH_LOG("the same value again");
	cap.args[0] = 3;
	EXPECT_EQ(-1, ioctl(self->vm, KVM_ENABLE_CAP, &cap)) TH_LOG("a second, different value");
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, ioctl(self->vm, KVM_CREATE_VCPU, 2));
	EXPECT_EQ(EINVAL, errno) TH_LOG("an id at the new limit");
	fd = ioctl(self->vm, KVM_CREATE_VCPU, 1);
	EXPECT_LE(0, fd);
	close(fd);
}

TEST_F(vm, vcpu_mmap_and_registers)
{
	int vcpu = ioctl(self->vm, KVM_CREATE_VCPU, 0);
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_run *run;

	ASSERT_GE(vcpu, 0);
	run = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	ASSERT_NE(MAP_FAILED, run) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(0, run->exit_reason);
	run->immediate_exit = 1;

	/* The reset state: real mode at F000:FFF0 (SDM vol. 3A, table 10-1). */
	ASSERT_EQ(0, ioctl(vcpu, KVM_GET_REGS, &regs));
	EXPECT_EQ(0xfff0, regs.rip);
	EXPECT_EQ(0x2, regs.rflags);
	ASSERT_EQ(0, ioctl(vcpu, KVM_GET_SREGS, &sregs));
	EXPECT_EQ(0xf000, sregs.cs.selector);
	EXPECT_EQ(0xffff0000, sregs.cs.base);
	EXPECT_EQ(0x60000010, sregs.cr0);

	regs.rax = 0x1234;
	regs.rip = 0x1000;
	ASSERT_EQ(0, ioctl(vcpu, KVM_SET_REGS, &regs));
	memset(&regs, 0, sizeof(regs));
	ASSERT_EQ(0, ioctl(vcpu, KVM_GET_REGS, &regs));
	EXPECT_EQ(0x1234, regs.rax);
	EXPECT_EQ(0x1000, regs.rip);

	EXPECT_EQ(-1, ioctl(vcpu, KVM_GET_REGS, NULL));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, ioctl(vcpu, KVM_SET_SREGS, (void *)8));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, ioctl(vcpu, _IO(KVMIO, 0xfe)));
	EXPECT_EQ(ENOTTY, errno);
	/* Beyond the two mmap pages there is nothing to map. */
	EXPECT_EQ(MAP_FAILED, mmap(NULL, PAGE, PROT_READ, MAP_SHARED, vcpu, 2 * PAGE));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(MAP_FAILED, mmap(NULL, 3 * PAGE, PROT_READ, MAP_SHARED, vcpu, 0));
	EXPECT_EQ(EINVAL, errno);
	munmap(run, 2 * PAGE);
	close(vcpu);
}

/* Drop CAP_IPC_LOCK from this process's effective set (raw capset: no libcap in the VM). */
static int drop_ipc_lock(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return -1;
	d[CAP_IPC_LOCK / 32].effective &= ~(1U << (CAP_IPC_LOCK % 32));
	return syscall(SYS_capset, &h, d);
}

TEST(pinned_memory_counts_against_rlimit_memlock)
{
	struct rlimit lim = { .rlim_cur = 16 * PAGE, .rlim_max = 16 * PAGE };
	struct kvm_userspace_memory_region2 r = { .memory_size = 64 * PAGE };
	int sys, vm;
	char *mem;

	ASSERT_EQ(0, drop_ipc_lock());
	ASSERT_EQ(0, setrlimit(RLIMIT_MEMLOCK, &lim));
	sys = open("/dev/nvmx", O_RDWR);
	ASSERT_LE(0, sys);
	vm = ioctl(sys, KVM_CREATE_VM, 0);
	ASSERT_LE(0, vm);
	mem = mmap(NULL, 64 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, mem);
	r.userspace_addr = (unsigned long)mem;
	EXPECT_EQ(-1, ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r)) TH_LOG("64 pages over a 16-page limit");
	EXPECT_EQ(ENOMEM, errno);
	r.memory_size = 8 * PAGE;
	EXPECT_EQ(0, ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r)) TH_LOG("8 pages fit");
	r.slot = 1;
	r.guest_phys_addr = 0x100000;
	r.userspace_addr += 8 * PAGE;
	EXPECT_EQ(0, ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r)) TH_LOG("16 in all fit");
	r.slot = 2;
	r.guest_phys_addr = 0x200000;
	r.userspace_addr += 8 * PAGE;
	EXPECT_EQ(-1, ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r)) TH_LOG("24 do not");
	EXPECT_EQ(ENOMEM, errno);
	r.slot = 0;
	r.memory_size = 0;
	r.guest_phys_addr = 0;
	EXPECT_EQ(0, ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r)) TH_LOG("deleting slot 0 uncharges");
	r.slot = 2;
	r.memory_size = 8 * PAGE;
	r.guest_phys_addr = 0x200000;
	EXPECT_EQ(0, ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r)) TH_LOG("so 8 more fit again");
	close(vm);
	close(sys);
}

TEST(vcpu_outlives_vm_fd)
{
	int sys = open("/dev/nvmx", O_RDWR | O_CLOEXEC);
	int vm = ioctl(sys, KVM_CREATE_VM, 0);
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	struct kvm_regs regs;

	ASSERT_GE(vcpu, 0);
	close(vm);
	close(sys);
	/* The vCPU holds its VM: still usable after the VM fd is gone. */
	EXPECT_EQ(0, ioctl(vcpu, KVM_GET_REGS, &regs));
	close(vcpu);
}

TEST_HARNESS_MAIN
