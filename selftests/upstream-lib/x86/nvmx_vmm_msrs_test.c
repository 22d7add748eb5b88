// SPDX-License-Identifier: GPL-2.0-only
/*
 * MSR writes by the VMM follow KVM's rules for host-initiated writes, not the guest's:
 * QEMU writes IA32_MISC_ENABLE = 1 (fast strings) at every reset, which changes bits a
 * guest may not change, and KVM_SET_MSRS must take it. The guest's own rules for the same
 * MSR are checked too (read-only BTS/PEBS-unavailable bits, EMON ignoring writes, the rest
 * storage). The MTRRs, which QEMU saves and restores when its guest CPU has them, are
 * storage with KVM's validity rules for both. MSR_PLATFORM_INFO offers CPUID faulting
 * after vCPU creation, and MSR_MISC_FEATURES_ENABLES takes it only then (for the VMM too).
 * Written with the upstream KVM selftest library so that it runs against kvm_intel and
 * nvmx.
 */
#include "kvm_util.h"
#include "processor.h"
#include "nvmx_stages.h"

#define FAST_STRINGS	(1ull << 0)
#define THERMAL		(1ull << 3)
#define EMON		(1ull << 7)
#define BTS_UNAVAIL	(1ull << 11)
#define MTRRCAP		0xfe
#define MTRR_DEF_TYPE	0x2ff
#define MTRR_FIX64K	0x250
#define MTRR_PHYSBASE0	0x200
#define MTRR_PHYSMASK0	0x201
#define CPUID_FAULT_OFFERED	(1ull << 31)

static void guest_code(void)
{
	__u64 v = rdmsr(MSR_IA32_MISC_ENABLE);
	__u32 eax, ebx, ecx, edx;

	GUEST_ASSERT_EQ(v, FAST_STRINGS);	/* what the VMM wrote */
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_IA32_MISC_ENABLE, v | BTS_UNAVAIL), GP_VECTOR);
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_IA32_MISC_ENABLE, v | EMON), 0);
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_MISC_ENABLE), v);	/* EMON ignores writes */
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_IA32_MISC_ENABLE, v | THERMAL), 0);
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_MISC_ENABLE), v | THERMAL);

	GUEST_ASSERT_EQ(rdmsr(MTRRCAP), 0x508);	/* WC, fixed ranges, 8 variable */
	GUEST_ASSERT_EQ(rdmsr(MTRR_DEF_TYPE), 0xc06);	/* what the VMM wrote */
	GUEST_ASSERT_EQ(wrmsr_safe(MTRR_DEF_TYPE, 0xc02), GP_VECTOR);	/* type 2 is reserved */
	GUEST_ASSERT_EQ(wrmsr_safe(MTRRCAP, 0), GP_VECTOR);	/* read-only */
	GUEST_ASSERT_EQ(wrmsr_safe(MTRR_PHYSMASK0, 0xff000801ull), GP_VECTOR);	/* bits 10:0 */
	GUEST_ASSERT_EQ(wrmsr_safe(MTRR_PHYSMASK0, 0xff000800ull), 0);
	GUEST_ASSERT_EQ(rdmsr(MTRR_PHYSMASK0), 0xff000800ull);
	GUEST_ASSERT_EQ(wrmsr_safe(0x210, 0), GP_VECTOR);	/* no such MTRR */

	GUEST_ASSERT(rdmsr(MSR_PLATFORM_INFO) & CPUID_FAULT_OFFERED);
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_PLATFORM_INFO, 0), GP_VECTOR);	/* the VMM's alone */
	GUEST_ASSERT_EQ(rdmsr(MSR_MISC_FEATURES_ENABLES), 0);
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_MISC_FEATURES_ENABLES, 2), GP_VECTOR);
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_MISC_FEATURES_ENABLES, 1), 0);
	GUEST_ASSERT_EQ(rdmsr(MSR_MISC_FEATURES_ENABLES), 1);
	/* Faulting is for CPL > 0: ring 0's CPUID still answers (leaf 0's vendor). */
	cpuid(0, &eax, &ebx, &ecx, &edx);
	GUEST_ASSERT_EQ(ebx, 0x756e6547);	/* "Genu" */
	wrmsr(MSR_MISC_FEATURES_ENABLES, 0);
	GUEST_DONE();
}

int main(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_code);

	TEST_ASSERT(vcpu_get_msr(vcpu, MSR_IA32_MISC_ENABLE) & BTS_UNAVAIL, "BTS unavailable at reset");
	vcpu_set_msr(vcpu, MSR_IA32_MISC_ENABLE, FAST_STRINGS);
	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MSR_IA32_MISC_ENABLE), FAST_STRINGS);
	pr_info("KVM_SET_MSRS of IA32_MISC_ENABLE = 1 passed\n");

	vcpu_set_msr(vcpu, MTRR_DEF_TYPE, 0xc06);
	vcpu_set_msr(vcpu, MTRR_FIX64K, 0x0606060606060606ull);
	vcpu_set_msr(vcpu, MTRR_PHYSBASE0, 0x80000006ull);
	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MTRR_FIX64K), 0x0606060606060606ull);
	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MTRR_PHYSBASE0), 0x80000006ull);
	TEST_ASSERT_EQ(_vcpu_set_msr(vcpu, MTRR_FIX64K, 0x0606060606060607ull), 0);	/* type 7 */
	TEST_ASSERT_EQ(_vcpu_set_msr(vcpu, MTRR_PHYSBASE0, 0x80000106ull), 0);	/* bits 11:8 */
	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MTRR_PHYSBASE0), 0x80000006ull);
	pr_info("MTRRs through KVM_GET/SET_MSRS passed\n");

	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MSR_PLATFORM_INFO), CPUID_FAULT_OFFERED);
	vcpu_set_msr(vcpu, MSR_PLATFORM_INFO, 0);
	TEST_ASSERT_EQ(_vcpu_set_msr(vcpu, MSR_MISC_FEATURES_ENABLES, 1), 0);	/* not offered */
	vcpu_set_msr(vcpu, MSR_PLATFORM_INFO, CPUID_FAULT_OFFERED);
	vcpu_set_msr(vcpu, MSR_MISC_FEATURES_ENABLES, 1);
	vcpu_set_msr(vcpu, MSR_MISC_FEATURES_ENABLES, 0);
	pr_info("MSR_PLATFORM_INFO and MSR_MISC_FEATURES_ENABLES through KVM_SET_MSRS passed\n");

	nvmx_run_to_stage(vcpu, 0);
	pr_info("the guest's IA32_MISC_ENABLE and MTRR rules passed\n");
	kvm_vm_free(vm);
	return 0;
}
