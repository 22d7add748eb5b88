// SPDX-License-Identifier: GPL-2.0-only
/*
 * Guests that make the CPU loop inside exception delivery must not take the host CPU with
 * them (CVE-2015-8104, CVE-2015-5307). Debug traps and faults raised while an exception is
 * delivered outrank interrupts, NMIs and the VMX-preemption timer (SDM vol. 3A 6.9), so such
 * a loop never ends by itself: only a hypervisor that intercepts #DB and #AC (and re-injects
 * them) sees one VM exit per iteration and can leave KVM_RUN on a signal. Written with the
 * upstream KVM selftest library so that it runs against kvm_intel and nvmx.
 *
 *  1. debug exceptions still reach the guest exactly (a data breakpoint, a single step,
 *     ICEBP: DR6 and RIP as the SDM gives them) now that the hypervisor intercepts them;
 *  2. L1: a data breakpoint on the slot of the #DB IST stack that delivery writes;
 *  3. L2, under an L1 that does not intercept #DB: the same loop;
 *  4. a 32-bit protected-mode guest at CPL 3 with CR0.AM and EFLAGS.AC whose #AC handler
 *     (a ring-3 gate) has a misaligned stack.
 * The #DB loops must end KVM_RUN with EINTR when a signal arrives; the #AC loop ends at its
 * first iteration, with KVM's exit for an exception during event delivery.
 */
#include <signal.h>
#include <sys/time.h>

#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "nvmx_stages.h"
#include "nvmx_db.h"

/* DR7: breakpoint 0 enabled locally, on data writes (R/W0 = 01), 8 bytes (LEN0 = 10). */
#define DR7_BP0_WRITE8	((1ul << 0) | (1ul << 16) | (2ul << 18))
#define DR6_BS		(1ul << 14)
/* Offset of IST1 in the 64-bit TSS. */
#define TSS_IST1	0x24

#define set_dr(n, v) asm volatile("mov %0, %%dr" #n :: "r"((u64)(v)))

extern char after_watched_write[], after_single_step[], after_icebp[];
static volatile u64 watched;

/* 1. Debug exceptions the hypervisor intercepts and re-injects. */
static void guest_debug_exceptions(void)
{
	set_dr(0, &watched);
	set_dr(7, DR7_BP0_WRITE8);
	asm volatile("movq $1, %0\n\t"
		     ".global after_watched_write\n\t"
		     "after_watched_write:" : "=m"(watched));
	set_dr(7, 0);
	GUEST_ASSERT_EQ(db_count, 1);
	GUEST_ASSERT_EQ(db_rip, (u64)after_watched_write);
	GUEST_ASSERT_EQ(db_dr6, 0xffff0ff1);

	/* Single step over one instruction: BS. */
	asm volatile("pushfq; orq $0x100, (%%rsp); popfq\n\t"
		     "nop\n\t"
		     ".global after_single_step\n\t"
		     "after_single_step: nop" ::: "memory", "cc");
	GUEST_ASSERT_EQ(db_count, 2);
	GUEST_ASSERT_EQ(db_rip, (u64)after_single_step);
	GUEST_ASSERT_EQ(db_dr6, 0xffff0ff0 | DR6_BS);

	/* ICEBP (INT1): a trap-like #DB after the instruction, no DR6 status bit. */
	asm volatile(".byte 0xf1\n\t"
		     ".global after_icebp\n\t"
		     "after_icebp:" ::: "memory");
	GUEST_ASSERT_EQ(db_count, 3);
	GUEST_ASSERT_EQ(db_rip, (u64)after_icebp);
	GUEST_ASSERT_EQ(db_dr6 & 0xf, 0);
	GUEST_DONE();
}

/* The IST stack of #DB, and the slot delivery writes first (SS, at the 16-byte aligned top). */
static u64 ist_top;

static void db_ist_loop(void)
{
	set_dr(0, ist_top - 8);
	set_dr(7, DR7_BP0_WRITE8);
	/* The first #DB; from then on every delivery of #DB raises the next one. */
	*(volatile u64 *)(ist_top - 8) = 0;
	GUEST_FAIL("#DB delivery did not loop");
}

static void l1_runs_l2_db_loop(struct vmx_pages *vmx)
{
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	/* L2 shares L1's IDT and TSS (the library copies L1's descriptor tables into VMCS12). */
	prepare_vmcs(vmx, db_ist_loop);
	GUEST_ASSERT_EQ(vmreadz(EXCEPTION_BITMAP), 0);
	GUEST_ASSERT(!vmlaunch());
	GUEST_FAIL("L2 exited to L1: reason %lu", vmreadz(VM_EXIT_REASON));
}

static void on_alarm(int sig)
{
	(void)sig;
}

/* KVM_RUN must end with EINTR when a signal comes while the guest loops. */
static void run_until_signal(struct kvm_vcpu *vcpu, const char *what)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	struct itimerval t = { .it_value = { .tv_usec = 300000 } };
	int r;

	TEST_ASSERT(!sigaction(SIGALRM, &sa, NULL), "sigaction");
	TEST_ASSERT(!setitimer(ITIMER_REAL, &t, NULL), "setitimer");
	r = __vcpu_run(vcpu);
	if (r == 0 && vcpu->run->exit_reason == KVM_EXIT_IO) {
		struct ucall uc;

		if (get_ucall(vcpu, &uc) == UCALL_ABORT)
			REPORT_GUEST_ASSERT(uc);
	}
	TEST_ASSERT(r == -1 && errno == EINTR,
		    "%s: KVM_RUN returned %d (errno %d, exit reason %u), expected EINTR",
		    what, r, errno, vcpu->run->exit_reason);
	TEST_ASSERT_EQ(vcpu->run->exit_reason, KVM_EXIT_INTR);
	pr_info("%s: KVM_RUN left on the signal\n", what);
}

/* Give #DB its own IST stack (IST1 in the TSS, IST index 1 in its IDT gate). */
static void give_db_an_ist_stack(struct kvm_vm *vm)
{
	struct idt_entry *idt = addr_gva2hva(vm, vm->arch.idt);
	u8 *tss = addr_gva2hva(vm, vm->arch.tss);
	u64 stack = vm_alloc_page(vm);

	ist_top = stack + 4096;
	memcpy(tss + TSS_IST1, &ist_top, sizeof(ist_top));
	idt[DB_VECTOR].ist = 1;
	sync_global_to_guest(vm, ist_top);
}

static void test_debug_exceptions(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_debug_exceptions);

	vm_install_exception_handler(vm, DB_VECTOR, db_handler);
	nvmx_run_stages(vcpu, "debug exceptions", 0);
	pr_info("debug exceptions: data breakpoint, single step and ICEBP as the SDM gives them\n");
	kvm_vm_free(vm);
}

static void test_l1_db_loop(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, db_ist_loop);

	give_db_an_ist_stack(vm);
	run_until_signal(vcpu, "L1 #DB IST loop");
	kvm_vm_free(vm);
}

static void test_l2_db_loop(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, l1_runs_l2_db_loop);
	gva_t vmx_gva;

	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);
	give_db_an_ist_stack(vm);
	run_until_signal(vcpu, "L2 #DB IST loop");
	kvm_vm_free(vm);
}

/*
 * 4. A flat 32-bit protected-mode guest without paging, at CPL 3. Guest-physical layout: GDT
 * at 0x1000, IDT at 0x2000, code at 0x3000, the #AC handler at 0x3100, a marker at 0x5000,
 * the misaligned stack just below 0x7000.
 */
#define AC_GDT		0x1000
#define AC_IDT		0x2000
#define AC_CODE		0x3000
#define AC_HANDLER	0x3100
#define AC_MARKER	0x5000
#define AC_STACK	0x6ff1

static void seg32(struct kvm_segment *s, u16 sel, u8 type)
{
	*s = (struct kvm_segment){ .base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
				   .present = 1, .dpl = 3, .db = 1, .s = 1, .g = 1 };
}

static void test_ac_loop(void)
{
	/* Descriptors: null, ring-0 code/data (unused), ring-3 code 0x18 and data 0x20. */
	static const u64 gdt[] = { 0, 0x00cf9b000000ffffull, 0x00cf93000000ffffull,
				   0x00cffb000000ffffull, 0x00cff3000000ffffull };
	/* mov eax, [esp] — a misaligned load at CPL 3 with AM and AC: #AC. */
	static const u8 code[] = { 0x8b, 0x04, 0x24, 0xeb, 0xfe };
	/* The handler, were it ever reached: mov dword [AC_MARKER], 1; jmp $. */
	static const u8 handler[] = { 0xc7, 0x05, 0x00, 0x50, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
				      0xeb, 0xfe };
	struct kvm_vm *vm = vm_create_barebones();
	struct kvm_vcpu *vcpu;
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rip = AC_CODE, .rsp = AC_STACK,
				 .rflags = 0x2 | X86_EFLAGS_AC };
	u32 *gate;
	u8 *mem;

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, 0, 1, 16, 0);
	mem = addr_gpa2hva(vm, 0);
	memcpy(mem + AC_GDT, gdt, sizeof(gdt));
	memcpy(mem + AC_CODE, code, sizeof(code));
	memcpy(mem + AC_HANDLER, handler, sizeof(handler));
	/* #AC: a 32-bit interrupt gate (type 0xe), present, DPL 3, to ring-3 code 0x1b. */
	gate = (u32 *)(mem + AC_IDT + 8 * AC_VECTOR);
	gate[0] = (0x1b << 16) | (AC_HANDLER & 0xffff);
	gate[1] = (AC_HANDLER & 0xffff0000) | 0xee00;

	vcpu = __vm_vcpu_add(vm, 0);
	vcpu_init_cpuid(vcpu, kvm_get_supported_cpuid());
	vcpu_sregs_get(vcpu, &sregs);
	sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE | X86_CR0_AM;
	sregs.cr4 = 0;
	sregs.efer = 0;
	seg32(&sregs.cs, 0x1b, 0xb);
	seg32(&sregs.ss, 0x23, 0x3);
	seg32(&sregs.ds, 0x23, 0x3);
	seg32(&sregs.es, 0x23, 0x3);
	seg32(&sregs.fs, 0x23, 0x3);
	seg32(&sregs.gs, 0x23, 0x3);
	sregs.tr = (struct kvm_segment){ .base = 0x4000, .limit = 0x67, .selector = 0x28,
					 .type = 11, .present = 1 };
	sregs.ldt = (struct kvm_segment){ .selector = 0, .unusable = 1 };
	sregs.gdt.base = AC_GDT;
	sregs.gdt.limit = sizeof(gdt) - 1;
	sregs.idt.base = AC_IDT;
	sregs.idt.limit = 8 * 32 - 1;
	vcpu_sregs_set(vcpu, &sregs);
	vcpu_regs_set(vcpu, &regs);

	/*
	 * The hypervisor sees the #AC raised while delivering #AC (IDT-vectoring information
	 * valid) and, as KVM does for any intercepted exception but #PF during event delivery,
	 * ends KVM_RUN with KVM_INTERNAL_ERROR_SIMUL_EX: vectoring and exit interruption
	 * information, error code, CPU.
	 */
	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_INTERNAL_ERROR);
	TEST_ASSERT_EQ(vcpu->run->internal.suberror, KVM_INTERNAL_ERROR_SIMUL_EX);
	TEST_ASSERT_EQ(vcpu->run->internal.ndata, 4);
	/* Valid, hardware exception, error code delivered, vector 17. */
	TEST_ASSERT_EQ(vcpu->run->internal.data[0], 0x80000b11);
	TEST_ASSERT_EQ(vcpu->run->internal.data[1], 0x80000b11);
	/* #AC's error code is 0, with EXT (bit 0): raised delivering an earlier event (SDM 6.13). */
	TEST_ASSERT_EQ(vcpu->run->internal.data[2], 1);
	pr_info("32-bit #AC loop: KVM_INTERNAL_ERROR_SIMUL_EX for #AC during #AC delivery\n");
	TEST_ASSERT_EQ(*(u32 *)(mem + AC_MARKER), 0);
	vcpu_regs_get(vcpu, &regs);
	TEST_ASSERT_EQ(regs.rip, AC_CODE);
	kvm_vm_free(vm);
}

static const struct {
	const char *name;
	void (*run)(void);
} cases[] = {
	{ "debug_exceptions", test_debug_exceptions },
	{ "l1_db_loop", test_l1_db_loop },
	{ "l2_db_loop", test_l2_db_loop },
	{ "ac_loop", test_ac_loop },
};

/* Every case, or (for debugging) only those named on the command line. */
int main(int argc, char **argv)
{
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		bool named = argc == 1;

		for (int a = 1; a < argc; a++)
			named |= !strcmp(argv[a], cases[i].name);
		if (named)
			cases[i].run();
	}
	return 0;
}
