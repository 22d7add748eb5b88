// SPDX-License-Identifier: GPL-2.0-only
/*
 * L1's memory changes while L2 runs under L1's EPT, written with the upstream KVM selftest
 * library so that it runs unchanged against kvm_intel and nvmx. L2 reads a page of a memory
 * slot of its own (mapped by L1's EPT) and reports what it read, again and again; between
 * two of its reports the VMM
 *
 *  1. writes new contents into the slot's memory: L2 sees them;
 *  2. deletes the slot and creates it again at the same guest-physical address with other
 *     memory: L2 sees the new memory, not the old (the hypervisor's combined EPT for L2 must
 *     not keep a translation of the slot that went);
 *  3. adds a second slot, which L1's EPT already maps: L2 reads it too.
 *
 * L2 never exits to L1 in between: the changes happen while L1's VMCS12 stays in guest mode.
 */
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "nvmx_stages.h"

#define SLOT		10
#define SLOT2		11
#define SLOT_GPA	0xc0000000ul
#define SLOT2_GPA	0xc0200000ul
#define SLOT_GVA	0xc0000000ul
#define SLOT2_GVA	0xc0200000ul

static int which;

static void l2_code(void)
{
	for (;;) {
		u64 v = READ_ONCE(*(u64 *)(READ_ONCE(which) ? SLOT2_GVA : SLOT_GVA));

		GUEST_SYNC(v);
	}
}

static void l1_code(struct vmx_pages *vmx)
{
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code);
	GUEST_ASSERT(!vmlaunch());
	GUEST_FAIL("L2 exited to L1: %lu", vmreadz(VM_EXIT_REASON));
}

static void fill(struct kvm_vm *vm, u64 gpa, u64 v)
{
	*(u64 *)addr_gpa2hva(vm, gpa) = v;
}

int main(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	gva_t vmx_gva;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	TEST_REQUIRE(kvm_cpu_has_ept());
	vm = vm_create_with_one_vcpu(&vcpu, l1_code);
	vm_enable_tdp(vm);
	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, SLOT_GPA, SLOT, 1, 0);
	fill(vm, SLOT_GPA, 0x11);
	virt_map(vm, SLOT_GVA, SLOT_GPA, 1);
	virt_map(vm, SLOT2_GVA, SLOT2_GPA, 1);
	tdp_identity_map_default_memslots(vm);
	tdp_map(vm, SLOT_GPA, SLOT_GPA, PAGE_SIZE);
	tdp_map(vm, SLOT2_GPA, SLOT2_GPA, PAGE_SIZE);

	TEST_ASSERT_EQ(nvmx_next_stage(vcpu), 0x11);
	TEST_ASSERT_EQ(nvmx_next_stage(vcpu), 0x11);

	/* 1. New contents, same memory. */
	fill(vm, SLOT_GPA, 0x22);
	TEST_ASSERT_EQ(nvmx_next_stage(vcpu), 0x22);
	pr_info("L2 sees the slot's new contents passed\n");

	/* 2. The slot deleted and made again with other memory. */
	vm_mem_region_delete(vm, SLOT);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, SLOT_GPA, SLOT, 1, 0);
	fill(vm, SLOT_GPA, 0x33);
	TEST_ASSERT_EQ(nvmx_next_stage(vcpu), 0x33);
	TEST_ASSERT_EQ(nvmx_next_stage(vcpu), 0x33);
	pr_info("L2 sees the new memory of a slot made again passed\n");

	/* 3. A slot added while L2 runs. */
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, SLOT2_GPA, SLOT2, 1, 0);
	fill(vm, SLOT2_GPA, 0x44);
	which = 1;
	sync_global_to_guest(vm, which);
	TEST_ASSERT_EQ(nvmx_next_stage(vcpu), 0x44);
	pr_info("L2 reads a slot added while it runs passed\n");

	kvm_vm_free(vm);
	return 0;
}
