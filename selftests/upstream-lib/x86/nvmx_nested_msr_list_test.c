// SPDX-License-Identifier: GPL-2.0-only
/*
 * L1's MSR lists, written with the upstream KVM selftest library so that it runs unchanged
 * against kvm_intel (nested=1) and nvmx:
 *
 *  1. the VM-entry MSR-load list gives L2 its IA32_KERNEL_GS_BASE (an MSR the CPU switches
 *     by hand) and IA32_SYSENTER_ESP (one the VMCS holds); the VM-exit MSR-store list saves
 *     what L2 wrote; the VM-exit MSR-load list gives L1 new values (SDM 27.4, 28.4, 28.6);
 *  2. an entry-load list whose second entry names IA32_FS_BASE: VM-entry failure, exit
 *     reason 34 with bit 31, qualification 2; the first entry took effect (SDM 27.8);
 *  3. an entry with reserved bits 63:32 set: the same failure, qualification 1;
 *  4. a VM-exit MSR-load list naming IA32_FS_BASE: a VMX abort (SDM 28.7), L1 shuts down
 *     (KVM_EXIT_SHUTDOWN); nvmx also writes the abort indicator (4) into the VMCS region,
 *     as the CPU does (KVM does not, so it is checked against nvmx only).
 */
#include <sys/ioctl.h>
#include <linux/nvmx.h>

#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "nvmx_stages.h"

/* Canonical addresses: both MSRs hold one (WRMSR of another is #GP, a failed load). */
#define A	0x0000111100001000ull
#define B	0x0000222200002000ull
#define C	0x0000333300003000ull
#define D	0xffff844400004000ull
#define E	0x0000555500005000ull
#define A2	0x0000666600006000ull
/* SDM appendix C: VM-entry failure due to MSR loading (not in the library's vmx.h). */
#define EXIT_REASON_MSR_LOADING	34

struct msr_entry {
	u32 index, reserved;
	u64 value;
};

/* Set by main(): L1's page for the three lists and its guest-physical address. */
static struct msr_entry *lists;
static u64 lists_gpa;
static u64 l2_seen[2];

static struct msr_entry *entry_load(void) { return lists; }
static struct msr_entry *exit_store(void) { return lists + 8; }
static struct msr_entry *exit_load(void) { return lists + 16; }

static void set_lists(int n_entry_load, int n_exit_store, int n_exit_load)
{
	vmwrite(VM_ENTRY_MSR_LOAD_ADDR, lists_gpa);
	vmwrite(VM_ENTRY_MSR_LOAD_COUNT, n_entry_load);
	vmwrite(VM_EXIT_MSR_STORE_ADDR, lists_gpa + 8 * sizeof(struct msr_entry));
	vmwrite(VM_EXIT_MSR_STORE_COUNT, n_exit_store);
	vmwrite(VM_EXIT_MSR_LOAD_ADDR, lists_gpa + 16 * sizeof(struct msr_entry));
	vmwrite(VM_EXIT_MSR_LOAD_COUNT, n_exit_load);
}

static void l2_code(void)
{
	l2_seen[0] = rdmsr(MSR_KERNEL_GS_BASE);
	l2_seen[1] = rdmsr(MSR_IA32_SYSENTER_ESP);
	wrmsr(MSR_KERNEL_GS_BASE, E);
	for (;;)
		vmcall();
}

static void expect_entry_failure(u64 qualification)
{
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_FAILED_VMENTRY | EXIT_REASON_MSR_LOADING);
	GUEST_ASSERT_EQ(vmreadz(EXIT_QUALIFICATION), qualification);
}

static void l1_code(struct vmx_pages *vmx)
{
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code);
	/* MSR bitmaps all clear: L2's RDMSR/WRMSR do not exit. */
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, vmreadz(CPU_BASED_VM_EXEC_CONTROL) | CPU_BASED_USE_MSR_BITMAPS);

	/* 1. All three lists. */
	entry_load()[0] = (struct msr_entry){ MSR_KERNEL_GS_BASE, 0, A };
	entry_load()[1] = (struct msr_entry){ MSR_IA32_SYSENTER_ESP, 0, B };
	exit_store()[0] = (struct msr_entry){ MSR_KERNEL_GS_BASE, 0, 0 };
	exit_load()[0] = (struct msr_entry){ MSR_KERNEL_GS_BASE, 0, C };
	exit_load()[1] = (struct msr_entry){ MSR_IA32_SYSENTER_ESP, 0, D };
	set_lists(2, 1, 2);
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_ASSERT_EQ(l2_seen[0], A);
	GUEST_ASSERT_EQ(l2_seen[1], B);
	GUEST_ASSERT_EQ(exit_store()[0].value, E);
	GUEST_ASSERT_EQ(rdmsr(MSR_KERNEL_GS_BASE), C);
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_SYSENTER_ESP), D);
	vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
	GUEST_SYNC(1);

	/* 2. The second entry loads IA32_FS_BASE. */
	entry_load()[0] = (struct msr_entry){ MSR_KERNEL_GS_BASE, 0, A2 };
	entry_load()[1] = (struct msr_entry){ MSR_FS_BASE, 0, 0 };
	set_lists(2, 0, 0);
	expect_entry_failure(2);
	GUEST_ASSERT_EQ(rdmsr(MSR_KERNEL_GS_BASE), A2);
	GUEST_SYNC(2);

	/* 3. Reserved bits. */
	entry_load()[0] = (struct msr_entry){ MSR_KERNEL_GS_BASE, 1, A };
	set_lists(1, 0, 0);
	expect_entry_failure(1);
	GUEST_SYNC(3);

	/* 4. The VM-exit MSR-load list loads IA32_FS_BASE: VMX abort at L2's VMCALL. */
	exit_load()[0] = (struct msr_entry){ MSR_FS_BASE, 0, 0 };
	set_lists(0, 0, 1);
	vmresume();
	GUEST_FAIL("L1 runs after a VMX abort");
}

int main(int argc, char *argv[])
{
	struct nvmx_vcpu_stats stats;
	struct vmx_pages *vmx;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	gva_t vmx_gva, lists_gva;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	vm = vm_create_with_one_vcpu(&vcpu, l1_code);
	vmx = vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);
	lists_gva = vm_alloc_page(vm);
	lists = (struct msr_entry *)lists_gva;
	lists_gpa = addr_gva2gpa(vm, lists_gva);
	sync_global_to_guest(vm, lists);
	sync_global_to_guest(vm, lists_gpa);

	TEST_ASSERT_EQ(nvmx_run_stages(vcpu, "MSR lists", 3), 3);
	/* 4: L1 is in shutdown. */
	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_SHUTDOWN);
	if (!ioctl(vcpu->fd, NVMX_GET_VCPU_STATS, &stats)) {
		TEST_ASSERT_EQ(*(u32 *)(vmx->vmcs_hva + 4), 4);
		pr_info("VMX abort: indicator 4 in the VMCS region, L1 shut down\n");
	} else {
		pr_info("VMX abort: L1 shut down\n");
	}
	kvm_vm_free(vm);
	return 0;
}
