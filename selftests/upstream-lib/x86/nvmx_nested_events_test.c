// SPDX-License-Identifier: GPL-2.0-only
/*
 * Events while L2 runs, written with the upstream KVM selftest library so that it runs
 * unchanged against kvm_intel (nested=1) and nvmx. A Linux L1 depends on these: its NMI
 * IPIs (backtraces, the lockup detector's panic) reach a CPU that is running a guest only
 * as NMI exits, and kvm_intel injects L2's interrupts and NMIs at the window exits it asks
 * for.
 *
 *  1. With L1's "NMI exiting" (SDM 25.6.1), an NMI that L1's local APIC accepts while L2
 *     runs is a VM exit to L1 (SDM 26.2, exit reason 0, interruption information NMI,
 *     vector 2), taken at the next instruction boundary: here L2's own x2APIC ICR write
 *     (L1's MSR bitmap lets it through to L1's APIC) sends it, and the exit's RIP is right
 *     after that WRMSR. L2 sees no NMI.
 *  2. "An NMI causes subsequent NMIs to be blocked, but only after the VM exit completes"
 *     (SDM 26.2): after that exit L1 is NMI-blocked (KVM_GET_VCPU_EVENTS' nmi.masked) until
 *     its next IRET; an NMI L1 sends itself meanwhile is delivered right after the IRET.
 *  3. Without NMI exiting the NMI goes to L2, through L2's IDT (SDM 26.3).
 *  4. L1's interrupt-window exiting (SDM 26.7.5): L2's STI opens the window after the next
 *     instruction, and the exit comes there (L1's own APIC has nothing pending meanwhile).
 *  5. L1's NMI-window exiting with virtual NMIs (SDM 26.7.6): L2 entered with virtual-NMI
 *     blocking exits right after its IRET.
 *  6. With L1's external-interrupt exiting, L1's own timer interrupt is an exit to L1 however
 *     busy L2 keeps the hypervisor (here: x2APIC reads L1 lets through, each an exit the
 *     hypervisor handles), never an interrupt delivered to L2 (SDM 26.2) — a Linux L1 whose
 *     timer vector went to L2 kept it in service for good and lost its tick.
 */
#include "kvm_util.h"
#include "processor.h"
#include "apic.h"
#include "vmx.h"
#include "nvmx_stages.h"

#define X2APIC_ICR_MSR		(APIC_BASE_MSR + (APIC_ICR >> 4))
/* Interruption information (SDM 25.9.2): valid, type 2 (NMI), vector 2. */
#define INTR_INFO_NMI		((1u << 31) | (2u << 8) | NMI_VECTOR)

static volatile int nmi_count;
/* Stage 6: L1's TSC-deadline timer, and where its interrupts were taken. */
#define TIMER_VECTOR		0x50
#define TSC_DEADLINE_MODE	(2u << 17)
#define TIMER_ROUNDS		64
#define L2_BUSY_LOOPS		20000
static volatile int l1_timer_count, l2_timer_count, in_l2;
static volatile u64 self_nmi_icr;

/* Blocking by NMI in the guest interruptibility state (SDM 25.4.2). */
#define GUEST_INTR_STATE_NMI		8

extern char l2_after_first_nmi[], l2_window_open[], iret_done[];

static void nmi_handler(struct ex_regs *regs)
{
	nmi_count++;
}

static void timer_handler(struct ex_regs *regs)
{
	/* Taken in L2: no EOI, L1's APIC keeps the vector in service. */
	if (in_l2) {
		l2_timer_count++;
		return;
	}
	l1_timer_count++;
	x2apic_write_reg(APIC_EOI, 0);
}

/* An NMI to this CPU's own APIC ID, physical destination (SDM 11.6.1, 11.12.9). */
static void self_nmi(void)
{
	wrmsr(X2APIC_ICR_MSR, self_nmi_icr);
}

static void l2_code(void)
{
	asm volatile("wrmsr\n\t"
		     ".global l2_after_first_nmi\n\t"
		     "l2_after_first_nmi:"
		     :: "c"(X2APIC_ICR_MSR), "a"((u32)self_nmi_icr), "d"((u32)(self_nmi_icr >> 32)));
	/* Reached after stage 2, with L1's NMI exiting off: this one is L2's. */
	self_nmi();
	vmcall();
	GUEST_FAIL("L2 resumed after its last exit");
}

/* IRET to the next instruction (same CPL, same stack), below the red zone. */
static noinline void iret_to_self(void)
{
	asm volatile("sub $128, %%rsp\n\t"
		     "mov %%ss, %%eax\n\t"
		     "push %%rax\n\t"
		     "lea 8(%%rsp), %%rax\n\t"
		     "push %%rax\n\t"
		     "pushfq\n\t"
		     "mov %%cs, %%eax\n\t"
		     "push %%rax\n\t"
		     "lea iret_done(%%rip), %%rax\n\t"
		     "push %%rax\n\t"
		     "iretq\n\t"
		     ".global iret_done\n\t"
		     "iret_done: add $128, %%rsp" ::: "rax", "memory");
}

static void l2_window_code(void)
{
	asm volatile("sti\n\t"
		     "nop\n\t"
		     ".global l2_window_open\n\t"
		     "l2_window_open: cli");
	vmcall();
	GUEST_FAIL("L2 resumed after its last exit");
}

static void l2_nmi_window_code(void)
{
	iret_to_self();
	vmcall();
	GUEST_FAIL("L2 resumed after its last exit");
}

/* Busy in exits the hypervisor handles itself, until L1's timer takes the CPU back. */
static void l2_busy_code(void)
{
	int i;

	in_l2 = 1;
	for (i = 0; i < L2_BUSY_LOOPS; i++)
		rdmsr(APIC_BASE_MSR + (APIC_LVR >> 4));
	vmcall();
	GUEST_FAIL("L2 resumed after its last exit");
}

/* L2 starts over at `code`, on its stack, with RFLAGS.IF clear. */
static void restart_l2(void (*code)(void), u64 rsp)
{
	vmwrite(GUEST_RIP, (u64)code);
	vmwrite(GUEST_RSP, rsp);
	vmwrite(GUEST_RFLAGS, 2);
}

static void l1_code(struct vmx_pages *vmx)
{
	u64 rsp;
	u32 prim;
	int i;

	x2apic_enable();
	self_nmi_icr = APIC_DEST_PHYSICAL | APIC_DM_NMI | APIC_INT_ASSERT |
		       ((u64)x2apic_read_reg(APIC_ID) << 32);
	GUEST_ASSERT(rdmsr(MSR_IA32_VMX_TRUE_PINBASED_CTLS) >> 32 & PIN_BASED_NMI_EXITING);
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code);
	vmwrite(PIN_BASED_VM_EXEC_CONTROL, vmreadz(PIN_BASED_VM_EXEC_CONTROL) | PIN_BASED_NMI_EXITING);
	/* L1's MSR bitmap (all zero) lets L2's x2APIC writes through to L1's APIC. */
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, vmreadz(CPU_BASED_VM_EXEC_CONTROL) | CPU_BASED_USE_MSR_BITMAPS);
	rsp = vmreadz(GUEST_RSP);

	/* 1. L2's NMI for L1 is an NMI exit right after the WRMSR. */
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_EXCEPTION_NMI);
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_INTR_INFO), INTR_INFO_NMI);
	GUEST_ASSERT_EQ(vmreadz(GUEST_RIP), (u64)l2_after_first_nmi);
	GUEST_ASSERT_EQ(nmi_count, 0);
	/* The host checks that L1 is NMI-blocked now. */
	GUEST_SYNC(1);

	/* 2. Still blocked: L1's own NMI waits for its IRET. */
	self_nmi();
	GUEST_ASSERT_EQ(nmi_count, 0);
	iret_to_self();
	GUEST_ASSERT_EQ(nmi_count, 1);
	GUEST_SYNC(2);

	/* 3. Without NMI exiting, L2's NMI is L2's. */
	vmwrite(PIN_BASED_VM_EXEC_CONTROL, vmreadz(PIN_BASED_VM_EXEC_CONTROL) & ~PIN_BASED_NMI_EXITING);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_ASSERT_EQ(nmi_count, 2);
	GUEST_SYNC(3);

	/* 4. L1's interrupt window: after STI and the instruction it shadows. */
	restart_l2(l2_window_code, rsp);
	prim = vmreadz(CPU_BASED_VM_EXEC_CONTROL);
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, prim | CPU_BASED_INTR_WINDOW_EXITING);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_INTERRUPT_WINDOW);
	GUEST_ASSERT_EQ(vmreadz(GUEST_RIP), (u64)l2_window_open);
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, prim);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_SYNC(4);

	/* 5. L1's NMI window, L2 virtual-NMI blocked until its IRET. */
	GUEST_ASSERT(rdmsr(MSR_IA32_VMX_TRUE_PINBASED_CTLS) >> 32 & PIN_BASED_VIRTUAL_NMIS);
	GUEST_ASSERT(rdmsr(MSR_IA32_VMX_TRUE_PROCBASED_CTLS) >> 32 & CPU_BASED_NMI_WINDOW_EXITING);
	restart_l2(l2_nmi_window_code, rsp);
	vmwrite(PIN_BASED_VM_EXEC_CONTROL,
		vmreadz(PIN_BASED_VM_EXEC_CONTROL) | PIN_BASED_NMI_EXITING | PIN_BASED_VIRTUAL_NMIS);
	vmwrite(GUEST_INTERRUPTIBILITY_INFO, GUEST_INTR_STATE_NMI);
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, prim | CPU_BASED_NMI_WINDOW_EXITING);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_NMI_WINDOW);
	GUEST_ASSERT_EQ(vmreadz(GUEST_RIP), (u64)iret_done);
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, prim);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_SYNC(5);

	/* 6. L1's timer while L2 keeps the hypervisor busy (no acknowledge on exit). */
	vmwrite(PIN_BASED_VM_EXEC_CONTROL, vmreadz(PIN_BASED_VM_EXEC_CONTROL) | PIN_BASED_EXT_INTR_MASK);
	vmwrite(VM_EXIT_CONTROLS, vmreadz(VM_EXIT_CONTROLS) & ~VM_EXIT_ACK_INTR_ON_EXIT);
	x2apic_write_reg(APIC_LVTT, TSC_DEADLINE_MODE | TIMER_VECTOR);
	for (i = 0; i < TIMER_ROUNDS; i++) {
		restart_l2(l2_busy_code, rsp);
		vmwrite(GUEST_RFLAGS, X86_EFLAGS_FIXED | X86_EFLAGS_IF);
		wrmsr(MSR_IA32_TSC_DEADLINE, rdtsc() + 20000 + 997 * i);
		GUEST_ASSERT(!vmresume());
		in_l2 = 0;
		GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_EXTERNAL_INTERRUPT);
		GUEST_ASSERT_EQ(l2_timer_count, 0);
		/* The interrupt waits in L1's APIC for L1 to take it. */
		asm volatile("sti; nop; cli");
		GUEST_ASSERT_EQ(l1_timer_count, i + 1);
	}
	GUEST_DONE();
}

int main(void)
{
	struct kvm_vcpu_events e;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	gva_t vmx_gva;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_X2APIC));
	vm = vm_create_with_one_vcpu(&vcpu, l1_code);
	vm_install_exception_handler(vm, NMI_VECTOR, nmi_handler);
	vm_install_exception_handler(vm, TIMER_VECTOR, timer_handler);
	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);

	nvmx_run_to_stage(vcpu, 1);
	vcpu_events_get(vcpu, &e);
	TEST_ASSERT(e.nmi.masked, "L1 is NMI-blocked after an NMI exit");
	TEST_ASSERT(!e.nmi.pending && !e.nmi.injected, "the NMI exit consumed the NMI");
	pr_info("L2's NMI for L1: an NMI exit after the WRMSR, L1 NMI-blocked passed\n");
	nvmx_run_to_stage(vcpu, 2);
	pr_info("L1's NMI while blocked: delivered right after its IRET passed\n");
	nvmx_run_to_stage(vcpu, 3);
	pr_info("without NMI exiting: L2's NMI delivered to L2 passed\n");
	nvmx_run_to_stage(vcpu, 4);
	pr_info("L1's interrupt window: exit after L2's STI shadow passed\n");
	nvmx_run_to_stage(vcpu, 5);
	pr_info("L1's NMI window: exit after L2's IRET passed\n");
	nvmx_run_to_stage(vcpu, 0);
	pr_info("L1's timer while L2 runs: %d external-interrupt exits, none delivered to L2 passed\n", TIMER_ROUNDS);
	kvm_vm_free(vm);
	return 0;
}
