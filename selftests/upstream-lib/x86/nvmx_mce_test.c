// SPDX-License-Identifier: GPL-2.0-only
/*
 * The machine-check ioctls a VMM uses to pass a host memory error on to its guest (QEMU
 * requires KVM_CAP_MCE and sets the banks up when the guest CPU has MCE/MCA):
 * KVM_X86_GET_MCE_CAP_SUPPORTED, KVM_X86_SETUP_MCE, KVM_X86_SET_MCE, and the machine-check
 * MSRs, with KVM's rules — an uncorrected error is a #MC in the guest, a corrected one is
 * only logged, one while a machine check is in progress shuts the guest down. Written with
 * the upstream KVM selftest library so that it runs against kvm_intel and nvmx.
 */
#include "kvm_util.h"
#include "processor.h"
#include "nvmx_stages.h"

#define MCG_CTL_P	(1ull << 8)
#define MCG_SER_P	(1ull << 24)
#define MCG_STATUS_RIPV	(1ull << 0)
#define MCG_STATUS_MCIP	(1ull << 2)
#define VAL		(1ull << 63)
#define UC		(1ull << 61)
#define EN		(1ull << 60)
#define PCC		(1ull << 57)
#define S		(1ull << 56)
#define BANKS		10

static const __u64 uc_status = VAL | UC | EN | PCC | S | 0x17;
static const __u64 ce_status = VAL | EN | 0x5;
static volatile int mc_count;
static volatile __u64 mc_bank_status, mc_mcg_status;

static void mc_handler(struct ex_regs *regs)
{
	mc_count++;
	mc_bank_status = rdmsr(MSR_IA32_MCx_STATUS(1));
	mc_mcg_status = rdmsr(MSR_IA32_MCG_STATUS);
	wrmsr(MSR_IA32_MCG_STATUS, 0);	/* the machine check is handled */
}

static void guest_code(void)
{
	set_cr4(get_cr4() | X86_CR4_MCE);
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_MCG_CAP) & 0xff, BANKS);
	GUEST_SYNC(1);
	/* The host injected an uncorrected error into bank 1. */
	GUEST_ASSERT_EQ(mc_count, 1);
	GUEST_ASSERT_EQ(mc_bank_status, uc_status);
	GUEST_ASSERT_EQ(mc_mcg_status, MCG_STATUS_RIPV | MCG_STATUS_MCIP);
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_IA32_MCx_STATUS(1), 5), GP_VECTOR);	/* clear only */
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_IA32_MCx_STATUS(1), 0), 0);
	GUEST_ASSERT_EQ(wrmsr_safe(MSR_IA32_MCx_CTL(BANKS), 0), GP_VECTOR);	/* no such bank */
	GUEST_SYNC(2);
	/* ... and a corrected error into bank 2: logged, no #MC. */
	GUEST_ASSERT_EQ(mc_count, 1);
	GUEST_ASSERT_EQ(rdmsr(MSR_IA32_MCx_STATUS(2)), ce_status);
	GUEST_SYNC(3);
	for (;;)
		this_cpu_has(X86_FEATURE_MCE);	/* the host shuts us down */
}

static int setup_mce(struct kvm_vcpu *vcpu, __u64 cap)
{
	return __vcpu_ioctl(vcpu, KVM_X86_SETUP_MCE, &cap) ? errno : 0;
}

static int set_mce(struct kvm_vcpu *vcpu, __u64 status, __u64 mcg_status, __u8 bank)
{
	struct kvm_x86_mce m = { .status = status, .addr = 0x1000, .misc = 0x86, .mcg_status = mcg_status, .bank = bank };

	return __vcpu_ioctl(vcpu, KVM_X86_SET_MCE, &m) ? errno : 0;
}

int main(void)
{
	int kvm = open_kvm_dev_path_or_exit();
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	__u64 supported;

	TEST_ASSERT(kvm_check_cap(KVM_CAP_MCE) >= BANKS, "KVM_CAP_MCE: %d banks", kvm_check_cap(KVM_CAP_MCE));
	TEST_ASSERT(!ioctl(kvm, KVM_X86_GET_MCE_CAP_SUPPORTED, &supported), "KVM_X86_GET_MCE_CAP_SUPPORTED");
	TEST_ASSERT((supported & (MCG_CTL_P | MCG_SER_P)) == (MCG_CTL_P | MCG_SER_P), "supported %#llx", supported);
	close(kvm);

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	vm_install_exception_handler(vm, MC_VECTOR, mc_handler);
	/* A new vCPU has KVM_MAX_MCE_BANKS banks, reporting off. */
	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MSR_IA32_MCG_CAP), kvm_check_cap(KVM_CAP_MCE));

	TEST_ASSERT_EQ(setup_mce(vcpu, MCG_CTL_P), EINVAL);		/* no bank */
	TEST_ASSERT_EQ(setup_mce(vcpu, MCG_CTL_P | 33), EINVAL);	/* too many */
	TEST_ASSERT_EQ(setup_mce(vcpu, (1ull << 9) | BANKS), EINVAL);	/* MCG_EXT_P: not offered */
	TEST_ASSERT_EQ(setup_mce(vcpu, MCG_CTL_P | MCG_SER_P | BANKS), 0);
	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MSR_IA32_MCG_CAP), MCG_CTL_P | MCG_SER_P | BANKS);
	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MSR_IA32_MCG_CTL), ~0ull);
	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MSR_IA32_MCx_CTL(BANKS - 1)), ~0ull);
	pr_info("KVM_X86_SETUP_MCE passed\n");

	nvmx_run_to_stage(vcpu, 1);
	TEST_ASSERT_EQ(set_mce(vcpu, uc_status, MCG_STATUS_RIPV | MCG_STATUS_MCIP, BANKS), EINVAL);
	TEST_ASSERT_EQ(set_mce(vcpu, uc_status & ~VAL, MCG_STATUS_RIPV | MCG_STATUS_MCIP, 1), EINVAL);
	TEST_ASSERT_EQ(set_mce(vcpu, uc_status, MCG_STATUS_RIPV | MCG_STATUS_MCIP, 1), 0);
	nvmx_run_to_stage(vcpu, 2);
	pr_info("an uncorrected error is a #MC passed\n");

	TEST_ASSERT_EQ(set_mce(vcpu, ce_status, 0, 2), 0);
	nvmx_run_to_stage(vcpu, 3);
	TEST_ASSERT_EQ(vcpu_get_msr(vcpu, MSR_IA32_MCx_STATUS(2)), ce_status);
	pr_info("a corrected error is logged passed\n");

	/* A machine check in progress (MCIP) and another uncorrected error: shutdown. */
	vcpu_set_msr(vcpu, MSR_IA32_MCG_STATUS, MCG_STATUS_MCIP);
	TEST_ASSERT_EQ(set_mce(vcpu, uc_status, MCG_STATUS_RIPV | MCG_STATUS_MCIP, 1), 0);
	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_SHUTDOWN);
	pr_info("a machine check during one shuts down passed\n");
	kvm_vm_free(vm);
	return 0;
}
