// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_GET/SET_XSAVE and KVM_GET/SET_XCRS, which QEMU uses instead of KVM_GET/SET_FPU: the
 * guest's SSE and x87 state in the standard XSAVE format (legacy region, then the header
 * whose XSTATE_BV says what the buffer holds), Linux's rules for a buffer from userspace
 * (no unknown or supervisor component, the uncompacted format, zero reserved header bytes,
 * no reserved MXCSR bit), and XCR0. Written with the upstream KVM selftest library so that
 * it runs against kvm_intel and nvmx.
 */
#include "kvm_util.h"
#include "processor.h"
#include "nvmx_stages.h"

#define XMM_OFFSET	160
#define MXCSR_OFFSET	24
#define XSTATE_BV	512
#define XCOMP_BV	520
#define FP		1ull
#define SSE		2ull

static const __u64 pattern0[2] = { 0x0123456789abcdefull, 0xfedcba9876543210ull };
static const __u64 pattern1[2] = { 0x1111222233334444ull, 0x5555666677778888ull };

static void guest_code(void)
{
	__u64 x[2];

	asm volatile("movdqu %0, %%xmm0" : : "m"(pattern0) : "xmm0");
	GUEST_SYNC(1);
	/* The host wrote xmm1 with KVM_SET_XSAVE. */
	asm volatile("movdqu %%xmm1, %0" : "=m"(x));
	GUEST_ASSERT_EQ(x[0], pattern1[0]);
	GUEST_ASSERT_EQ(x[1], pattern1[1]);
	/* ... and left xmm0 as the guest had it. */
	asm volatile("movdqu %%xmm0, %0" : "=m"(x));
	GUEST_ASSERT_EQ(x[0], pattern0[0]);
	GUEST_DONE();
}

static __u64 u64_at(struct kvm_xsave *x, int off)
{
	__u64 v;

	memcpy(&v, (char *)x->region + off, 8);
	return v;
}

static void put_u64(struct kvm_xsave *x, int off, __u64 v)
{
	memcpy((char *)x->region + off, &v, 8);
}

static void expect_einval(struct kvm_vcpu *vcpu, struct kvm_xsave *good, int off, __u64 v, const char *what)
{
	struct kvm_xsave *bad = malloc(sizeof(*bad));

	memcpy(bad, good, sizeof(*bad));
	put_u64(bad, off, v);
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_SET_XSAVE, bad) == -1 && errno == EINVAL, "%s: EINVAL", what);
	free(bad);
}

static void test_xcrs(struct kvm_vcpu *vcpu)
{
	struct kvm_xcrs x;

	memset(&x, 0xaa, sizeof(x));
	vcpu_ioctl(vcpu, KVM_GET_XCRS, &x);
	TEST_ASSERT(x.nr_xcrs >= 1 && x.xcrs[0].xcr == 0, "XCR0 reported (%u XCRs)", x.nr_xcrs);
	/*
	 * The library sets XCR0 to everything KVM supports when the guest has XSAVE; without
	 * XSAVE (nvmx offers none) XCR0 keeps its reset value, x87 only.
	 */
	TEST_ASSERT_EQ(x.xcrs[0].value, kvm_cpu_has(X86_FEATURE_XSAVE) ? kvm_cpu_supported_xcr0() : FP);
	TEST_ASSERT_EQ(x.flags, 0);

	vcpu_ioctl(vcpu, KVM_SET_XCRS, &x);
	x.xcrs[0].value = 0;
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_SET_XCRS, &x) == -1 && errno == EINVAL, "XCR0 without x87: EINVAL");
	x.xcrs[0].value = FP | (1ull << 63);
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_SET_XCRS, &x) == -1 && errno == EINVAL, "XCR0 bit 63: EINVAL");
	x.xcrs[0].value = FP;
	x.flags = 1;
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_SET_XCRS, &x) == -1 && errno == EINVAL, "flags: EINVAL");
	x.flags = 0;
	x.nr_xcrs = KVM_MAX_XCRS + 1;
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_SET_XCRS, &x) == -1 && errno == EINVAL, "17 XCRs: EINVAL");
}

int main(void)
{
	struct kvm_xsave *x = malloc(sizeof(*x));
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_code);

	nvmx_run_to_stage(vcpu, 1);

	memset(x, 0xaa, sizeof(*x));
	vcpu_ioctl(vcpu, KVM_GET_XSAVE, x);
	TEST_ASSERT(u64_at(x, XSTATE_BV) & SSE, "XSTATE_BV %#llx has SSE", u64_at(x, XSTATE_BV));
	TEST_ASSERT_EQ(u64_at(x, XCOMP_BV), 0);
	TEST_ASSERT_EQ(u64_at(x, XMM_OFFSET), pattern0[0]);
	TEST_ASSERT_EQ(u64_at(x, XMM_OFFSET + 8), pattern0[1]);
	pr_info("KVM_GET_XSAVE passed\n");

	expect_einval(vcpu, x, XSTATE_BV, u64_at(x, XSTATE_BV) | (1ull << 63), "unknown component 63");
	expect_einval(vcpu, x, XSTATE_BV, u64_at(x, XSTATE_BV) | (1ull << 8), "supervisor component (PT)");
	expect_einval(vcpu, x, XCOMP_BV, 1ull << 63, "compacted format");
	expect_einval(vcpu, x, XSTATE_BV + 56, 1, "reserved header byte");
	expect_einval(vcpu, x, MXCSR_OFFSET, (u64_at(x, MXCSR_OFFSET) & ~0xffffffffull) | 0x1f80 | (1u << 31),
		      "MXCSR bit 31");
	pr_info("KVM_SET_XSAVE refusals passed\n");

	memcpy((char *)x->region + XMM_OFFSET + 16, pattern1, 16);
	vcpu_ioctl(vcpu, KVM_SET_XSAVE, x);
	test_xcrs(vcpu);
	pr_info("KVM_GET/SET_XCRS passed\n");

	nvmx_run_to_stage(vcpu, 0);
	pr_info("KVM_SET_XSAVE reached the guest\n");
	free(x);
	kvm_vm_free(vm);
	return 0;
}
