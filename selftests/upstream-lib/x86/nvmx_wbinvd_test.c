// SPDX-License-Identifier: GPL-2.0-only
/*
 * WBINVD, WBNOINVD and INVD in a guest complete and go on to the next instruction, as on
 * KVM: the guest may not write back or discard the host's caches (INVD would lose other
 * tasks' dirty lines), so the hypervisor intercepts them and does nothing (no device of a
 * guest does non-coherent DMA). Linux executes WBINVD in its AP trampoline, when it
 * changes MTRRs and at CPU offline: a guest kernel with two CPUs cannot boot without this.
 * Also in L2, and L1 gets the exits it asked for. Written with the upstream
 * KVM selftest library so that it runs against kvm_intel and nvmx.
 */
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "nvmx_stages.h"

static void caches(void)
{
	unsigned long n = 0;

	asm volatile("wbinvd\n\tinc %0" : "+r"(n) :: "memory");
	asm volatile(".byte 0xf3, 0x0f, 0x09\n\tinc %0" : "+r"(n) :: "memory");	/* WBNOINVD */
	asm volatile("invd\n\tinc %0" : "+r"(n) :: "memory");
	GUEST_ASSERT_EQ(n, 3);
}

/* No ucall from L2: its port I/O would exit to L1. What ran is read from L1's exits. */
static void l2_code(void)
{
	asm volatile("wbinvd\n\t"
		     ".byte 0xf3, 0x0f, 0x09\n\t"	/* WBNOINVD */
		     "invd" ::: "memory");
	vmcall();
}

static void guest_code(struct vmx_pages *vmx)
{
	unsigned long rsp;
	int i;

	caches();
	GUEST_SYNC(1);
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code);
	vmwrite(SECONDARY_VM_EXEC_CONTROL, vmreadz(SECONDARY_VM_EXEC_CONTROL) & ~SECONDARY_EXEC_WBINVD_EXITING);
	rsp = vmreadz(GUEST_RSP);
	/*
	 * Without WBINVD exiting, WBINVD and WBNOINVD complete in L2; INVD exits to L1
	 * unconditionally (SDM 26.1.2), at the INVD: the instructions before it ran.
	 */
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_INVD);
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_INSTRUCTION_LEN), 2);
	vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + 2);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_SYNC(2);

	/* With WBINVD exiting, L1 sees WBINVD and WBNOINVD too (SDM 26.1.3). */
	vmwrite(SECONDARY_VM_EXEC_CONTROL, vmreadz(SECONDARY_VM_EXEC_CONTROL) | SECONDARY_EXEC_WBINVD_EXITING);
	vmwrite(GUEST_RIP, (unsigned long)l2_code);
	vmwrite(GUEST_RSP, rsp);
	for (i = 0; i < 3; i++) {
		GUEST_ASSERT(!vmresume());
		GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), i < 2 ? EXIT_REASON_WBINVD : EXIT_REASON_INVD);
		vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
	}
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_DONE();
}

int main(void)
{
	gva_t vmx_gva;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);
	nvmx_run_to_stage(vcpu, 1);
	pr_info("WBINVD, WBNOINVD and INVD in the guest passed\n");
	nvmx_run_to_stage(vcpu, 2);
	pr_info("L2: WBINVD and WBNOINVD complete, INVD exits to L1 passed\n");
	nvmx_run_to_stage(vcpu, 0);
	pr_info("L2's WBINVD, WBNOINVD (WBINVD exiting) and INVD exits reflected to L1 passed\n");
	kvm_vm_free(vm);
	return 0;
}
