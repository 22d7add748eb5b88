// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_IOEVENTFD as a VMM's virtio devices use it: a guest write to a registered port or MMIO
 * address signals an eventfd and the guest goes on, without an exit to userspace. Port and
 * MMIO buses, a data match, any length (0), deassign, and KVM's errors. Written with the
 * upstream KVM selftest library so that it runs against kvm_intel and nvmx.
 */
#include <sys/eventfd.h>

#include "kvm_util.h"
#include "processor.h"

#define PORT_ANY	0x2000
#define PORT_MATCH	0x2004
#define PORT_GONE	0x2008
#define MMIO_GPA	0xd0000000ull	/* no memory slot: MMIO */

static void out8(__u16 port, __u8 v)
{
	asm volatile("outb %b0, %w1" : : "a"(v), "Nd"(port));
}

static void out16(__u16 port, __u16 v)
{
	asm volatile("outw %w0, %w1" : : "a"(v), "Nd"(port));
}

static void guest_code(void)
{
	out16(PORT_ANY, 0x1234);
	GUEST_SYNC(1);
	out8(PORT_MATCH, 0x5a);		/* the data match: signalled */
	out8(PORT_MATCH, 0x5b);		/* another value: an exit */
	GUEST_SYNC(2);
	*(volatile __u32 *)MMIO_GPA = 7;
	*(volatile __u8 *)(MMIO_GPA + 0x10) = 1;	/* length 0: any length hits */
	*(volatile __u64 *)(MMIO_GPA + 0x10) = 2;
	GUEST_SYNC(3);
	out8(PORT_GONE, 1);		/* deassigned: an exit */
	GUEST_DONE();
}

static int new_eventfd(void)
{
	int fd = eventfd(0, EFD_NONBLOCK);

	TEST_ASSERT(fd >= 0, "eventfd");
	return fd;
}

static __u64 count(int fd)
{
	__u64 n = 0;

	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

static int ioeventfd(struct kvm_vm *vm, int fd, __u64 addr, __u32 len, __u32 flags, __u64 datamatch)
{
	struct kvm_ioeventfd io = { .datamatch = datamatch, .addr = addr, .len = len, .fd = fd, .flags = flags };

	return __vm_ioctl(vm, KVM_IOEVENTFD, &io) ? errno : 0;
}

/* Run to the next ucall; an exit for another port or MMIO must be `expect_port`'s. */
static int run(struct kvm_vcpu *vcpu, __u16 expect_port, __u8 expect_data)
{
	struct kvm_run *r = vcpu->run;
	struct ucall uc;

	for (;;) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		if (r->io.port == PORT_ANY || r->io.port == PORT_MATCH || r->io.port == PORT_GONE) {
			TEST_ASSERT(r->io.port == expect_port && r->io.direction == KVM_EXIT_IO_OUT,
				    "an exit for port %#x (expected %#x)", r->io.port, expect_port);
			TEST_ASSERT_EQ(*((__u8 *)r + r->io.data_offset), expect_data);
			expect_port = 0;
			continue;
		}
		TEST_ASSERT(!expect_port, "no exit for port %#x", expect_port);
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
		case UCALL_SYNC:
			return uc.args[1];
		case UCALL_DONE:
			return 0;
		default:
			TEST_FAIL("unexpected ucall %lu", uc.cmd);
		}
	}
}

static void test_errors(struct kvm_vm *vm, int fd)
{
	int pipefd[2];

	TEST_ASSERT(!pipe(pipefd), "pipe");
	TEST_ASSERT_EQ(ioeventfd(vm, fd, 0x3000, 3, KVM_IOEVENTFD_FLAG_PIO, 0), EINVAL);
	TEST_ASSERT_EQ(ioeventfd(vm, fd, 0x3000, 4, 1u << 5, 0), EINVAL);
	TEST_ASSERT_EQ(ioeventfd(vm, fd, 0x3000, 0, KVM_IOEVENTFD_FLAG_DATAMATCH, 0), EINVAL);
	TEST_ASSERT_EQ(ioeventfd(vm, fd, ~0ull - 3, 8, 0, 0), EINVAL);
	TEST_ASSERT_EQ(ioeventfd(vm, -1, 0x3000, 4, 0, 0), EBADF);
	TEST_ASSERT_EQ(ioeventfd(vm, pipefd[0], 0x3000, 4, 0, 0), EINVAL);
	/* PORT_ANY is registered (wildcard, length 2): these collide. */
	TEST_ASSERT_EQ(ioeventfd(vm, fd, PORT_ANY, 2, KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DATAMATCH, 1), EEXIST);
	TEST_ASSERT_EQ(ioeventfd(vm, fd, PORT_ANY, 0, KVM_IOEVENTFD_FLAG_PIO, 0), EEXIST);
	/* ... and these do not: another length, the MMIO bus. */
	TEST_ASSERT_EQ(ioeventfd(vm, fd, PORT_ANY, 4, KVM_IOEVENTFD_FLAG_PIO, 0), 0);
	TEST_ASSERT_EQ(ioeventfd(vm, fd, PORT_ANY, 2, 0, 0), 0);
	TEST_ASSERT_EQ(ioeventfd(vm, fd, PORT_ANY, 4, KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DEASSIGN, 0), 0);
	TEST_ASSERT_EQ(ioeventfd(vm, fd, PORT_ANY, 2, KVM_IOEVENTFD_FLAG_DEASSIGN, 0), 0);
	/* A deassign must name one exactly. */
	TEST_ASSERT_EQ(ioeventfd(vm, fd, PORT_ANY, 4, KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DEASSIGN, 0), ENOENT);
	TEST_ASSERT_EQ(ioeventfd(vm, fd, PORT_ANY, 2, KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DEASSIGN |
				 KVM_IOEVENTFD_FLAG_DATAMATCH, 0), ENOENT);
	close(pipefd[0]);
	close(pipefd[1]);
}

int main(void)
{
	int any = new_eventfd(), match = new_eventfd(), mmio = new_eventfd(), wide = new_eventfd();
	int gone = new_eventfd(), other = new_eventfd();
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_ASSERT(kvm_check_cap(KVM_CAP_IOEVENTFD) && kvm_check_cap(KVM_CAP_IOEVENTFD_ANY_LENGTH) &&
		    kvm_check_cap(KVM_CAP_IOEVENTFD_NO_LENGTH), "KVM_IOEVENTFD is offered");
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	virt_map(vm, MMIO_GPA, MMIO_GPA, 1);

	TEST_ASSERT_EQ(ioeventfd(vm, any, PORT_ANY, 2, KVM_IOEVENTFD_FLAG_PIO, 0), 0);
	TEST_ASSERT_EQ(ioeventfd(vm, match, PORT_MATCH, 1, KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DATAMATCH, 0x5a), 0);
	TEST_ASSERT_EQ(ioeventfd(vm, mmio, MMIO_GPA, 4, 0, 0), 0);
	TEST_ASSERT_EQ(ioeventfd(vm, wide, MMIO_GPA + 0x10, 0, 0, 0), 0);
	TEST_ASSERT_EQ(ioeventfd(vm, gone, PORT_GONE, 1, KVM_IOEVENTFD_FLAG_PIO, 0), 0);
	test_errors(vm, other);
	pr_info("KVM_IOEVENTFD rules passed\n");

	TEST_ASSERT_EQ(run(vcpu, 0, 0), 1);
	TEST_ASSERT_EQ(count(any), 1);
	pr_info("port write signalled without an exit passed\n");
	TEST_ASSERT_EQ(run(vcpu, PORT_MATCH, 0x5b), 2);
	TEST_ASSERT_EQ(count(match), 1);
	pr_info("data match passed\n");
	TEST_ASSERT_EQ(run(vcpu, 0, 0), 3);
	TEST_ASSERT_EQ(count(mmio), 1);
	TEST_ASSERT_EQ(count(wide), 2);
	pr_info("MMIO writes signalled without an exit passed\n");
	TEST_ASSERT_EQ(ioeventfd(vm, gone, PORT_GONE, 1, KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DEASSIGN, 0), 0);
	TEST_ASSERT_EQ(run(vcpu, PORT_GONE, 1), 0);
	TEST_ASSERT_EQ(count(gone), 0);
	TEST_ASSERT_EQ(count(other), 0);
	pr_info("deassigned ioeventfd passed\n");
	kvm_vm_free(vm);
	return 0;
}
