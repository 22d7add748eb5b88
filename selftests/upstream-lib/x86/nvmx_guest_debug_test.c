// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_SET_GUEST_DEBUG as a debugger (QEMU's gdbstub) uses it: single-stepping, also over an
 * instruction the hypervisor completes itself (CPUID: KVM_CAP_X86_ROBUST_SINGLESTEP, which
 * QEMU requires), a software breakpoint (INT3) reported to the VMM and given back to the
 * guest with KVM_GUESTDBG_INJECT_BP, and TF hidden from KVM_GET_REGS while stepping.
 * Written with the upstream KVM selftest library so that it runs against kvm_intel and nvmx.
 */
#include "kvm_util.h"
#include "processor.h"
#include "nvmx_stages.h"

#define DR6_BS		(1ull << 14)
#define RFLAGS_TF	(1ull << 8)

extern char ss_start[], ss_cpuid[], ss_after[], ss_int3[], ss_end[];
static volatile int bp_count;

static void bp_handler(struct ex_regs *regs)
{
	bp_count++;
}

static void guest_code(void)
{
	GUEST_SYNC(1);
	asm volatile("ss_start: xor %%eax, %%eax\n\t"
		     "ss_cpuid: cpuid\n\t"
		     "ss_after: nop\n\t"
		     "ss_int3: int3\n\t"
		     "ss_end: nop"
		     : : : "eax", "ebx", "ecx", "edx", "memory");
	GUEST_ASSERT_EQ(bp_count, 1);	/* the breakpoint given back to the guest */
	GUEST_DONE();
}

static void set_debug(struct kvm_vcpu *vcpu, __u32 control)
{
	struct kvm_guest_debug d = { .control = control };

	vcpu_guest_debug_set(vcpu, &d);
}

static void step(struct kvm_vcpu *vcpu, char *expect, int exception)
{
	struct kvm_run *run = vcpu->run;

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_DEBUG);
	TEST_ASSERT(run->debug.arch.exception == exception && run->debug.arch.pc == (__u64)expect,
		    "exception %u at %llx, expected %d at %p", run->debug.arch.exception,
		    run->debug.arch.pc, exception, expect);
	if (exception == 1)
		TEST_ASSERT(run->debug.arch.dr6 & DR6_BS, "DR6.BS: %llx", run->debug.arch.dr6);
}

int main(void)
{
	const __u32 ss = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_SW_BP;
	struct kvm_guest_debug d = { .control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_INJECT_BP };
	struct kvm_regs regs;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int n;

	TEST_ASSERT(kvm_check_cap(KVM_CAP_SET_GUEST_DEBUG) && kvm_check_cap(KVM_CAP_X86_ROBUST_SINGLESTEP),
		    "guest debug and robust single-step are offered");
	TEST_ASSERT((kvm_check_cap(KVM_CAP_SET_GUEST_DEBUG2) & ss) == ss, "KVM_CAP_SET_GUEST_DEBUG2");
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	vm_install_exception_handler(vm, BP_VECTOR, bp_handler);
	nvmx_run_to_stage(vcpu, 1);

	/* Step from the ucall's return to the code under test. */
	set_debug(vcpu, ss);
	for (n = 0; n < 10000; n++) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_DEBUG);
		if (vcpu->run->debug.arch.pc == (__u64)ss_start)
			break;
	}
	TEST_ASSERT(n < 10000, "reached ss_start");
	vcpu_regs_get(vcpu, &regs);
	TEST_ASSERT(!(regs.rflags & RFLAGS_TF), "TF is hidden while stepping: %llx", regs.rflags);
	step(vcpu, ss_cpuid, 1);
	step(vcpu, ss_after, 1);	/* over CPUID, which the hypervisor completed */
	step(vcpu, ss_int3, 1);
	step(vcpu, ss_int3, 3);		/* the breakpoint, before it is delivered */
	pr_info("single steps and the breakpoint passed\n");

	/* Give the breakpoint back to the guest, and stop debugging. */
	vcpu_guest_debug_set(vcpu, &d);
	set_debug(vcpu, 0);
	nvmx_run_to_stage(vcpu, 0);
	pr_info("KVM_GUESTDBG_INJECT_BP passed\n");
	kvm_vm_free(vm);
	return 0;
}
