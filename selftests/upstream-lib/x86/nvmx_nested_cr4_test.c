// SPDX-License-Identifier: GPL-2.0-only
/*
 * An L1 must not reach CR4 bits its own CPUID does not offer through VMX: its
 * IA32_VMX_CR4_FIXED1 follows its CPUID (KVM: nested_vmx_cr_fixed1_bits_update), and VM entry
 * refuses a HOST_CR4 (VMfailValid 8, SDM 27.2.2) or GUEST_CR4 (VM-entry failure for invalid
 * guest state, SDM 27.3.1.1) with such a bit (KVM: nested_host_cr4_valid /
 * nested_guest_cr4_valid). The VMM takes XSAVE and PKU out of L1's CPUID, so OSXSAVE and
 * PKE are such bits on both hypervisors (on nvmx they are never allowed: their register
 * state is not switched). Written with the upstream KVM selftest library so that it runs
 * against kvm_intel and nvmx.
 */
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "nvmx_stages.h"

static void l2_code(void)
{
	vmcall();
}

static void expect_host_cr4_refused(u64 bit)
{
	u64 cr4 = vmreadz(HOST_CR4);

	vmwrite(HOST_CR4, cr4 | bit);
	GUEST_ASSERT(vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_INSTRUCTION_ERROR), 8);
	vmwrite(HOST_CR4, cr4);
}

static void l1_code(struct vmx_pages *vmx)
{
	u64 fixed1, cr4;

	/* The library may have set OSXSAVE before the VMM changed the CPUID. */
	set_cr4(get_cr4() & ~X86_CR4_OSXSAVE);
	fixed1 = rdmsr(MSR_IA32_VMX_CR4_FIXED1);
	GUEST_ASSERT(fixed1 & X86_CR4_VMXE);
	GUEST_ASSERT(!(fixed1 & X86_CR4_OSXSAVE));
	GUEST_ASSERT(!(fixed1 & X86_CR4_PKE));
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code);
	GUEST_SYNC(1);

	expect_host_cr4_refused(X86_CR4_OSXSAVE);
	expect_host_cr4_refused(X86_CR4_PKE);
	GUEST_SYNC(2);

	cr4 = vmreadz(GUEST_CR4);
	vmwrite(GUEST_CR4, cr4 | X86_CR4_OSXSAVE);
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_FAILED_VMENTRY | EXIT_REASON_INVALID_STATE);
	vmwrite(GUEST_CR4, cr4);
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_SYNC(3);
	GUEST_DONE();
}

int main(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	gva_t vmx_gva;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	vm = vm_create_with_one_vcpu(&vcpu, l1_code);
	vcpu_clear_cpuid_feature(vcpu, X86_FEATURE_XSAVE);
	vcpu_clear_cpuid_feature(vcpu, X86_FEATURE_PKU);
	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);
	TEST_ASSERT_EQ(nvmx_run_stages(vcpu, "nested CR4", 0), 3);
	kvm_vm_free(vm);
	return 0;
}
