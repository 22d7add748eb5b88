// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_MEM_READONLY (KVM_CAP_READONLY_MEM): a slot the guest reads and executes like memory
 * and whose writes exit to the VMM as KVM_EXIT_MMIO, the memory unchanged. QEMU maps its
 * ROMs so (the BIOS, option ROMs, the ISA-BIOS alias below 1 MiB), and firmware relies on
 * it: qboot and SeaBIOS write to their own image to learn whether the chipset's PAM
 * registers still have to make the F segment RAM. Without the capability QEMU maps ROMs
 * writable, and on q35 qboot then never programs PAM and dies.
 *
 * L1 reads, writes and executes the slot; with dirty logging on, the slot reports nothing
 * dirty; L2 under L1's identity EPT writes it (L1's EPT allows the write, L0's slot does not:
 * the VMM gets the write at L1's address, L2 goes on). The flag of an existing slot cannot
 * change (EINVAL). Written with the upstream KVM selftest library so that it runs against
 * kvm_intel and nvmx.
 */
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "nvmx_stages.h"

#define ROM_SLOT	10
#define ROM_GPA		0xc0000000ull
#define ROM_PAGES	2
#define PATTERN		0x726f6d2070616765ull	/* "rom page" */
#define L1_WRITE	0x1111222233334444ull
#define L2_WRITE	0x5555666677778888ull

/* The second page holds code: mov $42, %eax; ret. */
static const u8 rom_code[] = { 0xb8, 42, 0, 0, 0, 0xc3 };

static void rom_access(u64 value)
{
	volatile u64 *rom = (volatile u64 *)ROM_GPA;
	int (*fn)(void) = (int (*)(void))(ROM_GPA + PAGE_SIZE);

	GUEST_ASSERT_EQ(rom[0], PATTERN);
	rom[1] = value;		/* to the VMM, as MMIO */
	GUEST_ASSERT_EQ(rom[1], PATTERN + 1);
	GUEST_ASSERT_EQ(rom[0], PATTERN);
	GUEST_ASSERT_EQ(fn(), 42);
}

static void l2_code(void)
{
	rom_access(L2_WRITE);
	vmcall();
}

static void l1_code(struct vmx_pages *vmx)
{
	rom_access(L1_WRITE);
	GUEST_SYNC(1);

	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code);
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_SYNC(2);
	GUEST_DONE();
}

/* Run to the guest's write to the slot: KVM_EXIT_MMIO at ROM_GPA + 8, 8 bytes of `value`. */
static void expect_rom_write(struct kvm_vcpu *vcpu, u64 value)
{
	struct kvm_run *run = vcpu->run;
	u64 data;

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_MMIO);
	TEST_ASSERT_EQ(run->mmio.phys_addr, ROM_GPA + 8);
	TEST_ASSERT_EQ(run->mmio.len, 8);
	TEST_ASSERT_EQ(run->mmio.is_write, 1);
	memcpy(&data, run->mmio.data, 8);
	TEST_ASSERT_EQ(data, value);
}

int main(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	gva_t vmx_gva;
	u64 *rom, bitmap[1] = { 0 };

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_READONLY_MEM));
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	TEST_REQUIRE(kvm_cpu_has_ept());
	vm = vm_create_with_one_vcpu(&vcpu, l1_code);
	vm_enable_tdp(vm);
	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, ROM_GPA, ROM_SLOT, ROM_PAGES,
				    KVM_MEM_READONLY | KVM_MEM_LOG_DIRTY_PAGES);
	rom = addr_gpa2hva(vm, ROM_GPA);
	rom[0] = PATTERN;
	rom[1] = PATTERN + 1;
	memcpy((u8 *)rom + PAGE_SIZE, rom_code, sizeof(rom_code));
	virt_map(vm, ROM_GPA, ROM_GPA, ROM_PAGES);
	tdp_identity_map_default_memslots(vm);
	tdp_map(vm, ROM_GPA, ROM_GPA, ROM_PAGES * PAGE_SIZE);

	/* The flag of an existing slot cannot change. */
	TEST_ASSERT_EQ(__vm_set_user_memory_region(vm, ROM_SLOT, KVM_MEM_LOG_DIRTY_PAGES, ROM_GPA,
						   ROM_PAGES * PAGE_SIZE, rom), -1);
	TEST_ASSERT_EQ(errno, EINVAL);

	expect_rom_write(vcpu, L1_WRITE);
	TEST_ASSERT_EQ(rom[1], PATTERN + 1);
	nvmx_run_to_stage(vcpu, 1);
	kvm_vm_get_dirty_log(vm, ROM_SLOT, bitmap);
	TEST_ASSERT_EQ(bitmap[0], 0);
	pr_info("L1: the read-only slot reads and executes as memory, a write goes to the VMM passed\n");

	expect_rom_write(vcpu, L2_WRITE);
	TEST_ASSERT(vcpu->run->flags & KVM_RUN_X86_GUEST_MODE, "the write is L2's");
	nvmx_run_to_stage(vcpu, 2);
	TEST_ASSERT_EQ(rom[1], PATTERN + 1);
	kvm_vm_get_dirty_log(vm, ROM_SLOT, bitmap);
	TEST_ASSERT_EQ(bitmap[0], 0);
	nvmx_run_to_stage(vcpu, 0);
	pr_info("L2 under L1's EPT: a write to L1's read-only slot goes to the VMM passed\n");
	kvm_vm_free(vm);
	return 0;
}
