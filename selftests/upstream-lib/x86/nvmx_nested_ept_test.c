// SPDX-License-Identifier: GPL-2.0-only
/*
 * Nested EPT, written with the upstream KVM selftest library (lib/x86/vmx.c, EPT tables
 * from lib/x86/processor.c) so that it runs unchanged against kvm_intel (nested=1) and nvmx.
 * L1 runs L2 under its own EPT (identity-mapped) and changes the EPT entries of L2's data
 * pages between L2's accesses:
 *
 *  1. a page L1's EPT does not map: L2's read is L1's EPT violation (qualification: read,
 *     linear address valid and translated, no rights; guest-physical and linear address);
 *     L1 maps it, VMRESUME retries the read, which now sees the page;
 *  2. a page L2 has written (so a translation may be cached) that L1 then write-protects
 *     and invalidates with single-context INVEPT: L2's next write is an EPT violation with
 *     rights read+execute; L1 gives write back (all-context INVEPT) and the write lands;
 *  3. an entry L1 makes write-only: EPT misconfiguration with the guest-physical address;
 *  4. INVEPT with an invalid EPTP or an unknown type: VMfailValid(28).
 *
 * SDM vol. 3C 29.3.3 (EPT violations and misconfigurations), 28.2.1 (exit qualification),
 * 29.4.3 (invalidation), 32.3 "INVEPT".
 */
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "nvmx_stages.h"

#define DATA_GVA	0x10000000ul
#define PTE_GVA		0x30000000ul
#define NR_DATA		4
#define PATTERN(i)	(0x1111111111111111ul * ((i) + 1))

/* Set by main(): L2's data pages (L1 virtual = L2 virtual), their guest-physical addresses,
 * and where L1 sees the EPT entry of each. */
static u64 data_gpa[NR_DATA];
static u64 *ept_pte[NR_DATA];

static u64 *data(int i)
{
	return (u64 *)(DATA_GVA + i * PAGE_SIZE);
}

static void l2_code(void)
{
	/* Page 0 is mapped: L2 keeps what it read there in page 0 word 1 for L1. */
	WRITE_ONCE(data(0)[1], READ_ONCE(*data(1)));	/* 1: not present, then mapped */
	vmcall();
	WRITE_ONCE(*data(2), 1);
	vmcall();
	WRITE_ONCE(*data(2), 2);			/* 2: write-protected after INVEPT */
	vmcall();
	WRITE_ONCE(data(0)[2], READ_ONCE(*data(3)));	/* 3: misconfigured, then fixed */
	vmcall();
}

static u8 invept_fails(u64 type, u64 eptp)
{
	struct { u64 eptp, reserved; } desc = { eptp, 0 };
	u8 failed;

	__asm__ __volatile__("invept %[desc], %[type]; setbe %[failed]"
			     : [failed] "=q"(failed)
			     : [desc] "m"(desc), [type] "r"(type)
			     : "cc", "memory");
	return failed;
}

static void expect_exit(u32 reason, int page, u64 qual)
{
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), reason);
	GUEST_ASSERT_EQ(vmreadz(GUEST_PHYSICAL_ADDRESS), data_gpa[page]);
	if (reason == EXIT_REASON_EPT_VIOLATION) {
		GUEST_ASSERT_EQ(vmreadz(EXIT_QUALIFICATION) & 0x1ff, qual);
		GUEST_ASSERT_EQ(vmreadz(GUEST_LINEAR_ADDRESS), (u64)data(page));
	}
}

static void resume_after_vmcall(void)
{
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
	GUEST_ASSERT(!vmresume());
}

static void l1_code(struct vmx_pages *vmx)
{
	const u64 rwx = 7, w = 2;
	u64 eptp, pte1, pte3;

	GUEST_ASSERT(vmx->eptp_gpa);
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code);
	eptp = vmreadz(EPT_POINTER);

	/* 1. Page 1 not present. */
	pte1 = *ept_pte[1];
	*ept_pte[1] = 0;
	GUEST_ASSERT(!vmlaunch());
	expect_exit(EXIT_REASON_EPT_VIOLATION, 1,
		    EPT_VIOLATION_ACC_READ | EPT_VIOLATION_GVA_IS_VALID | EPT_VIOLATION_GVA_TRANSLATED);
	*ept_pte[1] = pte1;	/* not present -> present: no invalidation needed */
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(READ_ONCE(data(0)[1]), PATTERN(1));
	GUEST_SYNC(1);

	/* 2. Page 2 written by L2, then write-protected. */
	resume_after_vmcall();
	GUEST_ASSERT_EQ(READ_ONCE(*data(2)), 1);
	*ept_pte[2] &= ~w;
	GUEST_ASSERT(!invept_fails(1, eptp));
	resume_after_vmcall();
	expect_exit(EXIT_REASON_EPT_VIOLATION, 2,
		    EPT_VIOLATION_ACC_WRITE | EPT_VIOLATION_PROT_READ | EPT_VIOLATION_PROT_EXEC |
		    EPT_VIOLATION_GVA_IS_VALID | EPT_VIOLATION_GVA_TRANSLATED);
	GUEST_ASSERT_EQ(READ_ONCE(*data(2)), 1);
	*ept_pte[2] |= w;
	GUEST_ASSERT(!invept_fails(2, 0));
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(READ_ONCE(*data(2)), 2);
	GUEST_SYNC(2);

	/* 3. Page 3's entry write-only: misconfigured. */
	pte3 = *ept_pte[3];
	*ept_pte[3] = (pte3 & ~rwx) | w;
	GUEST_ASSERT(!invept_fails(1, eptp));
	resume_after_vmcall();
	expect_exit(EXIT_REASON_EPT_MISCONFIG, 3, 0);
	*ept_pte[3] = pte3;
	GUEST_ASSERT(!invept_fails(1, eptp));
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(READ_ONCE(data(0)[2]), PATTERN(3));
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_SYNC(3);

	/* 4. INVEPT operands. */
	GUEST_ASSERT(invept_fails(1, (eptp & ~7ul) | 5));	/* memory type 5 */
	GUEST_ASSERT_EQ(vmreadz(VM_INSTRUCTION_ERROR), 28);
	GUEST_ASSERT(invept_fails(3, eptp));			/* no such type */
	GUEST_ASSERT_EQ(vmreadz(VM_INSTRUCTION_ERROR), 28);
	GUEST_DONE();
}

int main(int argc, char *argv[])
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	gva_t vmx_gva, gva;
	int i;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	TEST_REQUIRE(kvm_cpu_has_ept());
	vm = vm_create_with_one_vcpu(&vcpu, l1_code);
	vm_enable_tdp(vm);
	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);

	gva = vm_alloc(vm, NR_DATA * PAGE_SIZE, DATA_GVA);
	TEST_ASSERT_EQ(gva, DATA_GVA);
	for (i = 0; i < NR_DATA; i++) {
		data_gpa[i] = addr_gva2gpa(vm, DATA_GVA + i * PAGE_SIZE);
		*(u64 *)addr_gpa2hva(vm, data_gpa[i]) = PATTERN(i);
	}
	tdp_identity_map_default_memslots(vm);
	/* L1 reaches its EPT entries through a mapping of their table pages at PTE_GVA (new L1
	 * page tables that L2, which never touches PTE_GVA, does not need in the EPT). */
	for (i = 0; i < NR_DATA; i++) {
		u64 *pte = tdp_get_pte(vm, data_gpa[i]);
		gpa_t table = addr_hva2gpa(vm, (void *)((u64)pte & ~0xffful));

		virt_map(vm, PTE_GVA + i * PAGE_SIZE, table, 1);
		ept_pte[i] = (u64 *)(PTE_GVA + i * PAGE_SIZE + ((u64)pte & 0xfff));
	}
	sync_global_to_guest(vm, data_gpa);
	sync_global_to_guest(vm, ept_pte);

	TEST_ASSERT_EQ(nvmx_run_stages(vcpu, "nested EPT", 0), 3);
	pr_info("INVEPT operand checks passed\n");
	kvm_vm_free(vm);
	return 0;
}
