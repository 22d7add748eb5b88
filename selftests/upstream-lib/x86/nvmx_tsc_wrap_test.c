// SPDX-License-Identifier: GPL-2.0-only
/*
 * The guest owns its TSC: a VMM (KVM_SET_MSRS) or the guest (WRMSR) may put it just below
 * 2^64, and local-APIC timer deadlines computed from it then lie past the wrap. The
 * hypervisor must neither overflow (a BUG() in a kernel built with overflow checks) nor
 * treat the timer as due at once or never. Written with the upstream KVM selftest library
 * so that it runs against kvm_intel and nvmx.
 *
 *  1. KVM_SET_MSRS(IA32_TSC = 2^64 - 2^36), then KVM_SET_LAPIC with TDCR /128 and TMICT
 *     (and the current count it resumes from) 0xffffffff, a deadline about 2^36.7 TSC ticks
 *     later: the guest reads a running count;
 *  2. the same from guest code: WRMSR IA32_TSC and x2APIC writes of TDCR/LVTT/TMICT, one-shot
 *     and periodic;
 *  3. the TSC wraps while the timer runs (2^22 ticks before the wrap): the count still runs.
 */
#include "kvm_util.h"
#include "processor.h"
#include "apic.h"
#include "nvmx_stages.h"

#define NEAR_WRAP	(~0ull - (1ull << 36) + 1)
#define CLOSE_TO_WRAP	(~0ull - (1ull << 22) + 1)
#define LVTT_MASKED	(1u << 16)
#define LVTT_PERIODIC	(1u << 17)

static void arm_timer(u32 lvtt)
{
	x2apic_write_reg(APIC_TDCR, 0xa);	/* divide by 128 */
	x2apic_write_reg(APIC_LVTT, lvtt);
	x2apic_write_reg(APIC_TMICT, 0xffffffff);
}

static void guest_code(void)
{
	u64 count;

	/* 1. The VMM set the TSC and the timer. */
	x2apic_enable();
	count = x2apic_read_reg(APIC_TMCCT);
	GUEST_ASSERT(count > 0 && count <= 0xffffffff);
	GUEST_SYNC(1);

	/* 2. The guest does it itself. */
	wrmsr(MSR_IA32_TSC, NEAR_WRAP);
	arm_timer(LVTT_MASKED | 0x40);
	GUEST_ASSERT(x2apic_read_reg(APIC_TMCCT) > 0);
	wrmsr(MSR_IA32_TSC, NEAR_WRAP);
	arm_timer(LVTT_MASKED | LVTT_PERIODIC | 0x40);
	GUEST_ASSERT(x2apic_read_reg(APIC_TMCCT) > 0);
	GUEST_SYNC(2);

	/* 3. Across the wrap. */
	wrmsr(MSR_IA32_TSC, CLOSE_TO_WRAP);
	arm_timer(LVTT_MASKED | 0x40);
	/*
	 * CPUID (this_cpu_has) exits on both hypervisors: a spin without exits hard-locked the Bochs test
	 * machine under kvm_intel here (the host's TSC-deadline timer did not fire while the
	 * guest ran with this TSC offset, and kvm_intel has no preemption-timer budget).
	 */
	while (rdtsc() > (1ull << 63))
		this_cpu_has(X86_FEATURE_X2APIC);
	count = x2apic_read_reg(APIC_TMCCT);
	GUEST_ASSERT(count > 0 && count < 0xffffffff);
	GUEST_SYNC(3);
	GUEST_DONE();
}

static void set_lapic_reg(struct kvm_lapic_state *s, int reg, u32 v)
{
	memcpy(&s->regs[reg], &v, sizeof(v));
}

int main(void)
{
	struct kvm_lapic_state lapic;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_X2APIC));
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	vcpu_set_msr(vcpu, MSR_IA32_TSC, NEAR_WRAP);
	vcpu_ioctl(vcpu, KVM_GET_LAPIC, &lapic);
	set_lapic_reg(&lapic, APIC_SPIV, APIC_SPIV_APIC_ENABLED | 0xff);
	set_lapic_reg(&lapic, APIC_TDCR, 0xa);
	set_lapic_reg(&lapic, APIC_LVTT, LVTT_MASKED | 0x40);
	set_lapic_reg(&lapic, APIC_TMICT, 0xffffffff);
	/* KVM_SET_LAPIC resumes the timer from the saved current count. */
	set_lapic_reg(&lapic, APIC_TMCCT, 0xffffffff);
	vcpu_ioctl(vcpu, KVM_SET_LAPIC, &lapic);

	TEST_ASSERT_EQ(nvmx_run_stages(vcpu, "TSC wrap", 0), 3);
	kvm_vm_free(vm);
	return 0;
}
