// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_IRQFD with the split irqchip, as QEMU's virtio devices use it: signalling the eventfd
 * injects the GSI's MSI route without a KVM ioctl; an eventfd signalled before the irqfd is
 * assigned injects at once; deassign stops it; KVM's errors. Written with the upstream KVM
 * selftest library, with the split irqchip on kvm_intel and nvmx alike
 * (nvmx_split_irqchip.h).
 */
#include <sys/eventfd.h>

#include "kvm_util.h"
#include "processor.h"
#include "nvmx_stages.h"
#include "apic.h"
#include "nvmx_split_irqchip.h"

#define GSI_A		10
#define GSI_B		12
#define VECTOR_A	0x55
#define VECTOR_B	0x56

static volatile int count_a, count_b;

static void handler_a(struct ex_regs *regs)
{
	count_a++;
	x2apic_write_reg(APIC_EOI, 0);
}

static void handler_b(struct ex_regs *regs)
{
	count_b++;
	x2apic_write_reg(APIC_EOI, 0);
}

static void wait_for(volatile int *count, int n)
{
	while (*count < n)
		this_cpu_has(X86_FEATURE_X2APIC);	/* an exit per round */
}

static void guest_code(void)
{
	x2apic_enable();
	asm volatile("sti");
	GUEST_SYNC(1);
	wait_for(&count_a, 1);
	GUEST_SYNC(2);
	wait_for(&count_b, 1);
	GUEST_SYNC(3);
	GUEST_ASSERT_EQ(count_a, 1);
	GUEST_DONE();
}

static int irqfd(struct kvm_vm *vm, int fd, __u32 gsi, __u32 flags)
{
	struct kvm_irqfd i = { .fd = fd, .gsi = gsi, .flags = flags };

	return __vm_ioctl(vm, KVM_IRQFD, &i) ? errno : 0;
}

static void notify(int fd)
{
	__u64 one = 1;

	TEST_ASSERT(write(fd, &one, sizeof(one)) == sizeof(one), "eventfd write");
}

/* The eventfd's count: an irqfd consumes it at each signal (KVM reads it in the wake-up). */
static __u64 count(int fd)
{
	__u64 n = 0;

	return read(fd, &n, sizeof(n)) == sizeof(n) ? n : 0;
}

static void set_routes(struct kvm_vm *vm)
{
	struct {
		struct kvm_irq_routing hdr;
		struct kvm_irq_routing_entry e[2];
	} t = { .hdr.nr = 2 };

	t.e[0].gsi = GSI_A;
	t.e[0].type = KVM_IRQ_ROUTING_MSI;
	t.e[0].u.msi.address_lo = 0xfee00000;
	t.e[0].u.msi.data = VECTOR_A;
	t.e[1] = t.e[0];
	t.e[1].gsi = GSI_B;
	t.e[1].u.msi.data = VECTOR_B;
	vm_ioctl(vm, KVM_SET_GSI_ROUTING, &t.hdr);
}

int main(void)
{
	int a = eventfd(0, EFD_NONBLOCK), b = eventfd(0, EFD_NONBLOCK), pipefd[2];
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm, *bare;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_X2APIC));
	TEST_ASSERT(a >= 0 && b >= 0 && !pipe(pipefd), "eventfds");
	TEST_ASSERT(kvm_check_cap(KVM_CAP_IRQFD), "KVM_IRQFD is offered");

	bare = vm_create_barebones();
	TEST_ASSERT_EQ(irqfd(bare, a, GSI_A, 0), EINVAL);	/* no in-kernel irqchip */
	kvm_vm_free(bare);

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	vm_install_exception_handler(vm, VECTOR_A, handler_a);
	vm_install_exception_handler(vm, VECTOR_B, handler_b);
	set_routes(vm);

	TEST_ASSERT_EQ(irqfd(vm, a, GSI_A, 1u << 2), EINVAL);
	TEST_ASSERT_EQ(irqfd(vm, a, GSI_A, KVM_IRQFD_FLAG_RESAMPLE), EINVAL);	/* split irqchip */
	TEST_ASSERT_EQ(irqfd(vm, -1, GSI_A, 0), EBADF);
	TEST_ASSERT_EQ(irqfd(vm, pipefd[0], GSI_A, 0), EINVAL);
	TEST_ASSERT_EQ(irqfd(vm, a, GSI_A, 0), 0);
	TEST_ASSERT_EQ(irqfd(vm, a, GSI_B, 0), EBUSY);	/* one irqfd per eventfd */
	TEST_ASSERT_EQ(irqfd(vm, b, GSI_A + 1, KVM_IRQFD_FLAG_DEASSIGN), 0);	/* none: no error */
	pr_info("KVM_IRQFD rules passed\n");

	nvmx_run_to_stage(vcpu, 1);
	notify(a);
	TEST_ASSERT_EQ(count(a), 0);	/* the irqfd took the count */
	nvmx_run_to_stage(vcpu, 2);
	pr_info("a signalled irqfd injects its GSI passed\n");

	/* Signalled before the irqfd exists: injected when it is assigned. */
	notify(b);
	TEST_ASSERT_EQ(irqfd(vm, b, GSI_B, 0), 0);
	nvmx_run_to_stage(vcpu, 3);
	pr_info("an eventfd signalled before KVM_IRQFD passed\n");

	TEST_ASSERT_EQ(irqfd(vm, a, GSI_A, KVM_IRQFD_FLAG_DEASSIGN), 0);
	notify(a);
	TEST_ASSERT_EQ(count(a), 1);	/* no irqfd any more: the count stays */
	nvmx_run_to_stage(vcpu, 0);
	pr_info("deassigned irqfd passed\n");
	kvm_vm_free(vm);
	return 0;
}
