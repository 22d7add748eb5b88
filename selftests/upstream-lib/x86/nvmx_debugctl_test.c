// SPDX-License-Identifier: GPL-2.0-only
/*
 * IA32_DEBUGCTL (0x1d9) exists for the guest, as on KVM: KVM reads the host's value before
 * every run of its vCPUs (vcpu_run), so a Linux L1 loading kvm_intel takes a #GP ("unchecked
 * MSR access error: RDMSR from 0x1d9") at its first KVM_RUN without it. Nothing in it is
 * supported here (no LBR, bus-lock detection or RTM debugging for the guest), so it reads 0;
 * KVM's rules for writes: BTF and LBR are ignored (the write succeeds, the bit stays 0), any
 * other bit is #GP; the VMM's writes follow the same rules. Written with the upstream KVM
 * selftest library so that it runs against kvm_intel and nvmx.
 */
#include "kvm_util.h"
#include "processor.h"
#include "nvmx_stages.h"

#define DEBUGCTL_LBR	(1ull << 0)
#define DEBUGCTL_BTF	(1ull << 1)
#define DEBUGCTL_TR	(1ull << 6)	/* trace messages: never offered */

static void guest_code(void)
{
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_DEBUGCTLMSR), 0);
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_IA32_DEBUGCTLMSR, 0), 0);
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_IA32_DEBUGCTLMSR, DEBUGCTL_BTF), 0);
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_DEBUGCTLMSR), 0);
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_IA32_DEBUGCTLMSR, DEBUGCTL_LBR | DEBUGCTL_BTF), 0);
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_DEBUGCTLMSR), 0);
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_IA32_DEBUGCTLMSR, DEBUGCTL_TR), GP_VECTOR);
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_IA32_DEBUGCTLMSR, 1ull << 63), GP_VECTOR);
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_DEBUGCTLMSR), 0);
	GUEST_DONE();
}

int main(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MSR_IA32_DEBUGCTLMSR), 0);
	vcpu_set_msr(vcpu, MSR_IA32_DEBUGCTLMSR, 0);
	TEST_ASSERT_EQ(_vcpu_set_msr(vcpu, MSR_IA32_DEBUGCTLMSR, DEBUGCTL_TR), 0);
	nvmx_run_to_stage(vcpu, 0);
	pr_info("IA32_DEBUGCTL: reads 0, BTF/LBR ignored, other bits #GP passed\n");
	kvm_vm_free(vm);
	return 0;
}
