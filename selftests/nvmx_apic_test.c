// SPDX-License-Identifier: GPL-2.0
/*
 * The in-kernel local APIC of KVM_CAP_SPLIT_IRQCHIP on /dev/nvmx, driven by small real-mode
 * guests through the x2APIC MSRs: enabling the capability (and its errors), a self-IPI
 * delivered through the guest's IVT, the APIC timer waking a halted vCPU, an IPI from one
 * vCPU to another halted on the other CPU, INIT/SIPI starting an application processor, a
 * signal not waking a halted vCPU, and SMI (not emulated) reported to userspace.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include "kselftest_harness.h"

#define PAGE 4096UL
#define MEM (16 * PAGE)

struct vm {
	int sys, fd;
	char *mem;
};

struct cpu {
	int fd;
	struct kvm_run *run;
};

static int vm_create(struct vm *vm, int split)
{
	struct kvm_userspace_memory_region2 r = { .memory_size = MEM };
	struct kvm_enable_cap cap = { .cap = KVM_CAP_SPLIT_IRQCHIP, .args = { 24 } };

	vm->sys = open("/dev/nvmx", O_RDWR | O_CLOEXEC);
	if (vm->sys < 0)
		return -1;
	vm->fd = ioctl(vm->sys, KVM_CREATE_VM, 0);
	vm->mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (vm->fd < 0 || vm->mem == MAP_FAILED)
		return -1;
	r.userspace_addr = (unsigned long)vm->mem;
	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION2, &r))
		return -1;
	return split ? ioctl(vm->fd, KVM_ENABLE_CAP, &cap) : 0;
}

/* vCPU `id` in real mode at CS:IP 0:`ip`, with the supported CPUID (x2APIC included). */
static int cpu_create(struct vm *vm, struct cpu *c, int id, unsigned int ip)
{
	struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + 256 * sizeof(cpuid->entries[0]));
	struct kvm_regs regs = { .rip = ip, .rflags = 2, .rsp = 0x8000 - 0x400 * id };
	struct kvm_mp_state runnable = { .mp_state = KVM_MP_STATE_RUNNABLE };
	struct kvm_sregs sregs;

	c->fd = ioctl(vm->fd, KVM_CREATE_VCPU, id);
	if (c->fd < 0 || !cpuid)
		return -1;
	cpuid->nent = 256;
	if (ioctl(vm->sys, KVM_GET_SUPPORTED_CPUID, cpuid) || ioctl(c->fd, KVM_SET_CPUID2, cpuid))
		return -1;
	free(cpuid);
	c->run = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	if (c->run == MAP_FAILED || ioctl(c->fd, KVM_GET_SREGS, &sregs))
		return -1;
	sregs.cs.selector = 0;
	sregs.cs.base = 0;
	/* Application processors start waiting for INIT/SIPI; start them directly (as the
	 * KVM selftest library does) unless `ip` is 0. */
	if (ip && ioctl(c->fd, KVM_SET_MP_STATE, &runnable))
		return -1;
	return ioctl(c->fd, KVM_SET_SREGS, &sregs) || ioctl(c->fd, KVM_SET_REGS, &regs);
}

/*
 * Guest code fragments (16-bit). wrmsr(msr, lo): mov ecx,msr; mov eax,lo; xor edx,edx; wrmsr
 */
#define WRMSR(msr, lo)								\
	0x66, 0xb9, (msr) & 0xff, ((msr) >> 8) & 0xff, 0, 0,			\
	0x66, 0xb8, (lo) & 0xff, ((lo) >> 8) & 0xff, ((lo) >> 16) & 0xff, ((lo) >> 24) & 0xff, \
	0x66, 0x31, 0xd2, 0x0f, 0x30
/* x2APIC on: IA32_APIC_BASE = 0xfee00000 | EN | EXTD (| BSP for vCPU 0), SVR = 0x1ff. */
#define X2APIC_ON(bsp)								\
	WRMSR(0x1b, 0xfee00c00 | ((bsp) << 8)), WRMSR(0x80f, 0x1ff)
#define STI_HLT 0xfb, 0xf4
/* An interrupt handler: report `vector` on port 0x1000, EOI, hlt. */
#define HANDLER(vector) 0xba, 0x00, 0x10, 0xb0, (vector), 0xee, WRMSR(0x80b, 0), 0xf4

static void put(struct vm *vm, unsigned int gpa, const unsigned char *code, size_t len)
{
	memcpy(vm->mem + gpa, code, len);
}

static void set_ivt(struct vm *vm, int vector, unsigned int handler)
{
	unsigned short *ivt = (unsigned short *)vm->mem;

	ivt[vector * 2] = handler;
	ivt[vector * 2 + 1] = 0;
}

static void on_alarm(int sig)
{
	(void)sig;
}

/*
 * A VM with the in-kernel APIC and one vCPU running `code` at 0x1000 (real mode), with
 * `handler` at 0x3000 in IVT slot `vector`.
 */
static int guest_with_handler(struct vm *vm, struct cpu *c, const unsigned char *code, size_t len,
			      const unsigned char *handler, size_t hlen, int vector)
{
	if (vm_create(vm, 1))
		return -1;
	put(vm, 0x1000, code, len);
	put(vm, 0x3000, handler, hlen);
	set_ivt(vm, vector, 0x3000);
	return cpu_create(vm, c, 0, 0x1000);
}

static unsigned char io_byte(struct cpu *c)
{
	return *((unsigned char *)c->run + c->run->io.data_offset);
}

TEST(enable_split_irqchip)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_SPLIT_IRQCHIP, .args = { 24 } };
	struct vm vm;
	struct cpu c;

	ASSERT_EQ(0, vm_create(&vm, 0));
	cap.flags = 1;
	EXPECT_EQ(-1, ioctl(vm.fd, KVM_ENABLE_CAP, &cap));
	EXPECT_EQ(EINVAL, errno) TH_LOG("flags");
	cap.flags = 0;
	cap.args[0] = 4097;
	EXPECT_EQ(-1, ioctl(vm.fd, KVM_ENABLE_CAP, &cap));
	EXPECT_EQ(EINVAL, errno) TH_LOG("too many routes");
	cap.args[0] = 24;
	EXPECT_EQ(0, ioctl(vm.fd, KVM_ENABLE_CAP, &cap));
	EXPECT_EQ(-1, ioctl(vm.fd, KVM_ENABLE_CAP, &cap));
	EXPECT_EQ(EEXIST, errno) TH_LOG("twice");
	cap.cap = KVM_CAP_IRQCHIP;
	EXPECT_EQ(-1, ioctl(vm.fd, KVM_ENABLE_CAP, &cap));
	EXPECT_EQ(EINVAL, errno) TH_LOG("a capability nvmx cannot enable");
	EXPECT_EQ(-1, ioctl(vm.fd, KVM_CREATE_IRQCHIP, 0));
	EXPECT_EQ(ENOTTY, errno) TH_LOG("no in-kernel I/O APIC and PIC");
	close(vm.fd);

	ASSERT_EQ(0, vm_create(&vm, 0));
	ASSERT_EQ(0, cpu_create(&vm, &c, 0, 0x1000));
	cap.cap = KVM_CAP_SPLIT_IRQCHIP;
	EXPECT_EQ(-1, ioctl(vm.fd, KVM_ENABLE_CAP, &cap));
	EXPECT_EQ(EINVAL, errno) TH_LOG("after a vCPU exists");
}

TEST(x2apic_self_ipi_reaches_the_guest)
{
	const unsigned char code[] = { X2APIC_ON(1), WRMSR(0x83f, 0x40), STI_HLT };
	const unsigned char handler[] = { HANDLER(0x40) };
	struct vm vm;
	struct cpu c;

	ASSERT_EQ(0, guest_with_handler(&vm, &c, code, sizeof(code), handler, sizeof(handler), 0x40));
	ASSERT_EQ(0, ioctl(c.fd, KVM_RUN, 0));
	ASSERT_EQ(KVM_EXIT_IO, c.run->exit_reason) TH_LOG("exit %u", c.run->exit_reason);
	EXPECT_EQ(0x40, io_byte(&c)) TH_LOG("the self-IPI's vector, through the IVT");
}

TEST(apic_timer_wakes_a_halted_vcpu)
{
	/* LVT timer = vector 0x41 one-shot, divide by 1, initial count 1000000 (1 ms). */
	const unsigned char code[] = { X2APIC_ON(1), WRMSR(0x832, 0x41), WRMSR(0x83e, 0xb),
				       WRMSR(0x838, 1000000), STI_HLT };
	const unsigned char handler[] = { HANDLER(0x41) };
	struct vm vm;
	struct cpu c;

	ASSERT_EQ(0, guest_with_handler(&vm, &c, code, sizeof(code), handler, sizeof(handler), 0x41));
	ASSERT_EQ(0, ioctl(c.fd, KVM_RUN, 0));
	ASSERT_EQ(KVM_EXIT_IO, c.run->exit_reason) TH_LOG("exit %u", c.run->exit_reason);
	EXPECT_EQ(0x41, io_byte(&c)) TH_LOG("the timer's vector");
}

struct runner {
	struct cpu *c;
	int cpu, ret, err;
};

static void *run_on(void *arg)
{
	struct runner *r = arg;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(r->cpu, &set);
	r->ret = sched_setaffinity(0, sizeof(set), &set);
	if (!r->ret)
		r->ret = ioctl(r->c->fd, KVM_RUN, 0);
	r->err = errno;
	return NULL;
}

TEST(ipi_wakes_another_vcpu)
{
	/* vCPU 1 (APIC ID 1) halts with interrupts on; vCPU 0 sends it vector 0x42. */
	const unsigned char waiter[] = { X2APIC_ON(0), STI_HLT, 0xeb, 0xfd };
	const unsigned char sender[] = { X2APIC_ON(1),
		/* mov ecx,0x830; mov eax,0x42; mov edx,1; wrmsr; mov dx,0x1001; out dx,al */
		0x66, 0xb9, 0x30, 0x08, 0, 0, 0x66, 0xb8, 0x42, 0, 0, 0,
		0x66, 0xba, 1, 0, 0, 0, 0x0f, 0x30, 0xba, 0x01, 0x10, 0xee };
	const unsigned char handler[] = { HANDLER(0x42) };
	struct runner r[2];
	struct cpu c[2];
	pthread_t t[2];
	struct vm vm;

	ASSERT_LE(2, sysconf(_SC_NPROCESSORS_ONLN));
	ASSERT_EQ(0, vm_create(&vm, 1));
	put(&vm, 0x1000, sender, sizeof(sender));
	put(&vm, 0x2000, waiter, sizeof(waiter));
	put(&vm, 0x3000, handler, sizeof(handler));
	set_ivt(&vm, 0x42, 0x3000);
	ASSERT_EQ(0, cpu_create(&vm, &c[0], 0, 0x1000));
	ASSERT_EQ(0, cpu_create(&vm, &c[1], 1, 0x2000));
	r[1] = (struct runner){ .c = &c[1], .cpu = 1 };
	ASSERT_EQ(0, pthread_create(&t[1], NULL, run_on, &r[1]));
	usleep(200000); /* let vCPU 1 reach its HLT (the IPI would wait in its IRR anyway) */
	r[0] = (struct runner){ .c = &c[0], .cpu = 0 };
	ASSERT_EQ(0, pthread_create(&t[0], NULL, run_on, &r[0]));
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	EXPECT_EQ(0, r[0].ret) TH_LOG("%s", strerror(r[0].err));
	EXPECT_EQ(0, r[1].ret) TH_LOG("%s", strerror(r[1].err));
	EXPECT_EQ(KVM_EXIT_IO, c[1].run->exit_reason) TH_LOG("exit %u", c[1].run->exit_reason);
	EXPECT_EQ(0x42, io_byte(&c[1])) TH_LOG("vCPU 1 took the IPI");
	EXPECT_EQ(0x1001, c[0].run->io.port) TH_LOG("vCPU 0 finished after sending");
}

TEST(signal_msi_wakes_a_halted_vcpu)
{
	/* vCPU 0 (APIC ID 0) halts with interrupts on; the VMM signals an MSI for it. */
	const unsigned char code[] = { X2APIC_ON(1), STI_HLT, 0xeb, 0xfd };
	const unsigned char handler[] = { HANDLER(0x43) };
	struct kvm_msi msi = { .address_lo = 0xfee00000, .data = 0x43 };
	struct runner r;
	struct vm vm, plain;
	struct cpu c;
	pthread_t t;

	/* Without the in-kernel APIC there is nothing to deliver to: EINVAL, as on KVM. */
	ASSERT_EQ(0, vm_create(&plain, 0));
	ASSERT_EQ(1, ioctl(plain.sys, KVM_CHECK_EXTENSION, KVM_CAP_SIGNAL_MSI));
	EXPECT_EQ(-1, ioctl(plain.fd, KVM_SIGNAL_MSI, &msi));
	EXPECT_EQ(EINVAL, errno) TH_LOG("no split irqchip");
	close(plain.fd);

	ASSERT_EQ(0, guest_with_handler(&vm, &c, code, sizeof(code), handler, sizeof(handler), 0x43));
	msi.flags = 2;
	EXPECT_EQ(-1, ioctl(vm.fd, KVM_SIGNAL_MSI, &msi));
	EXPECT_EQ(EINVAL, errno) TH_LOG("unknown flag");
	msi.flags = 0;
	/* No APIC with ID 5: KVM's -1. */
	msi.address_lo = 0xfee05000;
	EXPECT_EQ(-1, ioctl(vm.fd, KVM_SIGNAL_MSI, &msi));
	EXPECT_EQ(EPERM, errno) TH_LOG("no destination");
	/* SMI: no APIC here takes it. */
	msi.address_lo = 0xfee00000;
	msi.data = 0x200;
	EXPECT_EQ(0, ioctl(vm.fd, KVM_SIGNAL_MSI, &msi)) TH_LOG("SMI");

	r = (struct runner){ .c = &c, .cpu = 0 };
	ASSERT_EQ(0, pthread_create(&t, NULL, run_on, &r));
	usleep(200000); /* let the vCPU reach its HLT (the MSI would wait in its IRR anyway) */
	msi.data = 0x43;
	EXPECT_EQ(1, ioctl(vm.fd, KVM_SIGNAL_MSI, &msi)) TH_LOG("%s", strerror(errno));
	pthread_join(t, NULL);
	EXPECT_EQ(0, r.ret) TH_LOG("%s", strerror(r.err));
	EXPECT_EQ(KVM_EXIT_IO, c.run->exit_reason) TH_LOG("exit %u", c.run->exit_reason);
	EXPECT_EQ(0x43, io_byte(&c)) TH_LOG("the MSI's vector, through the IVT");
}

TEST(init_sipi_starts_an_application_processor)
{
	/*
	 * vCPU 0 (the BSP) sends INIT, then SIPI vector 2, to APIC ID 1 through the x2APIC ICR
	 * (mov ecx,0x830; mov eax,low; mov edx,1; wrmsr), then OUT 0x1001. vCPU 1 waits in
	 * KVM_RUN (UNINITIALIZED) until the SIPI starts it at 0200:0000 = 0x2000: OUT 0x1002.
	 */
	const unsigned char bsp[] = { X2APIC_ON(1),
		0x66, 0xb9, 0x30, 0x08, 0, 0, 0x66, 0xb8, 0x00, 0x45, 0, 0,
		0x66, 0xba, 1, 0, 0, 0, 0x0f, 0x30,
		0x66, 0xb9, 0x30, 0x08, 0, 0, 0x66, 0xb8, 0x02, 0x46, 0, 0,
		0x66, 0xba, 1, 0, 0, 0, 0x0f, 0x30,
		0xba, 0x01, 0x10, 0xee };
	const unsigned char ap[] = { 0xba, 0x02, 0x10, 0xee };
	struct kvm_mp_state mp;
	struct runner r[2];
	struct cpu c[2];
	pthread_t t[2];
	struct vm vm;

	ASSERT_LE(2, sysconf(_SC_NPROCESSORS_ONLN));
	ASSERT_EQ(0, vm_create(&vm, 1));
	put(&vm, 0x1000, bsp, sizeof(bsp));
	put(&vm, 0x2000, ap, sizeof(ap));
	ASSERT_EQ(0, cpu_create(&vm, &c[0], 0, 0x1000));
	ASSERT_EQ(0, cpu_create(&vm, &c[1], 1, 0));
	ASSERT_EQ(0, ioctl(c[1].fd, KVM_GET_MP_STATE, &mp));
	EXPECT_EQ(KVM_MP_STATE_UNINITIALIZED, mp.mp_state) TH_LOG("an AP waits for INIT/SIPI");
	ASSERT_EQ(0, ioctl(c[0].fd, KVM_GET_MP_STATE, &mp));
	EXPECT_EQ(KVM_MP_STATE_RUNNABLE, mp.mp_state) TH_LOG("the BSP runs");
	r[1] = (struct runner){ .c = &c[1], .cpu = 1 };
	ASSERT_EQ(0, pthread_create(&t[1], NULL, run_on, &r[1]));
	usleep(100000);
	r[0] = (struct runner){ .c = &c[0], .cpu = 0 };
	ASSERT_EQ(0, pthread_create(&t[0], NULL, run_on, &r[0]));
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	EXPECT_EQ(0, r[0].ret) TH_LOG("%s", strerror(r[0].err));
	EXPECT_EQ(0x1001, c[0].run->io.port);
	EXPECT_EQ(0, r[1].ret) TH_LOG("%s", strerror(r[1].err));
	EXPECT_EQ(KVM_EXIT_IO, c[1].run->exit_reason);
	EXPECT_EQ(0x1002, c[1].run->io.port) TH_LOG("the AP ran from the SIPI vector's page");
	ASSERT_EQ(0, ioctl(c[1].fd, KVM_GET_MP_STATE, &mp));
	EXPECT_EQ(KVM_MP_STATE_RUNNABLE, mp.mp_state);
}

TEST(smi_ipi_is_reported_not_dropped)
{
	/* ICR: SMI (delivery mode 2) to self: not emulated */
	const unsigned char code[] = { X2APIC_ON(1), WRMSR(0x830, 0x40200), 0xf4 };
	struct vm vm;
	struct cpu c;

	ASSERT_EQ(0, vm_create(&vm, 1));
	put(&vm, 0x1000, code, sizeof(code));
	ASSERT_EQ(0, cpu_create(&vm, &c, 0, 0x1000));
	ASSERT_EQ(0, ioctl(c.fd, KVM_RUN, 0));
	ASSERT_EQ(KVM_EXIT_INTERNAL_ERROR, c.run->exit_reason);
	EXPECT_EQ(KVM_INTERNAL_ERROR_EMULATION, c.run->internal.suberror);
	EXPECT_EQ(0x830, c.run->internal.data[1]) TH_LOG("the MSR");
	EXPECT_EQ(0x40200, c.run->internal.data[2]) TH_LOG("the ICR value");
}

TEST(halt_survives_a_signal)
{
	/* sti; hlt with nothing pending: a signal ends KVM_RUN (EINTR), the vCPU stays halted */
	const unsigned char code[] = { X2APIC_ON(1), STI_HLT, 0xba, 0x00, 0x10, 0xee };
	struct sigaction sa = { .sa_handler = on_alarm };
	struct itimerval it = { .it_value = { .tv_usec = 100000 } };
	struct kvm_mp_state mp;
	struct vm vm;
	struct cpu c;

	ASSERT_EQ(0, vm_create(&vm, 1));
	put(&vm, 0x1000, code, sizeof(code));
	ASSERT_EQ(0, cpu_create(&vm, &c, 0, 0x1000));
	ASSERT_EQ(0, sigaction(SIGALRM, &sa, NULL));
	ASSERT_EQ(0, setitimer(ITIMER_REAL, &it, NULL));
	EXPECT_EQ(-1, ioctl(c.fd, KVM_RUN, 0));
	EXPECT_EQ(EINTR, errno);
	ASSERT_EQ(0, ioctl(c.fd, KVM_GET_MP_STATE, &mp));
	EXPECT_EQ(KVM_MP_STATE_HALTED, mp.mp_state) TH_LOG("no spurious wake-up from HLT");
	/* Making it runnable from userspace lets it go on after the HLT. */
	mp.mp_state = KVM_MP_STATE_RUNNABLE;
	ASSERT_EQ(0, ioctl(c.fd, KVM_SET_MP_STATE, &mp));
	ASSERT_EQ(0, ioctl(c.fd, KVM_RUN, 0));
	EXPECT_EQ(KVM_EXIT_IO, c.run->exit_reason);
}

TEST(xapic_mmio_registers_and_self_ipi)
{
	/*
	 * DS.base = 0xfee00000 (the xAPIC page, outside every slot):
	 * mov eax,[0x30]; mov dx,0x1000; out dx,eax          (VERSION)
	 * mov dword [0xf0],0x1ff; mov dword [0x300],0x40043  (SVR; ICR: self, vector 0x43)
	 * sti; hlt
	 */
	const unsigned char code[] = { 0x66, 0xa1, 0x30, 0x00, 0xba, 0x00, 0x10, 0x66, 0xef,
		0x66, 0xc7, 0x06, 0xf0, 0x00, 0xff, 0x01, 0x00, 0x00,
		0x66, 0xc7, 0x06, 0x00, 0x03, 0x43, 0x00, 0x04, 0x00, STI_HLT };
	const unsigned char handler[] = { 0xba, 0x00, 0x10, 0xb0, 0x43, 0xee, 0xf4 };
	struct kvm_sregs sregs;
	struct vm vm;
	struct cpu c;

	ASSERT_EQ(0, guest_with_handler(&vm, &c, code, sizeof(code), handler, sizeof(handler), 0x43));
	ASSERT_EQ(0, ioctl(c.fd, KVM_GET_SREGS, &sregs));
	sregs.ds.base = 0xfee00000;
	ASSERT_EQ(0, ioctl(c.fd, KVM_SET_SREGS, &sregs));
	ASSERT_EQ(0, ioctl(c.fd, KVM_RUN, 0));
	ASSERT_EQ(KVM_EXIT_IO, c.run->exit_reason) TH_LOG("exit %u", c.run->exit_reason);
	EXPECT_EQ(0x50014, *(__u32 *)((char *)c.run + c.run->io.data_offset)) TH_LOG("VERSION");
	ASSERT_EQ(0, ioctl(c.fd, KVM_RUN, 0));
	ASSERT_EQ(KVM_EXIT_IO, c.run->exit_reason) TH_LOG("exit %u", c.run->exit_reason);
	EXPECT_EQ(0x43, io_byte(&c)) TH_LOG("the self-IPI, sent through the MMIO ICR");
}

TEST(get_set_lapic)
{
	struct kvm_lapic_state st;
	struct vm vm, novm;
	struct cpu c, d;

	ASSERT_EQ(0, vm_create(&vm, 1));
	ASSERT_EQ(0, cpu_create(&vm, &c, 0, 0x1000));
	ASSERT_EQ(0, ioctl(c.fd, KVM_GET_LAPIC, &st));
	EXPECT_EQ(0x50014, *(__u32 *)(st.regs + 0x30)) TH_LOG("VERSION");
	EXPECT_EQ(0xff, *(__u32 *)(st.regs + 0xf0)) TH_LOG("SVR after RESET");
	*(__u32 *)(st.regs + 0x20) = 5 << 24;	/* ID */
	*(__u32 *)(st.regs + 0x80) = 0x30;	/* TPR */
	*(__u32 *)(st.regs + 0xf0) = 0x1ff;	/* SVR: enabled */
	ASSERT_EQ(0, ioctl(c.fd, KVM_SET_LAPIC, &st));
	memset(&st, 0, sizeof(st));
	ASSERT_EQ(0, ioctl(c.fd, KVM_GET_LAPIC, &st));
	EXPECT_EQ(5 << 24, *(__u32 *)(st.regs + 0x20));
	EXPECT_EQ(0x30, *(__u32 *)(st.regs + 0x80));
	EXPECT_EQ(0x1ff, *(__u32 *)(st.regs + 0xf0));
	EXPECT_EQ(-1, ioctl(c.fd, KVM_GET_LAPIC, NULL));
	EXPECT_EQ(EFAULT, errno);

	ASSERT_EQ(0, vm_create(&novm, 0));
	ASSERT_EQ(0, cpu_create(&novm, &d, 0, 0x1000));
	EXPECT_EQ(-1, ioctl(d.fd, KVM_GET_LAPIC, &st)) TH_LOG("no in-kernel APIC");
	EXPECT_EQ(EINVAL, errno);
}

TEST(x2apic_msrs_need_x2apic_mode)
{
	/* rdmsr 0x802 (ID) in xAPIC mode: #GP, reported by the handler. */
	const unsigned char code[] = { 0x66, 0xb9, 0x02, 0x08, 0, 0, 0x0f, 0x32, 0xf4 };
	const unsigned char gp[] = { 0xba, 0x00, 0x10, 0xb0, 13, 0xee, 0xf4 };
	struct vm vm;
	struct cpu c;

	ASSERT_EQ(0, guest_with_handler(&vm, &c, code, sizeof(code), gp, sizeof(gp), 13));
	ASSERT_EQ(0, ioctl(c.fd, KVM_RUN, 0));
	ASSERT_EQ(KVM_EXIT_IO, c.run->exit_reason);
	EXPECT_EQ(13, io_byte(&c)) TH_LOG("#GP");
}

TEST_HARNESS_MAIN
