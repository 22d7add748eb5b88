// SPDX-License-Identifier: GPL-2.0-only
/*
 * A VMM that resets a vCPU writes IA32_FEATURE_CONTROL = 0 (QEMU does at every reset), and
 * KVM takes that host-initiated write as "leave VMX operation" (vmx_set_msr ->
 * vmx_leave_nested): an L2 that runs is left for L1's host state with no exit information,
 * L1's VMXON and current VMCS are forgotten. Without it a guest that rebooted while in VMX
 * operation would find its CPU still in VMX root operation (its VMXON fails with "VMXON
 * executed in VMX root operation", and every VMX instruction keeps working where it must
 * #UD). Written with the upstream KVM selftest library so that it runs against kvm_intel
 * and nvmx.
 */
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "nvmx_stages.h"

#define FEAT_CTL_VMX (FEAT_CTL_LOCKED | FEAT_CTL_VMX_ENABLED_OUTSIDE_SMX)

static void l2_code(void)
{
	/* L1 does not intercept port I/O: this ucall goes to userspace from L2. */
	GUEST_SYNC(3);
	/* Not reached: the VMM takes the vCPU out of VMX operation at stage 3. */
	GUEST_FAIL("L2 resumed after leaving VMX operation");
}

/* VMPTRST outside VMX operation: #UD (SDM 31.3 "VMPTRST"). */
static u8 vmptrst_vector(void)
{
	u64 ptr = 0;

	return kvm_asm_safe("vmptrst (%[p])", [p] "r"(&ptr));
}

static void l1_code(struct vmx_pages *vmx)
{
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_FEAT_CTL) & FEAT_CTL_VMX, FEAT_CTL_VMX);
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	GUEST_SYNC(1);

	/* The VMM wrote 0 while L1 was in VMX root operation with a current VMCS. */
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_FEAT_CTL), 0);
	GUEST_ASSERT_EQ(vmptrst_vector(), UD_VECTOR);
	/* prepare_for_vmx_operation locks FEATURE_CONTROL again and executes VMXON. */
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT_EQ(vmptrstz(), -1ull);
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code);
	GUEST_SYNC(2);

	/* L2 runs when the VMM writes 0: L1 continues at VMCS12's host RIP, out of VMX operation. */
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_FEAT_CTL), 0);
	GUEST_ASSERT_EQ(vmptrst_vector(), UD_VECTOR);
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT_EQ(vmptrstz(), -1ull);
	GUEST_ASSERT(load_vmcs(vmx));
	GUEST_DONE();
}

int main(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	gva_t vmx_gva;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	vm = vm_create_with_one_vcpu(&vcpu, l1_code);
	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);
	vcpu_set_msr(vcpu, MSR_IA32_FEAT_CTL, FEAT_CTL_VMX);

	nvmx_run_to_stage(vcpu, 1);
	TEST_ASSERT(!(vcpu->run->flags & KVM_RUN_X86_GUEST_MODE), "L1 at stage 1");
	vcpu_set_msr(vcpu, MSR_IA32_FEAT_CTL, 0);
	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MSR_IA32_FEAT_CTL), 0);
	nvmx_run_to_stage(vcpu, 2);
	pr_info("FEATURE_CONTROL = 0 from the VMM in VMX root operation: VMXON and VMCS forgotten passed\n");

	nvmx_run_to_stage(vcpu, 3);
	TEST_ASSERT(vcpu->run->flags & KVM_RUN_X86_GUEST_MODE, "L2 at stage 3");
	vcpu_set_msr(vcpu, MSR_IA32_FEAT_CTL, 0);
	nvmx_run_to_stage(vcpu, 0);
	pr_info("FEATURE_CONTROL = 0 from the VMM while L2 runs: L1 at its host state, out of VMX operation passed\n");
	kvm_vm_free(vm);
	return 0;
}
