// SPDX-License-Identifier: GPL-2.0-only
/*
 * A guest's debug registers, written with the upstream KVM selftest library so that it runs
 * unchanged against kvm_intel and nvmx (SDM vol. 3B 18.2 "Debug registers", vol. 3C 27.3.2.1
 * and 28.3.1 / 28.5.1 for DR7 across nested entries and exits):
 *
 *  1. MOV to/from DR0-DR3, DR6, DR7; a data breakpoint set through them fires (#DB, B0 in
 *     DR6, trap-like after the write); DR6/DR7 fixed bits; bits 63:32 of DR7 are #GP; DR4
 *     aliases DR6 without CR4.DE and is #UD with it;
 *  2. KVM_GET_DEBUGREGS shows the guest's values, KVM_SET_DEBUGREGS sets them (the guest
 *     reads them back), EINVAL for flags or DR6/DR7 bits 63:32;
 *  3. nested: "load debug controls" gives L2 VMCS12's DR7, L2's MOV DR (not intercepted)
 *     uses the vCPU's registers, "save debug controls" stores L2's DR7 and L1 has DR7 =
 *     0x400 after the exit.
 */
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "nvmx_stages.h"
#include "nvmx_db.h"

/* DR7: breakpoint 0 enabled locally (L0), on data writes (R/W0 = 01), 4 bytes (LEN0 = 11). */
#define DR7_BP0_WRITE4	((1ul << 0) | (1ul << 16) | (3ul << 18))

static volatile u32 watched;
extern char after_watched_write[];

#define get_dr(n) ({ u64 v; asm volatile("mov %%dr" #n ", %0" : "=r"(v)); v; })
#define set_dr(n, v) asm volatile("mov %0, %%dr" #n :: "r"((u64)(v)))

static void guest_code(void)
{
	u8 vector;

	/* 1. Reset values, a data breakpoint, fixed and reserved bits, DR4. */
	GUEST_ASSERT_EQ(get_dr(7), 0x400);
	GUEST_ASSERT_EQ(get_dr(6), 0xffff0ff0);
	set_dr(0, &watched);
	set_dr(7, DR7_BP0_WRITE4);
	GUEST_ASSERT_EQ(get_dr(0), (u64)&watched);
	GUEST_ASSERT_EQ(get_dr(7), DR7_BP0_WRITE4 | 0x400);
	asm volatile("movl $1, %0\n\t"
		     ".global after_watched_write\n\t"
		     "after_watched_write:" : "=m"(watched));
	GUEST_ASSERT_EQ(db_count, 1);
	GUEST_ASSERT_EQ(db_rip, (u64)after_watched_write);
	GUEST_ASSERT_EQ(db_dr6, 0xffff0ff1);
	set_dr(7, 0);
	watched = 2;
	GUEST_ASSERT_EQ(db_count, 1);
	GUEST_ASSERT_EQ(get_dr(7), 0x400);
	vector = kvm_asm_safe("mov %[v], %%dr7", [v] "r"(1ul << 32));
	GUEST_ASSERT_EQ(vector, GP_VECTOR);
	set_dr(6, 0);
	GUEST_ASSERT_EQ(get_dr(6), 0xffff0ff0);
	set_cr4(get_cr4() & ~X86_CR4_DE);
	GUEST_ASSERT_EQ(get_dr(4), 0xffff0ff0);
	set_cr4(get_cr4() | X86_CR4_DE);
	vector = kvm_asm_safe("mov %%dr4, %%rax", "a"(0));
	GUEST_ASSERT_EQ(vector, UD_VECTOR);
	set_dr(3, 0x1234);
	set_dr(7, 0x80);	/* G3, a breakpoint on an address nothing touches */
	GUEST_SYNC(1);

	/* 2. The host changed DR1 and DR7. */
	GUEST_ASSERT_EQ(get_dr(1), 0xabcd000);
	GUEST_ASSERT_EQ(get_dr(7), 0x400 | 0x4);
	set_dr(7, 0);
	GUEST_DONE();
}

static void l2_code(void)
{
	GUEST_ASSERT_EQ(get_dr(7), 0x400 | 0x2);
	set_dr(7, 0x400 | 0x20);
	vmcall();
}

static void l1_code(struct vmx_pages *vmx)
{
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code);
	GUEST_ASSERT(vmreadz(VM_ENTRY_CONTROLS) & VM_ENTRY_LOAD_DEBUG_CONTROLS);
	GUEST_ASSERT(vmreadz(VM_EXIT_CONTROLS) & VM_EXIT_SAVE_DEBUG_CONTROLS);
	vmwrite(GUEST_DR7, 0x400 | 0x2);
	set_dr(7, 0x400 | 0x8);
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_ASSERT_EQ(vmreadz(GUEST_DR7), 0x400 | 0x20);
	GUEST_ASSERT_EQ(get_dr(7), 0x400);
	GUEST_DONE();
}

static void test_debugregs_ioctls(struct kvm_vcpu *vcpu)
{
	struct kvm_debugregs regs, bad;

	vcpu_debugregs_get(vcpu, &regs);
	TEST_ASSERT_EQ(regs.db[3], 0x1234);
	TEST_ASSERT_EQ(regs.dr7, 0x480);
	bad = regs;
	bad.flags = 1;
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_SET_DEBUGREGS, &bad) == -1 && errno == EINVAL, "flags: EINVAL");
	bad = regs;
	bad.dr7 = 1ull << 32;
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_SET_DEBUGREGS, &bad) == -1 && errno == EINVAL, "DR7 63:32: EINVAL");
	bad = regs;
	bad.dr6 = 1ull << 40;
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_SET_DEBUGREGS, &bad) == -1 && errno == EINVAL, "DR6 63:32: EINVAL");
	regs.db[1] = 0xabcd000;
	regs.dr7 = 0x400 | 0x4;
	vcpu_debugregs_set(vcpu, &regs);
}

int main(int argc, char *argv[])
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	gva_t vmx_gva;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_DEBUGREGS));
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	vm_install_exception_handler(vm, DB_VECTOR, db_handler);
	TEST_ASSERT_EQ(nvmx_run_stages(vcpu, "debug registers", 1), 1);
	test_debugregs_ioctls(vcpu);
	TEST_ASSERT_EQ(nvmx_run_stages(vcpu, "debug registers after KVM_SET_DEBUGREGS", 0), 0);
	pr_info("KVM_GET/SET_DEBUGREGS: values and EINVAL cases\n");
	kvm_vm_free(vm);

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	vm = vm_create_with_one_vcpu(&vcpu, l1_code);
	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);
	TEST_ASSERT_EQ(nvmx_run_stages(vcpu, "nested DR7", 0), 0);
	pr_info("nested: DR7 loaded from and saved into VMCS12, 0x400 for L1 after the exit\n");
	kvm_vm_free(vm);
	return 0;
}
