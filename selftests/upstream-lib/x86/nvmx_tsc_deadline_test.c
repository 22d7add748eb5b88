// SPDX-License-Identifier: GPL-2.0-only
/*
 * The local APIC timer's TSC-deadline mode (SDM 11.5.4.1), which a Linux guest uses when
 * CPUID offers it instead of calibrating the APIC timer against a PIT or HPET — a microvm
 * guest has neither. IA32_TSC_DEADLINE arms the timer for a guest TSC value, fires once and
 * reads 0 after; a deadline in the past fires at once, 0 disarms, TMICT is ignored, and
 * leaving the mode clears the deadline. CPUID leaf 6 says the timer always runs (ARAT, as
 * KVM offers it): without it Linux assumes the timer stops in deep C-states and, with no
 * broadcast timer, falls back to a periodic tick. Written with the upstream KVM selftest
 * library so that it runs against kvm_intel and nvmx.
 */
#include "kvm_util.h"
#include "processor.h"
#include "apic.h"
#include "nvmx_stages.h"

#define VECTOR		0x60
/* CPUID.6:EAX[2], "APIC timer always running". */
#define X86_FEATURE_ARAT	KVM_X86_CPU_FEATURE(0x6, 0, EAX, 2)
#define TSC_DEADLINE_MODE	(2u << 17)

static volatile int fired;

static void timer_handler(struct ex_regs *regs)
{
	fired++;
	x2apic_write_reg(APIC_EOI, 0);
}

static void wait_for(int n)
{
	while (fired < n)
		this_cpu_has(X86_FEATURE_X2APIC);	/* an exit per round */
}

static void guest_code(void)
{
	GUEST_ASSERT(this_cpu_has(X86_FEATURE_ARAT));
	x2apic_enable();
	x2apic_write_reg(APIC_LVTT, TSC_DEADLINE_MODE | VECTOR);
	asm volatile("sti");

	wrmsr(MSR_IA32_TSC_DEADLINE, rdtsc() + 100000);
	GUEST_ASSERT(rdmsr(MSR_IA32_TSC_DEADLINE) != 0);
	wait_for(1);
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_TSC_DEADLINE), 0);	/* fired: reads 0 */

	wrmsr(MSR_IA32_TSC_DEADLINE, rdtsc() - 1);	/* in the past: at once */
	wait_for(2);

	x2apic_write_reg(APIC_TMICT, 1000);			/* ignored in this mode */
	GUEST_ASSERT_EQ(x2apic_read_reg(APIC_TMICT), 0);

	wrmsr(MSR_IA32_TSC_DEADLINE, rdtsc() + (1ull << 40));
	GUEST_SYNC(1);
	/* The host read the deadline with KVM_GET_MSRS. Leave the mode: it is gone. */
	x2apic_write_reg(APIC_LVTT, VECTOR);
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_TSC_DEADLINE), 0);
	x2apic_write_reg(APIC_LVTT, TSC_DEADLINE_MODE | VECTOR);
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_TSC_DEADLINE), 0);
	GUEST_ASSERT_EQ(fired, 2);
	GUEST_DONE();
}

int main(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_X2APIC));
	TEST_ASSERT(kvm_cpu_has(X86_FEATURE_TSC_DEADLINE_TIMER), "KVM_GET_SUPPORTED_CPUID offers TSC-deadline");
	TEST_ASSERT(kvm_check_cap(KVM_CAP_TSC_DEADLINE_TIMER), "KVM_CAP_TSC_DEADLINE_TIMER");
	TEST_ASSERT(kvm_cpu_has(X86_FEATURE_ARAT), "KVM_GET_SUPPORTED_CPUID: the APIC timer always runs");
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	vm_install_exception_handler(vm, VECTOR, timer_handler);

	nvmx_run_to_stage(vcpu, 1);
	TEST_ASSERT(vcpu_get_msr(vcpu, MSR_IA32_TSC_DEADLINE) > (1ull << 40), "the armed deadline");
	pr_info("ARAT; TSC-deadline timer fired once, at once for the past, TMICT ignored passed\n");
	nvmx_run_to_stage(vcpu, 0);
	pr_info("leaving the mode clears the deadline passed\n");
	kvm_vm_free(vm);
	return 0;
}
