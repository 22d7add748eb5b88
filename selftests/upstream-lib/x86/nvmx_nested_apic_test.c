// SPDX-License-Identifier: GPL-2.0-only
/*
 * APIC virtualization that L1 gives L2, written with the upstream KVM selftest library so
 * that it runs unchanged against kvm_intel (nested=1) and nvmx (SDM 30.1 "Virtual APIC
 * state", 30.3 "TPR virtualization", 30.4 "Virtualizing memory-mapped APIC accesses", 30.5
 * "Virtualizing MSR-based APIC accesses"; entry checks of 27.2.1.1):
 *
 *  1. TPR shadow: L2's MOV from/to CR8 reads and writes VTPR in L1's virtual-APIC page, not
 *     L1's own TPR;
 *  2. a CR8 write below the TPR threshold is a TPR-below-threshold exit, trap-like (RIP after
 *     the MOV), with VTPR written;
 *  3. virtualize x2APIC mode: L2's x2APIC TPR MSR is VTPR, other x2APIC registers are L1's
 *     APIC, a TPR write with reserved bits is #GP in L2, a write below the threshold exits;
 *     that #GP is an exception exit to L1 when L1's exception bitmap asks, and L1 can
 *     re-inject it;
 *  4. virtualized APIC accesses: L2's read and write of the APIC-access page are APIC-access
 *     exits (fault-like) with the offset and the access type in the qualification;
 *  5. VMfailValid(7) for the control combinations the SDM forbids.
 */
#include "kvm_util.h"
#include "processor.h"
#include "apic.h"
#include "vmx.h"
#include "nvmx_stages.h"

#define EXIT_REASON_TPR_BELOW_THRESHOLD	43
#define EXIT_REASON_APIC_ACCESS		44
#define VMXERR_ENTRY_INVALID_CONTROL_FIELD	7
/* Interruption information (SDM 25.9.2). */
#define INTR_VALID			(1u << 31)
#define INTR_HW_EXCEPTION		(3u << 8)
#define INTR_DELIVER_CODE		(1u << 11)
#define X2APIC_TPR_MSR			(APIC_BASE_MSR + (APIC_TASKPRI >> 4))
#define X2APIC_LVR_MSR			(APIC_BASE_MSR + (APIC_LVR >> 4))

/* The virtual-APIC page, as L1 sees it (guest virtual) and its guest-physical address. */
static u8 *vapic;
static u64 vapic_gpa;

/* L1's struct vmx_pages, for L2 (which shares L1's memory and page tables). */
static struct vmx_pages *l2_vmx;
static volatile u64 l2_value;
static volatile u8 l2_fault;

extern char l2_after_cr8_write[], l2_apic_read[], l2_after_apic_read[], l2_apic_write[],
	l2_after_apic_write[], l2_after_tpr_msr_write[];

static u32 vtpr(void)
{
	return *(volatile u32 *)(vapic + APIC_TASKPRI);
}

static void set_vtpr(u32 v)
{
	*(volatile u32 *)(vapic + APIC_TASKPRI) = v;
}

static void l2_code(void)
{
	volatile u32 *apic_access = l2_vmx->apic_access;

	/* 1. CR8 is VTPR[7:4]. */
	l2_value = get_cr8();
	asm volatile("mov %0, %%cr8" :: "r"(7ul));
	vmcall();

	/* 2. Below the threshold (5): exit right after the MOV. */
	asm volatile("mov %0, %%cr8\n\t"
		     ".global l2_after_cr8_write\n\t"
		     "l2_after_cr8_write:" :: "r"(4ul));
	vmcall();

	/* 3. The x2APIC TPR MSR is VTPR; the version register is L1's APIC. */
	wrmsr(X2APIC_TPR_MSR, 0x50);
	l2_value = rdmsr(X2APIC_TPR_MSR);
	GUEST_ASSERT_EQ(rdmsr(X2APIC_LVR_MSR), x2apic_read_reg(APIC_LVR));
	l2_fault = wrmsr_safe(X2APIC_TPR_MSR, 0x150);
	vmcall();
	/* Threshold 3: a TPR of 0x20 is below it. */
	asm volatile("wrmsr\n\t"
		     ".global l2_after_tpr_msr_write\n\t"
		     "l2_after_tpr_msr_write:"
		     :: "c"(X2APIC_TPR_MSR), "a"(0x20), "d"(0));
	vmcall();
	/* The #GP of a reserved TPR write, which L1's exception bitmap now intercepts. */
	l2_fault = wrmsr_safe(X2APIC_TPR_MSR, 0x150);
	vmcall();

	/* 4. The APIC-access page: a read of offset 0x20, a write of offset 0x80. */
	asm volatile(".global l2_apic_read\n\t"
		     "l2_apic_read: movl 0x20(%0), %%eax\n\t"
		     ".global l2_after_apic_read\n\t"
		     "l2_after_apic_read:" :: "r"(apic_access) : "rax", "memory");
	asm volatile(".global l2_apic_write\n\t"
		     "l2_apic_write: movl %%eax, 0x80(%0)\n\t"
		     ".global l2_after_apic_write\n\t"
		     "l2_after_apic_write:" :: "r"(apic_access), "a"(0x30) : "memory");
	vmcall();
	GUEST_FAIL("L2 resumed after its last exit");
}

static void skip_vmcall(void)
{
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
}

static void set_secondary(u32 sec)
{
	vmwrite(SECONDARY_VM_EXEC_CONTROL, sec);
}

/* VMRESUME must fail with VMfailValid(7), and leave L1 where it was. */
static void expect_invalid_controls(void)
{
	GUEST_ASSERT(vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_INSTRUCTION_ERROR), VMXERR_ENTRY_INVALID_CONTROL_FIELD);
}

static void l1_code(struct vmx_pages *vmx)
{
	u32 prim, sec;
	u64 rip;

	GUEST_ASSERT(rdmsr(MSR_IA32_VMX_TRUE_PROCBASED_CTLS) >> 32 & CPU_BASED_TPR_SHADOW);
	GUEST_ASSERT(rdmsr(MSR_IA32_VMX_PROCBASED_CTLS2) >> 32 & SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE);
	GUEST_ASSERT(rdmsr(MSR_IA32_VMX_PROCBASED_CTLS2) >> 32 & SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES);
	x2apic_enable();
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code);
	l2_vmx = vmx;

	/* 1. TPR shadow, CR8 not intercepted. */
	prim = vmreadz(CPU_BASED_VM_EXEC_CONTROL);
	prim &= ~(CPU_BASED_CR8_LOAD_EXITING | CPU_BASED_CR8_STORE_EXITING);
	prim |= CPU_BASED_TPR_SHADOW | CPU_BASED_USE_MSR_BITMAPS;
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, prim);
	vmwrite(VIRTUAL_APIC_PAGE_ADDR, vapic_gpa);
	set_vtpr(0x20);
	x2apic_write_reg(APIC_TASKPRI, 0);
	GUEST_ASSERT(!vmlaunch());
	skip_vmcall();
	GUEST_ASSERT_EQ(l2_value, 2);
	GUEST_ASSERT_EQ(vtpr(), 0x70);
	GUEST_ASSERT_EQ(get_cr8(), 0);
	GUEST_ASSERT_EQ(x2apic_read_reg(APIC_TASKPRI), 0);
	GUEST_SYNC(1);

	/* 2. TPR threshold 5, CR8 write of 4. */
	vmwrite(TPR_THRESHOLD, 5);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_TPR_BELOW_THRESHOLD);
	GUEST_ASSERT_EQ(vmreadz(GUEST_RIP), (u64)l2_after_cr8_write);
	GUEST_ASSERT_EQ(vtpr(), 0x40);
	vmwrite(TPR_THRESHOLD, 0);
	GUEST_ASSERT(!vmresume());
	skip_vmcall();
	GUEST_SYNC(2);

	/* 3. Virtualize x2APIC mode, L1's MSR bitmap (all zero) lets every MSR through. */
	sec = vmreadz(SECONDARY_VM_EXEC_CONTROL);
	set_secondary(sec | SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE);
	GUEST_ASSERT(!vmresume());
	skip_vmcall();
	GUEST_ASSERT_EQ(l2_value, 0x50);
	GUEST_ASSERT_EQ(vtpr(), 0x50);
	GUEST_ASSERT_EQ(l2_fault, GP_VECTOR);
	GUEST_ASSERT_EQ(x2apic_read_reg(APIC_TASKPRI), 0);
	vmwrite(TPR_THRESHOLD, 3);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_TPR_BELOW_THRESHOLD);
	GUEST_ASSERT_EQ(vmreadz(GUEST_RIP), (u64)l2_after_tpr_msr_write);
	GUEST_ASSERT_EQ(vtpr(), 0x20);
	vmwrite(TPR_THRESHOLD, 0);
	GUEST_ASSERT(!vmresume());
	skip_vmcall();
	/* A #GP raised for L2 goes to L1 when its exception bitmap asks; L1 re-injects it. */
	l2_fault = 0;
	vmwrite(EXCEPTION_BITMAP, 1u << GP_VECTOR);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_EXCEPTION_NMI);
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_INTR_INFO), INTR_VALID | INTR_HW_EXCEPTION | INTR_DELIVER_CODE | GP_VECTOR);
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_INTR_ERROR_CODE), 0);
	GUEST_ASSERT_EQ(l2_fault, 0);
	vmwrite(EXCEPTION_BITMAP, 0);
	vmwrite(VM_ENTRY_INTR_INFO_FIELD, INTR_VALID | INTR_HW_EXCEPTION | INTR_DELIVER_CODE | GP_VECTOR);
	vmwrite(VM_ENTRY_EXCEPTION_ERROR_CODE, 0);
	GUEST_ASSERT(!vmresume());
	skip_vmcall();
	GUEST_ASSERT_EQ(l2_fault, GP_VECTOR);
	GUEST_SYNC(3);

	/* 4. Virtualized APIC accesses (no TPR shadow: the accesses themselves exit). */
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, prim & ~CPU_BASED_TPR_SHADOW);
	set_secondary(sec | SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES);
	vmwrite(APIC_ACCESS_ADDR, vmx->apic_access_gpa);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_APIC_ACCESS);
	/* Offset 0x20, a linear read (type 0); fault-like: RIP at the access. */
	GUEST_ASSERT_EQ(vmreadz(EXIT_QUALIFICATION), 0x20);
	GUEST_ASSERT_EQ(vmreadz(GUEST_RIP), (u64)l2_apic_read);
	vmwrite(GUEST_RIP, (u64)l2_after_apic_read);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_APIC_ACCESS);
	/* Offset 0x80, a linear write (type 1). */
	GUEST_ASSERT_EQ(vmreadz(EXIT_QUALIFICATION), (1 << 12) | 0x80);
	GUEST_ASSERT_EQ(vmreadz(GUEST_RIP), (u64)l2_apic_write);
	vmwrite(GUEST_RIP, (u64)l2_after_apic_write);
	GUEST_ASSERT(!vmresume());
	skip_vmcall();
	GUEST_SYNC(4);

	/* 5. Forbidden combinations: VMfailValid(7), L2 not entered. */
	rip = vmreadz(GUEST_RIP);
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, prim & ~CPU_BASED_TPR_SHADOW);
	set_secondary(sec | SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE);
	expect_invalid_controls();	/* x2APIC virtualization without the TPR shadow */
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, prim);
	set_secondary(sec | SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE | SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES);
	expect_invalid_controls();	/* x2APIC virtualization with APIC-access virtualization */
	set_secondary(sec);
	vmwrite(VIRTUAL_APIC_PAGE_ADDR, vapic_gpa | 0x10);
	expect_invalid_controls();	/* virtual-APIC page not aligned */
	vmwrite(VIRTUAL_APIC_PAGE_ADDR, vapic_gpa);
	vmwrite(TPR_THRESHOLD, 0x10);
	expect_invalid_controls();	/* TPR threshold bits 31:4 */
	vmwrite(TPR_THRESHOLD, 0);
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, prim & ~CPU_BASED_TPR_SHADOW);
	set_secondary(sec | SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES);
	vmwrite(APIC_ACCESS_ADDR, vmx->apic_access_gpa | 0x800);
	expect_invalid_controls();	/* APIC-access page not aligned */
	GUEST_ASSERT_EQ(vmreadz(GUEST_RIP), rip);
	GUEST_DONE();
}

int main(int argc, char *argv[])
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct vmx_pages *vmx;
	gva_t vmx_gva, vapic_gva;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	vm = vm_create_with_one_vcpu(&vcpu, l1_code);
	vmx = vcpu_alloc_vmx(vm, &vmx_gva);
	prepare_virtualize_apic_accesses(vmx, vm);
	vapic_gva = vm_alloc_page(vm);
	vapic = (u8 *)vapic_gva;
	vapic_gpa = addr_gva2gpa(vm, vapic_gva);
	sync_global_to_guest(vm, vapic);
	sync_global_to_guest(vm, vapic_gpa);
	vcpu_args_set(vcpu, 1, vmx_gva);
	TEST_ASSERT_EQ(nvmx_run_stages(vcpu, "nested APIC virtualization", 0), 4);
	pr_info("forbidden APIC-virtualization controls: VMfailValid(7)\n");
	kvm_vm_free(vm);
	return 0;
}
