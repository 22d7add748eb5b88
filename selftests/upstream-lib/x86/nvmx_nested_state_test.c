// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_GET/SET_NESTED_STATE while L2 runs, written with the upstream KVM selftest library so
 * that it runs unchanged against kvm_intel and nvmx:
 *
 *  1. The saved state of an L2 that runs: VMXON and current-VMCS pointers, guest mode, the
 *     VMCS12 in KVM's layout (revision 0x11e57ed0 as IA32_VMX_BASIC says) holding L2's
 *     current RIP, and a size KVM_CAP_NESTED_STATE allows; a smaller buffer is E2BIG with
 *     the size written back.
 *  2. Bad states are EINVAL: a wrong VMCS12 revision, a guest-mode VMCS12 whose guest
 *     state fails the VM-entry checks (CR0.PE clear with PG set), its host state failing
 *     them (HOST_CR4 without VMXE), a guest-mode VMCS12 with VMCS shadowing and no shadow
 *     VMCS12. (KVM may have left its nested state by then, nvmx changes nothing; either
 *     way the good state, set again, is what GET reads back.)
 *  3. The state restored into a fresh VM: L2 carries on where it was (its own counter
 *     intact), exits to L1 with VMCALL, and L1 resumes it for one more round.
 */
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "nvmx_stages.h"

#define VMCS12_REVISION_KVM	0x11e57ed0
/* struct vmcs12 offsets (KVM's vmcs12.h CHECK_OFFSETs). */
#define VMCS12_LINK_POINTER	176
#define VMCS12_GUEST_CR0	424
#define VMCS12_GUEST_RIP	544
#define VMCS12_HOST_CR4		600
#define VMCS12_PRIMARY		748
#define VMCS12_SECONDARY	804

static u64 l2_rounds;

static void l2_guest_code(void)
{
	for (;;) {
		l2_rounds++;
		GUEST_SYNC(2);
		vmcall();
	}
}

static void l1_guest_code(struct vmx_pages *vmx)
{
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_guest_code);
	GUEST_SYNC(1);
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_SYNC(3);
	vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_DONE();
}

static struct kvm_nested_state *get_state(struct kvm_vcpu *vcpu, int size)
{
	struct kvm_nested_state *s = calloc(1, size);

	s->size = size;
	vcpu_nested_state_get(vcpu, s);
	return s;
}

static void put_u64(void *vmcs12, int off, u64 v)
{
	memcpy((char *)vmcs12 + off, &v, 8);
}

static u64 get_u64(void *vmcs12, int off)
{
	u64 v;

	memcpy(&v, (char *)vmcs12 + off, 8);
	return v;
}

static void expect_einval(struct kvm_vcpu *vcpu, struct kvm_nested_state *good,
			  struct kvm_nested_state *bad, int size, const char *what)
{
	struct kvm_nested_state *after;

	TEST_ASSERT(__vcpu_nested_state_set(vcpu, bad) == -1 && errno == EINVAL, "%s: EINVAL", what);
	vcpu_nested_state_set(vcpu, good);
	after = get_state(vcpu, size);
	TEST_ASSERT(after->size == good->size && after->flags == good->flags &&
		    after->hdr.vmx.vmxon_pa == good->hdr.vmx.vmxon_pa &&
		    after->hdr.vmx.vmcs12_pa == good->hdr.vmx.vmcs12_pa &&
		    get_u64(after->data.vmx->vmcs12, VMCS12_GUEST_RIP) == get_u64(good->data.vmx->vmcs12, VMCS12_GUEST_RIP),
		    "%s: the good state back", what);
	free(after);
}

int main(void)
{
	struct kvm_nested_state *s, *bad, tiny = { .size = sizeof(tiny) };
	struct kvm_x86_state *state;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	gva_t vmx_gva;
	int max, stage;
	u64 rounds;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));
	max = kvm_check_cap(KVM_CAP_NESTED_STATE);
	vm = vm_create_with_one_vcpu(&vcpu, l1_guest_code);
	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);

	nvmx_run_to_stage(vcpu, 1);
	nvmx_run_to_stage(vcpu, 2);

	/* 1. What is saved while L2 runs. */
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_GET_NESTED_STATE, &tiny) == -1 && errno == E2BIG, "E2BIG");
	TEST_ASSERT(tiny.size > sizeof(tiny) && (int)tiny.size <= max, "size %u written back", tiny.size);
	s = get_state(vcpu, max);
	TEST_ASSERT(s->flags & KVM_STATE_NESTED_GUEST_MODE, "guest mode");
	TEST_ASSERT(s->hdr.vmx.vmxon_pa != -1ull && s->hdr.vmx.vmcs12_pa != -1ull, "pointers");
	TEST_ASSERT_EQ(s->size, sizeof(*s) + KVM_STATE_NESTED_VMX_VMCS_SIZE);
	TEST_ASSERT_EQ(*(u32 *)s->data.vmx->vmcs12 & 0x7fffffff, (u32)kvm_get_feature_msr(MSR_IA32_VMX_BASIC) & 0x7fffffff);
	TEST_ASSERT_EQ((u32)kvm_get_feature_msr(MSR_IA32_VMX_BASIC) & 0x7fffffff, VMCS12_REVISION_KVM);
	TEST_ASSERT(get_u64(s->data.vmx->vmcs12, VMCS12_GUEST_RIP) > (u64)l2_guest_code,
		    "L2's RIP %#lx in VMCS12", get_u64(s->data.vmx->vmcs12, VMCS12_GUEST_RIP));
	pr_info("state saved while L2 runs passed\n");

	/* 2. Refusals that change nothing. */
	bad = malloc(max);
	memcpy(bad, s, s->size);
	*(u32 *)bad->data.vmx->vmcs12 = 0x12345678;
	expect_einval(vcpu, s, bad, max, "VMCS12 revision");
	memcpy(bad, s, s->size);
	put_u64(bad->data.vmx->vmcs12, VMCS12_GUEST_CR0, get_u64(s->data.vmx->vmcs12, VMCS12_GUEST_CR0) & ~1ull);
	expect_einval(vcpu, s, bad, max, "guest CR0.PE clear with PG");
	memcpy(bad, s, s->size);
	put_u64(bad->data.vmx->vmcs12, VMCS12_HOST_CR4, get_u64(s->data.vmx->vmcs12, VMCS12_HOST_CR4) & ~X86_CR4_VMXE);
	expect_einval(vcpu, s, bad, max, "HOST_CR4 without VMXE");
	memcpy(bad, s, s->size);
	{
		u32 prim, sec;

		memcpy(&prim, (char *)bad->data.vmx->vmcs12 + VMCS12_PRIMARY, 4);
		memcpy(&sec, (char *)bad->data.vmx->vmcs12 + VMCS12_SECONDARY, 4);
		prim |= CPU_BASED_ACTIVATE_SECONDARY_CONTROLS;
		sec |= SECONDARY_EXEC_SHADOW_VMCS;
		memcpy((char *)bad->data.vmx->vmcs12 + VMCS12_PRIMARY, &prim, 4);
		memcpy((char *)bad->data.vmx->vmcs12 + VMCS12_SECONDARY, &sec, 4);
		put_u64(bad->data.vmx->vmcs12, VMCS12_LINK_POINTER, s->hdr.vmx.vmcs12_pa + 0x1000);
	}
	expect_einval(vcpu, s, bad, max, "VMCS shadowing without a shadow VMCS12");
	pr_info("bad states refused passed\n");

	/* 3. Into a fresh VM: L2 carries on, then L1. */
	sync_global_from_guest(vm, l2_rounds);
	rounds = l2_rounds;
	TEST_ASSERT_EQ(rounds, 1);
	state = vcpu_save_state(vcpu);
	kvm_vm_release(vm);
	vcpu = vm_recreate_with_one_vcpu(vm);
	vcpu_load_state(vcpu, state);
	kvm_x86_state_cleanup(state);
	sync_global_from_guest(vm, l2_rounds);
	TEST_ASSERT_EQ(l2_rounds, rounds);
	nvmx_run_to_stage(vcpu, 3);
	nvmx_run_to_stage(vcpu, 2);
	sync_global_from_guest(vm, l2_rounds);
	TEST_ASSERT_EQ(l2_rounds, rounds + 1);
	stage = nvmx_next_stage(vcpu);
	TEST_ASSERT_EQ(stage, 0);
	pr_info("restored into a fresh VM, L2 and L1 carried on passed\n");

	free(bad);
	free(s);
	kvm_vm_free(vm);
	return 0;
}
