// SPDX-License-Identifier: GPL-2.0-only
/*
 * KVM_CAP_EXCEPTION_PAYLOAD outside guest mode: with the capability on, KVM_SET_VCPU_EVENTS
 * takes an exception as pending (not yet delivered) with a payload — a #PF's faulting
 * address, a #DB's DR6 bits — and KVM_GET_VCPU_EVENTS gives it back as pending, payload
 * included, while CR2 and DR6 stay as they are until the exception is delivered at the next
 * KVM_RUN; the guest then sees the payload in CR2/DR6, and the error code truncated to bits
 * 15:0 (as VMX delivers it). Without the capability VALID_PAYLOAD is EINVAL. Written with
 * the upstream KVM selftest library so that it runs against kvm_intel and nvmx.
 */
#include "kvm_util.h"
#include "processor.h"
#include "nvmx_stages.h"

#define PF_ADDR		0xdead0000ull
#define PF_CODE		0xabcd0002u
/* Pending-debug-exceptions format: B1 and BS. */
#define DB_PAYLOAD	((1ull << 1) | (1ull << 14))

static volatile int pf_count, db_count;
static volatile __u64 pf_cr2, pf_code, db_dr6;

static void pf_handler(struct ex_regs *regs)
{
	pf_count++;
	pf_cr2 = get_cr2();
	pf_code = regs->error_code;
}

static void db_handler(struct ex_regs *regs)
{
	__u64 dr6;

	asm volatile("mov %%dr6, %0" : "=r"(dr6));
	db_dr6 = dr6;
	db_count++;
}

static void guest_code(void)
{
	GUEST_SYNC(1);
	GUEST_ASSERT_EQ(pf_count, 1);
	GUEST_ASSERT_EQ(pf_cr2, PF_ADDR);
	GUEST_ASSERT_EQ(pf_code, PF_CODE & 0xffff);
	GUEST_SYNC(2);
	GUEST_ASSERT_EQ(db_count, 1);
	GUEST_ASSERT_EQ(db_dr6, 0xffff0ff0ull | DB_PAYLOAD);
	GUEST_DONE();
}

static void queue_pending(struct kvm_vcpu *vcpu, __u8 vector, int has_code, __u32 code, __u64 payload)
{
	struct kvm_vcpu_events e;

	vcpu_events_get(vcpu, &e);
	TEST_ASSERT(e.flags & KVM_VCPUEVENT_VALID_PAYLOAD, "VALID_PAYLOAD reported with the capability on");
	e.flags = KVM_VCPUEVENT_VALID_PAYLOAD;
	e.exception.pending = 1;
	e.exception.injected = 0;
	e.exception.nr = vector;
	e.exception.has_error_code = has_code;
	e.exception.error_code = code;
	e.exception_has_payload = 1;
	e.exception_payload = payload;
	vcpu_events_set(vcpu, &e);

	memset(&e, 0, sizeof(e));
	vcpu_events_get(vcpu, &e);
	TEST_ASSERT(e.exception.pending && !e.exception.injected, "pending, not injected");
	TEST_ASSERT_EQ(e.exception.nr, vector);
	TEST_ASSERT_EQ(e.exception_has_payload, 1);
	TEST_ASSERT_EQ(e.exception_payload, payload);
}

int main(void)
{
	struct kvm_vcpu_events e;
	struct kvm_sregs sregs;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_EXCEPTION_PAYLOAD));
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	vm_install_exception_handler(vm, PF_VECTOR, pf_handler);
	vm_install_exception_handler(vm, DB_VECTOR, db_handler);

	/* Off by default: a payload is refused. */
	vcpu_events_get(vcpu, &e);
	TEST_ASSERT(!(e.flags & KVM_VCPUEVENT_VALID_PAYLOAD), "VALID_PAYLOAD only with the capability");
	e.flags = KVM_VCPUEVENT_VALID_PAYLOAD;
	TEST_ASSERT(__vcpu_ioctl(vcpu, KVM_SET_VCPU_EVENTS, &e) == -1 && errno == EINVAL,
		    "VALID_PAYLOAD without the capability: EINVAL");
	vm_enable_cap(vm, KVM_CAP_EXCEPTION_PAYLOAD, 1);

	nvmx_run_to_stage(vcpu, 1);
	queue_pending(vcpu, PF_VECTOR, 1, PF_CODE, PF_ADDR);
	vcpu_sregs_get(vcpu, &sregs);
	TEST_ASSERT(sregs.cr2 != PF_ADDR, "CR2 %#llx: the payload waits for delivery", sregs.cr2);
	pr_info("pending #PF with its payload passed\n");

	nvmx_run_to_stage(vcpu, 2);
	vcpu_events_get(vcpu, &e);
	TEST_ASSERT(!e.exception.pending && !e.exception.injected, "delivered");
	vcpu_sregs_get(vcpu, &sregs);
	TEST_ASSERT_EQ(sregs.cr2, PF_ADDR);
	queue_pending(vcpu, DB_VECTOR, 0, 0, DB_PAYLOAD);
	pr_info("delivered #PF passed\n");

	nvmx_run_to_stage(vcpu, 0);
	pr_info("pending #DB with its payload passed\n");
	kvm_vm_free(vm);
	return 0;
}
