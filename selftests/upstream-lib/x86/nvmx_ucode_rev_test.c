// SPDX-License-Identifier: GPL-2.0-only
/*
 * IA32_BIOS_SIGN_ID (MSR 0x8b), the microcode revision: the VMM sets it with KVM_SET_MSRS,
 * the guest reads it, and a guest's write is ignored rather than #GP — Linux writes 0 to it
 * early in boot (before CPUID(1), to read the revision), and a #GP there is an "unchecked
 * MSR access error" with a call trace in every guest's boot log. Written with the upstream
 * KVM selftest library so that it runs against kvm_intel and nvmx.
 */
#include "kvm_util.h"
#include "processor.h"
#include "nvmx_stages.h"

#define MSR_UCODE_REV	0x8b
#define REV		(0x1234ull << 32)

static void guest_code(void)
{
	GUEST_ASSERT_EQ(rdmsr(MSR_UCODE_REV), REV);
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_UCODE_REV, 0), 0);
	GUEST_ASSERT_EQ(rdmsr(MSR_UCODE_REV), REV);
	GUEST_DONE();
}

int main(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	vcpu_set_msr(vcpu, MSR_UCODE_REV, REV);
	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MSR_UCODE_REV), REV);
	nvmx_run_to_stage(vcpu, 0);
	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MSR_UCODE_REV), REV);
	pr_info("the VMM's revision, the guest's write ignored passed\n");
	kvm_vm_free(vm);
	return 0;
}
