// SPDX-License-Identifier: GPL-2.0-only
/*
 * The VMM's PIC with the split irqchip, as QEMU's pc and q35 machines drive it: an
 * interrupt of the userspace 8259 reaches the vCPU with KVM_INTERRUPT (the ExtINT its
 * in-kernel local APIC takes through LINT0), and KVM_RUN's request_interrupt_window /
 * KVM_EXIT_IRQ_WINDOW_OPEN / ready_for_interrupt_injection say when one can be injected.
 * KVM's rules: one ExtINT waits at a time (EEXIST), vectors above 255 are EINVAL, the
 * ExtINT waits while RFLAGS.IF = 0 or LINT0 is masked and is delivered when the guest can
 * take it. Written with the upstream KVM selftest library
 * so that it runs against kvm_intel and nvmx, with the split irqchip on both.
 */
#include "kvm_util.h"
#include "processor.h"
#include "apic.h"
#include "nvmx_stages.h"
#include "nvmx_split_irqchip.h"

#define VECTOR	0x30
#ifndef APIC_LVT0
#define APIC_LVT0	0x350
#endif

static volatile int count;
static volatile int last;

#define HANDLER(n)						\
static void handler_##n(struct ex_regs *regs)			\
{								\
	count++;						\
	last = VECTOR + n;					\
}
HANDLER(0) HANDLER(1) HANDLER(2) HANDLER(3)

static void spin(void)
{
	for (int i = 0; i < 1000; i++)
		asm volatile("nop");
}

static void guest_code(void)
{
	asm volatile("cli");
	GUEST_SYNC(1);
	/* The host queued VECTOR while IF = 0: it waits ... */
	spin();
	GUEST_ASSERT_EQ(count, 0);
	/* ... until the guest can take it. */
	asm volatile("sti; nop");
	GUEST_ASSERT_EQ(count, 1);
	GUEST_ASSERT_EQ(last, VECTOR);
	GUEST_SYNC(2);
	/* Queued with IF = 1: taken at once. */
	GUEST_ASSERT_EQ(count, 2);
	GUEST_ASSERT_EQ(last, VECTOR + 1);
	GUEST_SYNC(3);
	/* The host's window request was answered at once; now with IF = 0. */
	asm volatile("cli");
	GUEST_SYNC(4);
	spin();
	/* The window opens here: the host injects VECTOR + 2. */
	asm volatile("sti; nop");
	GUEST_ASSERT_EQ(count, 3);
	GUEST_ASSERT_EQ(last, VECTOR + 2);
	/* LINT0 masked: the APIC takes no ExtINT (SDM 11.5.1). */
	x2apic_enable();
	x2apic_write_reg(APIC_LVT0, APIC_LVT_MASKED | APIC_DM_EXTINT);
	GUEST_SYNC(5);
	spin();
	GUEST_ASSERT_EQ(count, 3);
	x2apic_write_reg(APIC_LVT0, APIC_DM_EXTINT);
	GUEST_SYNC(6);
	GUEST_ASSERT_EQ(count, 4);
	GUEST_ASSERT_EQ(last, VECTOR + 3);
	GUEST_DONE();
}

static int kvm_interrupt(struct kvm_vcpu *vcpu, __u32 irq)
{
	struct kvm_interrupt i = { .irq = irq };

	return __vcpu_ioctl(vcpu, KVM_INTERRUPT, &i);
}

/* With request_interrupt_window set, KVM_RUN must stop at KVM_EXIT_IRQ_WINDOW_OPEN, ready. */
static void expect_window_exit(struct kvm_vcpu *vcpu, const char *what)
{
	struct kvm_run *run = vcpu->run;

	run->request_interrupt_window = 1;
	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IRQ_WINDOW_OPEN);
	TEST_ASSERT(run->if_flag && run->ready_for_interrupt_injection, "%s", what);
	run->request_interrupt_window = 0;
}

int main(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct kvm_run *run;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_X2APIC));
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	for (int n = 0; n < 4; n++) {
		void (*h[])(struct ex_regs *) = { handler_0, handler_1, handler_2, handler_3 };

		vm_install_exception_handler(vm, VECTOR + n, h[n]);
	}
	run = vcpu->run;

	nvmx_run_to_stage(vcpu, 1);
	TEST_ASSERT(!run->if_flag && !run->ready_for_interrupt_injection, "IF = 0: not ready");
	TEST_ASSERT(kvm_interrupt(vcpu, 256) == -1 && errno == EINVAL, "vector 256: EINVAL");
	TEST_ASSERT_EQ(kvm_interrupt(vcpu, VECTOR), 0);
	TEST_ASSERT(kvm_interrupt(vcpu, VECTOR + 1) == -1 && errno == EEXIST, "a second ExtINT: EEXIST");
	nvmx_run_to_stage(vcpu, 2);
	pr_info("ExtINT waits for IF, one at a time, EINVAL/EEXIST passed\n");
	TEST_ASSERT(run->if_flag && run->ready_for_interrupt_injection, "IF = 1: ready");
	TEST_ASSERT_EQ(kvm_interrupt(vcpu, VECTOR + 1), 0);
	nvmx_run_to_stage(vcpu, 3);

	/* Asked for with the window open: KVM_RUN returns at once. */
	expect_window_exit(vcpu, "window open: ready");
	nvmx_run_to_stage(vcpu, 4);
	/* Asked for with IF = 0: the exit comes when the guest's STI opens the window. */
	expect_window_exit(vcpu, "STI opened the window");
	TEST_ASSERT_EQ(kvm_interrupt(vcpu, VECTOR + 2), 0);
	nvmx_run_to_stage(vcpu, 5);
	pr_info("request_interrupt_window, KVM_EXIT_IRQ_WINDOW_OPEN passed\n");

	TEST_ASSERT(run->if_flag && !run->ready_for_interrupt_injection, "LINT0 masked: not ready");
	TEST_ASSERT_EQ(kvm_interrupt(vcpu, VECTOR + 3), 0);
	nvmx_run_to_stage(vcpu, 6);
	/*
	 * Queued, not lost: KVM looks at it again at its next event check, which a VMM's
	 * state write (KVM_SET_REGS, as QEMU does at every sync) forces; nvmx looks before
	 * every entry and may have delivered it already.
	 */
	{
		struct kvm_regs regs;

		vcpu_regs_get(vcpu, &regs);
		vcpu_regs_set(vcpu, &regs);
	}
	nvmx_run_to_stage(vcpu, 0);
	pr_info("ExtINT waits while LINT0 is masked passed\n");
	kvm_vm_free(vm);
	return 0;
}
