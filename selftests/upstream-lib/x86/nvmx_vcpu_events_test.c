// SPDX-License-Identifier: GPL-2.0-only
/*
 * What a VMM reads and writes about a vCPU's events, as QEMU does at every state sync:
 * KVM_GET/SET_VCPU_EVENTS (an exception injected with and without an error code, an NMI
 * made pending, the interrupt shadow and NMI mask round trip, KVM's refusals), the fields of
 * struct kvm_run that KVM fills at the end of every KVM_RUN (if_flag, cr8, apic_base,
 * ready_for_interrupt_injection, flags), and KVM_SET_VAPIC_ADDR(0), which QEMU calls at
 * every APIC reset; KVM_NMI. Written with the upstream KVM selftest library so that it runs against
 * kvm_intel and nvmx, with the split irqchip on both.
 */
#include "kvm_util.h"
#include "processor.h"
#include "nvmx_stages.h"
#include "apic.h"
#include "nvmx_split_irqchip.h"

#ifndef KVM_RUN_X86_GUEST_MODE
#define KVM_RUN_X86_GUEST_MODE (1 << 2)
#endif

static volatile int ud_count, gp_count, nmi_count;
static volatile __u64 gp_code;

static void ud_handler(struct ex_regs *regs)
{
	ud_count++;
}

static void gp_handler(struct ex_regs *regs)
{
	gp_count++;
	gp_code = regs->error_code;
}

static void nmi_handler(struct ex_regs *regs)
{
	nmi_count++;
}

static void guest_code(void)
{
	asm volatile("cli");
	GUEST_SYNC(1);
	/* The host injected #UD here. */
	GUEST_ASSERT_EQ(ud_count, 1);
	GUEST_SYNC(2);
	/* ... and #GP with error code 0x18. */
	GUEST_ASSERT_EQ(gp_count, 1);
	GUEST_ASSERT_EQ(gp_code, 0x18);
	set_cr8(5);
	asm volatile("sti; nop");
	GUEST_SYNC(3);
	/* ... and made an NMI pending. */
	GUEST_ASSERT_EQ(nmi_count, 1);
	GUEST_ASSERT_EQ(ud_count, 1);
	GUEST_SYNC(4);
	/* ... and queued one with KVM_NMI. */
	GUEST_ASSERT_EQ(nmi_count, 2);
	GUEST_DONE();
}

static void expect_einval(struct kvm_vcpu *vcpu, struct kvm_vcpu_events *e, const char *what)
{
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_SET_VCPU_EVENTS, e) == -1 && errno == EINVAL, "%s: EINVAL", what);
}

static void inject_exception(struct kvm_vcpu *vcpu, __u8 vector, int has_code, __u32 code)
{
	struct kvm_vcpu_events e;

	vcpu_events_get(vcpu, &e);
	TEST_ASSERT(!e.exception.injected && !e.interrupt.injected && !e.nmi.injected, "nothing in flight");
	e.flags = 0;
	e.exception.injected = 1;
	e.exception.nr = vector;
	e.exception.has_error_code = has_code;
	e.exception.error_code = code;
	vcpu_events_set(vcpu, &e);
	vcpu_events_get(vcpu, &e);
	TEST_ASSERT(e.exception.injected && e.exception.nr == vector, "#%u reads back injected", vector);
	TEST_ASSERT(e.exception.has_error_code == has_code && (!has_code || e.exception.error_code == code),
		    "#%u's error code reads back", vector);
}

static void check_run_summary(struct kvm_vcpu *vcpu, int if_flag, __u64 cr8)
{
	struct kvm_run *run = vcpu->run;
	__u64 apic_base = vcpu_get_msr(vcpu, MSR_IA32_APICBASE);

	TEST_ASSERT_EQ(run->if_flag, if_flag);
	TEST_ASSERT_EQ(run->cr8, cr8);
	TEST_ASSERT_EQ(run->apic_base, apic_base);
	TEST_ASSERT(apic_base & MSR_IA32_APICBASE_ENABLE, "the APIC is on: %#llx", apic_base);
	/*
	 * With the split irqchip (on both hypervisors: nvmx_split_irqchip.h), KVM's
	 * kvm_vcpu_ready_for_interrupt_injection: IF, no shadow, nothing being injected, and
	 * LINT0 taking ExtINT, which it does on vCPU 0 under KVM's default quirk. (With a PIC
	 * in the kernel it would always be 1.)
	 */
	TEST_ASSERT_EQ(run->ready_for_interrupt_injection, if_flag);
	TEST_ASSERT(!(run->flags & KVM_RUN_X86_GUEST_MODE), "not in guest mode");
}

static void test_refusals(struct kvm_vcpu *vcpu)
{
	struct kvm_vcpu_events e;

	vcpu_events_get(vcpu, &e);
	TEST_ASSERT((e.flags & (KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW)) ==
		    (KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW), "flags %#x", e.flags);
	TEST_ASSERT(!(e.flags & (KVM_VCPUEVENT_VALID_PAYLOAD | KVM_VCPUEVENT_VALID_TRIPLE_FAULT)),
		    "no payload or triple-fault state without their capabilities");
	e.flags = 1u << 6;
	expect_einval(vcpu, &e, "an unknown flag");
	e.flags = KVM_VCPUEVENT_VALID_PAYLOAD;
	expect_einval(vcpu, &e, "a payload without KVM_CAP_EXCEPTION_PAYLOAD");
	e.flags = KVM_VCPUEVENT_VALID_TRIPLE_FAULT;
	expect_einval(vcpu, &e, "a triple fault without KVM_CAP_X86_TRIPLE_FAULT_EVENT");
	e.flags = 0;
	e.exception.injected = 1;
	e.exception.nr = 2;
	expect_einval(vcpu, &e, "the NMI vector as an exception");
	e.exception.nr = 32;
	expect_einval(vcpu, &e, "exception vector 32");
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_SET_VCPU_EVENTS, (struct kvm_vcpu_events *)8) == -1 && errno == EFAULT, "SET: EFAULT");
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_GET_VCPU_EVENTS, (struct kvm_vcpu_events *)8) == -1 && errno == EFAULT, "GET: EFAULT");
	vcpu_events_get(vcpu, &e);
	TEST_ASSERT(!e.exception.injected, "a refused call changes nothing");
}

static void test_shadow_and_nmi_mask(struct kvm_vcpu *vcpu)
{
	struct kvm_vcpu_events e, saved;

	vcpu_events_get(vcpu, &saved);
	e = saved;
	e.flags = KVM_VCPUEVENT_VALID_SHADOW;
	e.interrupt.shadow = KVM_X86_SHADOW_INT_MOV_SS;
	e.nmi.masked = 1;
	vcpu_events_set(vcpu, &e);
	vcpu_events_get(vcpu, &e);
	TEST_ASSERT_EQ(e.interrupt.shadow, KVM_X86_SHADOW_INT_MOV_SS);
	TEST_ASSERT_EQ(e.nmi.masked, 1);
	/* Without VALID_SHADOW the shadow stays; nmi.masked always applies. */
	e.flags = 0;
	e.nmi.masked = 0;
	vcpu_events_set(vcpu, &e);
	vcpu_events_get(vcpu, &e);
	TEST_ASSERT_EQ(e.interrupt.shadow, KVM_X86_SHADOW_INT_MOV_SS);
	TEST_ASSERT_EQ(e.nmi.masked, 0);
	saved.flags = KVM_VCPUEVENT_VALID_SHADOW;
	vcpu_events_set(vcpu, &saved);
}

int main(void)
{
	struct kvm_vapic_addr va = { .vapic_addr = 0 };
	struct kvm_vcpu_events e;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_code);

	vm_install_exception_handler(vm, UD_VECTOR, ud_handler);
	vm_install_exception_handler(vm, GP_VECTOR, gp_handler);
	vm_install_exception_handler(vm, NMI_VECTOR, nmi_handler);

	/* QEMU turns the TPR-access page off at every APIC reset. */
	vcpu_ioctl(vcpu, KVM_SET_VAPIC_ADDR, &va);
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_SET_VAPIC_ADDR, (struct kvm_vapic_addr *)8) == -1 && errno == EFAULT,
		    "KVM_SET_VAPIC_ADDR: EFAULT");

	nvmx_run_to_stage(vcpu, 1);
	check_run_summary(vcpu, 0, 0);
	test_refusals(vcpu);
	pr_info("kvm_run after CLI, KVM_SET_VCPU_EVENTS refusals passed\n");
	inject_exception(vcpu, UD_VECTOR, 0, 0);
	nvmx_run_to_stage(vcpu, 2);
	inject_exception(vcpu, GP_VECTOR, 1, 0x18);
	nvmx_run_to_stage(vcpu, 3);
	pr_info("injected #UD and #GP(0x18) passed\n");
	check_run_summary(vcpu, 1, 5);
	pr_info("kvm_run after STI, CR8 = 5 passed\n");
	test_shadow_and_nmi_mask(vcpu);
	pr_info("interrupt shadow and NMI mask passed\n");

	vcpu_events_get(vcpu, &e);
	e.flags = KVM_VCPUEVENT_VALID_NMI_PENDING;
	e.nmi.pending = 1;
	vcpu_events_set(vcpu, &e);
	vcpu_events_get(vcpu, &e);
	TEST_ASSERT(e.nmi.pending || e.nmi.injected, "the NMI is pending");
	nvmx_run_to_stage(vcpu, 4);
	vcpu_events_get(vcpu, &e);
	TEST_ASSERT(!e.nmi.pending && !e.nmi.injected, "the NMI was delivered");
	pr_info("pending NMI delivered passed\n");

	/* KVM_NMI (QEMU's for the monitor's "nmi" and the PIC's LINT1 NMIs). */
	TEST_ASSERT(kvm_has_cap(KVM_CAP_USER_NMI), "KVM_CAP_USER_NMI");
	vcpu_ioctl(vcpu, KVM_NMI, NULL);
	vcpu_events_get(vcpu, &e);
	TEST_ASSERT(e.nmi.pending, "KVM_NMI made an NMI pending");
	nvmx_run_to_stage(vcpu, 0);
	pr_info("KVM_NMI delivered passed\n");
	kvm_vm_free(vm);
	return 0;
}
