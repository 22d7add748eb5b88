// SPDX-License-Identifier: GPL-2.0-only
/*
 * L1's VMX-preemption timer, written with the upstream KVM selftest library so that it runs
 * unchanged against kvm_intel (nested=1) and nvmx (SDM 26.5.1 "VMX-Preemption Timer",
 * 27.7.4, 28.3.3 "Saving the VMX-preemption timer value"):
 *
 *  1. L2 spins; the timer L1 armed ends it with exit reason 52, and with "save VMX-preemption
 *     timer value" the saved value is 0;
 *  2. L2 exits (VMCALL) long before a large timer runs out: the saved value is what is left,
 *     between 0 and what L1 loaded;
 *  3. a timer of 0: the exit comes before L2 executes an instruction (RIP and L2's counter
 *     unchanged).
 */
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "nvmx_stages.h"

#define SHORT	(1ul << 20)
#define LONG	(1ul << 30)

static volatile int stage;
static volatile u64 spins;

static void l2_code(void)
{
	for (;;) {
		spins++;
		if (stage == 2)
			vmcall();
	}
}

static void l1_code(struct vmx_pages *vmx)
{
	u64 rip, before;

	GUEST_ASSERT(rdmsr(MSR_IA32_VMX_TRUE_PINBASED_CTLS) >> 32 & PIN_BASED_VMX_PREEMPTION_TIMER);
	GUEST_ASSERT(rdmsr(MSR_IA32_VMX_TRUE_EXIT_CTLS) >> 32 & VM_EXIT_SAVE_VMX_PREEMPTION_TIMER);
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code);
	vmwrite(PIN_BASED_VM_EXEC_CONTROL, vmreadz(PIN_BASED_VM_EXEC_CONTROL) | PIN_BASED_VMX_PREEMPTION_TIMER);
	vmwrite(VM_EXIT_CONTROLS, vmreadz(VM_EXIT_CONTROLS) | VM_EXIT_SAVE_VMX_PREEMPTION_TIMER);

	/* 1. The timer ends L2's spin. */
	stage = 1;
	vmwrite(VMX_PREEMPTION_TIMER_VALUE, SHORT);
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_PREEMPTION_TIMER);
	GUEST_ASSERT_EQ(vmreadz(VMX_PREEMPTION_TIMER_VALUE), 0);
	GUEST_ASSERT(spins > 0);
	GUEST_SYNC(1);

	/* 2. L2 leaves first: what is left is saved. */
	stage = 2;
	vmwrite(VMX_PREEMPTION_TIMER_VALUE, LONG);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_ASSERT(vmreadz(VMX_PREEMPTION_TIMER_VALUE) > 0);
	GUEST_ASSERT(vmreadz(VMX_PREEMPTION_TIMER_VALUE) < LONG);
	vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
	GUEST_SYNC(2);

	/* 3. A timer of 0: the exit comes before L2's first instruction. */
	stage = 3;
	rip = vmreadz(GUEST_RIP);
	before = spins;
	vmwrite(VMX_PREEMPTION_TIMER_VALUE, 0);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_PREEMPTION_TIMER);
	GUEST_ASSERT_EQ(vmreadz(GUEST_RIP), rip);
	GUEST_ASSERT_EQ(spins, before);
	GUEST_DONE();
}

int main(int argc, char *argv[])
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	gva_t vmx_gva;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	vm = vm_create_with_one_vcpu(&vcpu, l1_code);
	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);
	TEST_ASSERT_EQ(nvmx_run_stages(vcpu, "preemption timer", 0), 2);
	pr_info("a timer of 0 exits before L2's first instruction\n");
	kvm_vm_free(vm);
	return 0;
}
