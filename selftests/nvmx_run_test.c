// SPDX-License-Identifier: GPL-2.0
/*
 * KVM_RUN on /dev/nvmx with small real-mode guests (unrestricted guest): I/O exits in both
 * directions, HLT, CPUID, triple fault, invalid guest state, an access outside every slot,
 * immediate_exit and a signal interrupting a spinning guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include "kselftest_harness.h"

#define PAGE 4096UL
#define CODE_GPA 0x1000

struct guest {
	int sys, vm, vcpu;
	char *mem;
	struct kvm_run *run;
};

/* A 64 KiB VM with `code` at 0x1000, CS = 0 (base 0), IP = 0x1000, real mode. */
static int guest_create(struct guest *g, const unsigned char *code, size_t len)
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
	if (g->vcpu < 0)
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

static void guest_destroy(struct guest *g)
{
	munmap(g->run, 2 * PAGE);
	munmap(g->mem, 16 * PAGE);
	close(g->vcpu);
	close(g->vm);
	close(g->sys);
}

static const char *exit_name(__u32 r)
{
	static char buf[32];

	switch (r) {
	case KVM_EXIT_IO: return "IO";
	case KVM_EXIT_HLT: return "HLT";
	case KVM_EXIT_SHUTDOWN: return "SHUTDOWN";
	case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
	case KVM_EXIT_INTR: return "INTR";
	case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
	}
	snprintf(buf, sizeof(buf), "%u", r);
	return buf;
}

#define ASSERT_EXIT(g, reason)							\
	ASSERT_EQ(reason, (g)->run->exit_reason)				\
		TH_LOG("exit %s (internal suberror %u data %llx %llx %llx)",	\
		       exit_name((g)->run->exit_reason),			\
		       (g)->run->internal.suberror,				\
		       (unsigned long long)(g)->run->internal.data[0],		\
		       (unsigned long long)(g)->run->internal.data[1],		\
		       (unsigned long long)(g)->run->internal.data[2])

TEST(out_in_hlt)
{
	/* mov dx,0x1000; mov al,'A'; out dx,al; in al,dx; mov bl,al; hlt */
	static const unsigned char code[] = { 0xba, 0x00, 0x10, 0xb0, 0x41, 0xee, 0xec,
					      0x88, 0xc3, 0xf4 };
	struct guest g;
	struct kvm_regs regs;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code))) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0)) TH_LOG("%s", strerror(errno));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	EXPECT_EQ(KVM_EXIT_IO_OUT, g.run->io.direction);
	EXPECT_EQ(1, g.run->io.size);
	EXPECT_EQ(0x1000, g.run->io.port);
	EXPECT_EQ(1, g.run->io.count);
	EXPECT_EQ('A', *((char *)g.run + g.run->io.data_offset));

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	EXPECT_EQ(KVM_EXIT_IO_IN, g.run->io.direction);
	*((unsigned char *)g.run + g.run->io.data_offset) = 0x5a;

	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_HLT);
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_REGS, &regs));
	EXPECT_EQ(0x5a, regs.rbx & 0xff) TH_LOG("the IN data reached the guest");
	EXPECT_EQ(0x5a, regs.rax & 0xff) TH_LOG("AL holds the IN result");
	EXPECT_EQ(CODE_GPA + sizeof(code), regs.rip) TH_LOG("RIP after HLT");
	guest_destroy(&g);
}

TEST(cpuid_hides_vmx_and_shows_a_hypervisor)
{
	/* mov eax,1; cpuid; mov eax,ecx; mov dx,0x1000; out dx,eax; hlt */
	static const unsigned char code[] = { 0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2,
					      0x66, 0x89, 0xc8, 0xba, 0x00, 0x10, 0x66, 0xef,
					      0xf4 };
	struct guest g;
	__u32 ecx;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	EXPECT_EQ(4, g.run->io.size);
	ecx = *(__u32 *)((char *)g.run + g.run->io.data_offset);
	EXPECT_EQ(0, ecx & (1U << 5)) TH_LOG("VMX is not offered to this guest");
	EXPECT_NE(0, ecx & (1U << 31)) TH_LOG("hypervisor bit");
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_HLT);
	guest_destroy(&g);
}

TEST(triple_fault_is_shutdown)
{
	/* int3 with an IDT limit of 0: #GP, #DF, triple fault. */
	static const unsigned char code[] = { 0xcc };
	struct guest g;
	struct kvm_sregs sregs;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_SREGS, &sregs));
	sregs.idt.limit = 0;
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_SET_SREGS, &sregs));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_SHUTDOWN);
	guest_destroy(&g);
}

TEST(invalid_guest_state_is_fail_entry)
{
	static const unsigned char code[] = { 0xf4 };
	struct guest g;
	struct kvm_sregs sregs;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_SREGS, &sregs));
	sregs.cs.type = 0; /* a read-only data segment cannot be CS (SDM 27.3.1.2) */
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_SET_SREGS, &sregs));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_FAIL_ENTRY);
	EXPECT_EQ(0x80000021ULL, g.run->fail_entry.hardware_entry_failure_reason);
	guest_destroy(&g);
}

TEST(access_outside_slots_reports_the_gpa)
{
	/* mov [0], al with DS.base = 0x200000, outside the 64 KiB slot */
	static const unsigned char code[] = { 0xa2, 0x00, 0x00, 0xf4 };
	struct guest g;
	struct kvm_sregs sregs;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_GET_SREGS, &sregs));
	sregs.ds.base = 0x200000;
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_SET_SREGS, &sregs));
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_INTERNAL_ERROR);
	EXPECT_EQ(KVM_INTERNAL_ERROR_EMULATION, g.run->internal.suberror);
	EXPECT_EQ(48, g.run->internal.data[0]) TH_LOG("EPT violation");
	EXPECT_EQ(0x200000, g.run->internal.data[2]) TH_LOG("the guest-physical address");
	guest_destroy(&g);
}

TEST(immediate_exit_is_eintr)
{
	static const unsigned char code[] = { 0xf4 };
	struct guest g;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	g.run->immediate_exit = 1;
	EXPECT_EQ(-1, ioctl(g.vcpu, KVM_RUN, 0));
	EXPECT_EQ(EINTR, errno);
	EXPECT_EQ(KVM_EXIT_INTR, g.run->exit_reason);
	g.run->immediate_exit = 0;
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_HLT);
	guest_destroy(&g);
}

static void on_alarm(int sig)
{
	(void)sig;
}

TEST(signal_interrupts_a_spinning_guest)
{
	/* jmp $ */
	static const unsigned char code[] = { 0xeb, 0xfe };
	struct sigaction sa = { .sa_handler = on_alarm };
	struct itimerval t = { .it_value = { .tv_usec = 200000 } };
	struct guest g;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(0, sigaction(SIGALRM, &sa, NULL));
	ASSERT_EQ(0, setitimer(ITIMER_REAL, &t, NULL));
	EXPECT_EQ(-1, ioctl(g.vcpu, KVM_RUN, 0));
	EXPECT_EQ(EINTR, errno);
	EXPECT_EQ(KVM_EXIT_INTR, g.run->exit_reason);
	guest_destroy(&g);
}

struct spin {
	int vcpu;
	int ret, err;
};

static void *spin_thread(void *arg)
{
	struct spin *s = arg;

	s->ret = ioctl(s->vcpu, KVM_RUN, 0);
	s->err = errno;
	return NULL;
}

TEST(close_vm_while_vcpu_runs)
{
	static const unsigned char code[] = { 0xeb, 0xfe };
	struct sigaction sa = { .sa_handler = on_alarm };
	struct guest g;
	struct spin s;
	pthread_t t;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	s.vcpu = g.vcpu;
	ASSERT_EQ(0, pthread_create(&t, NULL, spin_thread, &s));
	usleep(100000);
	/* The running vCPU holds the VM: closing its fd and the memory mapping is safe. */
	close(g.vm);
	munmap(g.mem, 16 * PAGE);
	usleep(100000);
	pthread_kill(t, SIGUSR1);
	pthread_join(t, NULL);
	EXPECT_EQ(-1, s.ret);
	EXPECT_EQ(EINTR, s.err);
	munmap(g.run, 2 * PAGE);
	close(g.vcpu);
	close(g.sys);
}

/* Point real-mode IVT entry `vector` at a handler that reports the vector on port 0x1000. */
static void set_reporting_handler(struct guest *g, int vector, unsigned int handler)
{
	const unsigned char code[] = { 0xba, 0x00, 0x10, 0xb0, (unsigned char)vector, 0xee, 0xf4 };
	unsigned short *ivt = (unsigned short *)g->mem;

	memcpy(g->mem + handler, code, sizeof(code));
	ivt[vector * 2] = handler;	/* offset */
	ivt[vector * 2 + 1] = 0;	/* segment */
}

TEST(setting_cr4_vmxe_is_gp)
{
	/* mov eax,cr4; or eax,0x2000; mov cr4,eax; hlt */
	static const unsigned char code[] = { 0x0f, 0x20, 0xe0, 0x66, 0x0d, 0x00, 0x20, 0x00,
					      0x00, 0x0f, 0x22, 0xe0, 0xf4 };
	struct guest g;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	set_reporting_handler(&g, 13, 0x3000);
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	EXPECT_EQ(13, *((unsigned char *)g.run + g.run->io.data_offset)) TH_LOG("#GP delivered");
	guest_destroy(&g);
}

TEST(rdmsr_of_an_unknown_msr_is_gp)
{
	/* mov ecx,0x12345678; rdmsr; hlt */
	static const unsigned char code[] = { 0x66, 0xb9, 0x78, 0x56, 0x34, 0x12, 0x0f, 0x32,
					      0xf4 };
	struct guest g;

	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	set_reporting_handler(&g, 13, 0x3000);
	ASSERT_EQ(0, ioctl(g.vcpu, KVM_RUN, 0));
	ASSERT_EXIT(&g, KVM_EXIT_IO);
	EXPECT_EQ(13, *((unsigned char *)g.run + g.run->io.data_offset)) TH_LOG("#GP delivered");
	guest_destroy(&g);
}

struct vcpu_thread {
	int vcpu, cpu, port, ret, err;
	struct kvm_run *run;
	unsigned long long rip;
};

static void *vcpu_thread(void *arg)
{
	struct vcpu_thread *t = arg;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(t->cpu, &set);
	t->ret = sched_setaffinity(0, sizeof(set), &set);
	if (!t->ret)
		t->ret = ioctl(t->vcpu, KVM_RUN, 0);
	t->err = errno;
	t->port = t->run->io.port;
	return NULL;
}

TEST(two_vcpus_on_two_cpus)
{
	/* vCPU n runs "mov dx, 0x1000 + n; out dx, al; hlt" from its own page. */
	static const unsigned char code0[] = { 0xba, 0x00, 0x10, 0xee, 0xf4 };
	static const unsigned char code1[] = { 0xba, 0x01, 0x10, 0xee, 0xf4 };
	struct vcpu_thread t[2];
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = 0x2000, .rflags = 2 };
	pthread_t th[2];
	struct guest g;

	ASSERT_LE(2, sysconf(_SC_NPROCESSORS_ONLN));
	ASSERT_EQ(0, guest_create(&g, code0, sizeof(code0)));
	memcpy(g.mem + 0x2000, code1, sizeof(code1));
	t[0] = (struct vcpu_thread){ .vcpu = g.vcpu, .cpu = 0, .run = g.run };
	t[1] = (struct vcpu_thread){ .vcpu = ioctl(g.vm, KVM_CREATE_VCPU, 1), .cpu = 1 };
	ASSERT_GE(t[1].vcpu, 0);
	t[1].run = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, t[1].vcpu, 0);
	ASSERT_NE(MAP_FAILED, t[1].run);
	ASSERT_EQ(0, ioctl(t[1].vcpu, KVM_GET_SREGS, &sregs));
	sregs.cs.selector = 0;
	sregs.cs.base = 0;
	ASSERT_EQ(0, ioctl(t[1].vcpu, KVM_SET_SREGS, &sregs));
	ASSERT_EQ(0, ioctl(t[1].vcpu, KVM_SET_REGS, &regs));

	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(0, pthread_create(&th[i], NULL, vcpu_thread, &t[i]));
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		EXPECT_EQ(0, t[i].ret) TH_LOG("vCPU %d: %s", i, strerror(t[i].err));
		EXPECT_EQ(KVM_EXIT_IO, t[i].run->exit_reason) TH_LOG("vCPU %d", i);
		EXPECT_EQ(0x1000 + i, t[i].port) TH_LOG("vCPU %d ran its own code", i);
	}
	for (int i = 0; i < 2; i++) {
		/* Each finishes on the other CPU: vCPUs move freely between runs. */
		t[i].cpu = !i;
		ASSERT_EQ(0, pthread_create(&th[i], NULL, vcpu_thread, &t[i]));
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		EXPECT_EQ(0, t[i].ret);
		EXPECT_EQ(KVM_EXIT_HLT, t[i].run->exit_reason) TH_LOG("vCPU %d", i);
	}
	munmap(t[1].run, 2 * PAGE);
	close(t[1].vcpu);
	guest_destroy(&g);
}

TEST_HARNESS_MAIN
