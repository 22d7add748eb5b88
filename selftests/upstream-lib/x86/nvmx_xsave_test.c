// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_GET/SET_XSAVE and KVM_GET/SET_XCRS, which QEMU uses instead of KVM_GET/SET_FPU: the
 * guest's SSE and x87 state in the standard XSAVE format (legacy region, then the header
 * whose XSTATE_BV says what the buffer holds), Linux's rules for a buffer from userspace
 * (no unknown or supervisor component, the uncompacted format, zero reserved header bytes,
 * no reserved MXCSR bit), and XCR0. Then, where the CPU has AVX, the extended state
 * itself: AVX offered when the host has it, the guest's YMM registers in KVM_GET_XSAVE at
 * CPUID's offset and KVM_SET_XSAVE's reaching the guest, KVM_GET_XSAVE2, the guest's
 * XSETBV kept across exits, and isolation both ways — the VMM's own YMM register, loaded
 * right before KVM_RUN, is neither seen by the guest nor changed by it. Written with the
 * upstream KVM selftest library so that it runs against kvm_intel and nvmx.
 */
#include <sys/syscall.h>
#include "kvm_util.h"
#include "processor.h"
#include "nvmx_stages.h"

#define XMM_OFFSET	160
#define MXCSR_OFFSET	24
#define XSTATE_BV	512
#define XCOMP_BV	520
#define FP		1ull
#define SSE		2ull
#define YMM		4ull
/* Not in the selftest library's processor.h. */
#define X86_FEATURE_AVX		KVM_X86_CPU_FEATURE(0x1, 0, ECX, 28)
#define X86_FEATURE_AVX2	KVM_X86_CPU_FEATURE(0x7, 0, EBX, 5)
#define X86_FEATURE_AVX512F	KVM_X86_CPU_FEATURE(0x7, 0, EBX, 16)

static const __u64 pattern0[2] = { 0x0123456789abcdefull, 0xfedcba9876543210ull };
static const __u64 pattern1[2] = { 0x1111222233334444ull, 0x5555666677778888ull };

static const __u64 guest_ymm[4] = { 0xa0a0a0a0a0a0a0a0ull, 0xa1a1a1a1a1a1a1a1ull,
				     0xa2a2a2a2a2a2a2a2ull, 0xa3a3a3a3a3a3a3a3ull };
static const __u64 guest_ymm_later[4] = { 0xb0, 0xb1, 0xb2, 0xb3 };
static const __u64 host_ymm3[4] = { 0xc0c0, 0xc1c1, 0xc2c2, 0xc3c3 };
static const __u64 vmm_ymm[4] = { 0xd0d0d0d0, 0xd1d1d1d1, 0xd2d2d2d2, 0xd3d3d3d3 };

static void avx_stages(void)
{
	__u64 y[4];
	__u64 xcr0 = xgetbv(0);

	asm volatile("vmovdqu %0, %%ymm2" : : "m"(guest_ymm) : "xmm2");
	GUEST_SYNC(2);
	/* ymm3 from the host's KVM_SET_XSAVE, ymm2 still the guest's own. */
	asm volatile("vmovdqu %%ymm3, %0" : "=m"(y));
	GUEST_ASSERT(!memcmp(y, host_ymm3, sizeof(y)));
	asm volatile("vmovdqu %%ymm2, %0" : "=m"(y));
	GUEST_ASSERT(!memcmp(y, guest_ymm, sizeof(y)));
	GUEST_SYNC(3);
	/* The VMM loaded its own ymm2 right before this KVM_RUN: not what the guest sees. */
	asm volatile("vmovdqu %%ymm2, %0" : "=m"(y));
	GUEST_ASSERT(!memcmp(y, guest_ymm, sizeof(y)));
	asm volatile("vmovdqu %0, %%ymm2" : : "m"(guest_ymm_later) : "xmm2");
	GUEST_SYNC(4);
	/* XSETBV: the guest's XCR0 is its own across exits. */
	xsetbv(0, FP | SSE);
	GUEST_SYNC(5);
	GUEST_ASSERT_EQ(xgetbv(0), FP | SSE);
	GUEST_ASSERT_EQ(xsetbv_safe(0, FP | YMM), GP_VECTOR);
	GUEST_ASSERT_EQ(xsetbv_safe(1, FP), GP_VECTOR);
	xsetbv(0, xcr0);
	GUEST_SYNC(6);
	GUEST_ASSERT_EQ(xgetbv(0), xcr0);
}

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
	if (!this_cpu_has(X86_FEATURE_AVX))
		GUEST_DONE();
	avx_stages();
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

/*
 * KVM_RUN with the VMM's own ymm2 = vmm_ymm, loaded in the same asm block as the system
 * call (nothing compiled in between could touch it); *after is ymm2 on the way back.
 */
static void run_with_vmm_ymm2(struct kvm_vcpu *vcpu, __u64 after[4])
{
	long ret;

	asm volatile("vmovdqu %[in], %%ymm2\n\t"
		     "syscall\n\t"
		     "vmovdqu %%ymm2, %[out]"
		     : "=a"(ret), [out] "=m"(*(__u64 (*)[4])after)
		     : "a"((long)SYS_ioctl), "D"((long)vcpu->fd), "S"((long)KVM_RUN), "d"(0L),
		       [in] "m"(vmm_ymm)
		     : "rcx", "r11", "memory", "xmm2");
	TEST_ASSERT(ret == 0, "KVM_RUN: %ld", ret);
}

static void test_avx(struct kvm_vcpu *vcpu, struct kvm_xsave *x)
{
	/* The offset of the AVX component (upper halves of YMM0-15): CPUID.(0DH,2).EBX. */
	const struct kvm_cpuid_entry2 *avx = get_cpuid_entry(kvm_get_supported_cpuid(), 0xd, 2);
	__u32 ymm = avx->ebx;
	struct kvm_xsave *x2;
	struct kvm_xcrs xcrs;
	struct ucall uc;
	__u64 after[4];
	int size;

	TEST_ASSERT_EQ(avx->eax, 256);
	nvmx_run_to_stage(vcpu, 2);
	vcpu_ioctl(vcpu, KVM_GET_XSAVE, x);
	TEST_ASSERT(u64_at(x, XSTATE_BV) & YMM, "XSTATE_BV %#llx has AVX", u64_at(x, XSTATE_BV));
	TEST_ASSERT_EQ(u64_at(x, XMM_OFFSET + 32), guest_ymm[0]);
	TEST_ASSERT_EQ(u64_at(x, ymm + 32), guest_ymm[2]);
	TEST_ASSERT_EQ(u64_at(x, ymm + 40), guest_ymm[3]);
	size = kvm_check_cap(KVM_CAP_XSAVE2);
	TEST_ASSERT(size >= (int)sizeof(*x), "KVM_CAP_XSAVE2 %d", size);
	x2 = malloc(size);
	memset(x2, 0x55, size);
	vcpu_ioctl(vcpu, KVM_GET_XSAVE2, x2);
	TEST_ASSERT(!memcmp(x, x2, sizeof(*x)), "KVM_GET_XSAVE2 = KVM_GET_XSAVE");
	free(x2);
	memcpy((char *)x->region + XMM_OFFSET + 48, host_ymm3, 16);
	memcpy((char *)x->region + ymm + 48, host_ymm3 + 2, 16);
	vcpu_ioctl(vcpu, KVM_SET_XSAVE, x);
	pr_info("AVX state in KVM_GET/SET_XSAVE passed\n");

	nvmx_run_to_stage(vcpu, 3);
	run_with_vmm_ymm2(vcpu, after);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	TEST_ASSERT(get_ucall(vcpu, &uc) == UCALL_SYNC && uc.args[1] == 4, "stage 4 (cmd %lu)", uc.cmd);
	TEST_ASSERT(!memcmp(after, vmm_ymm, sizeof(after)),
		    "the VMM's ymm2 kept (%#llx %#llx %#llx %#llx)", after[0], after[1], after[2], after[3]);
	vcpu_ioctl(vcpu, KVM_GET_XSAVE, x);
	TEST_ASSERT_EQ(u64_at(x, ymm + 32), guest_ymm_later[2]);
	pr_info("guest and VMM YMM registers kept apart passed\n");

	nvmx_run_to_stage(vcpu, 5);
	vcpu_ioctl(vcpu, KVM_GET_XCRS, &xcrs);
	TEST_ASSERT_EQ(xcrs.xcrs[0].value, FP | SSE);
	nvmx_run_to_stage(vcpu, 6);
	vcpu_ioctl(vcpu, KVM_GET_XCRS, &xcrs);
	TEST_ASSERT_EQ(xcrs.xcrs[0].value, kvm_cpu_supported_xcr0());
	pr_info("guest XSETBV passed\n");
}

int main(void)
{
	struct kvm_xsave *x = malloc(sizeof(*x));
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_code);

	/* XSAVE and AVX are offered where the CPU has them (every Linux guest uses them). */
	TEST_ASSERT(this_cpu_has(X86_FEATURE_XSAVE) == kvm_cpu_has(X86_FEATURE_XSAVE), "XSAVE offered");
	TEST_ASSERT(this_cpu_has(X86_FEATURE_AVX) == kvm_cpu_has(X86_FEATURE_AVX), "AVX offered");
	TEST_ASSERT(!this_cpu_has(X86_FEATURE_AVX2) || kvm_cpu_has(X86_FEATURE_AVX2), "AVX2 offered");
	TEST_ASSERT(!this_cpu_has(X86_FEATURE_AVX512F) || kvm_cpu_has(X86_FEATURE_AVX512F), "AVX-512 offered");

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

	if (kvm_cpu_has(X86_FEATURE_AVX))
		test_avx(vcpu, x);
	nvmx_run_to_stage(vcpu, 0);
	pr_info("KVM_SET_XSAVE reached the guest\n");
	free(x);
	kvm_vm_free(vm);
	return 0;
}
