// SPDX-License-Identifier: GPL-2.0-only
/*
 * The VM ioctls a VMM such as QEMU issues before its first KVM_RUN, with KVM's semantics and
 * errnos: KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR, KVM_GET_CLOCK/KVM_SET_CLOCK, and the
 * capabilities QEMU requires. Written with the upstream KVM selftest library so that it
 * runs against kvm_intel and nvmx.
 */
#include <time.h>

#include "kvm_util.h"
#include "processor.h"

static void guest_code(void)
{
	GUEST_DONE();
}

static __u64 realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

static void get_clock(struct kvm_vm *vm, struct kvm_clock_data *d)
{
	memset(d, 0xaa, sizeof(*d));
	vm_ioctl(vm, KVM_GET_CLOCK, d);
}

static void test_capabilities(void)
{
	/* kvm-all.c's and target/i386/kvm/kvm.c's required capabilities that nvmx offers. */
	static const struct { long cap; const char *name; } caps[] = {
		{ KVM_CAP_DESTROY_MEMORY_REGION_WORKS, "DESTROY_MEMORY_REGION_WORKS" },
		{ KVM_CAP_JOIN_MEMORY_REGIONS_WORKS, "JOIN_MEMORY_REGIONS_WORKS" },
		{ KVM_CAP_INTERNAL_ERROR_DATA, "INTERNAL_ERROR_DATA" },
		{ KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR" },
		{ KVM_CAP_SET_IDENTITY_MAP_ADDR, "SET_IDENTITY_MAP_ADDR" },
		{ KVM_CAP_ADJUST_CLOCK, "ADJUST_CLOCK" },
		{ KVM_CAP_VCPU_EVENTS, "VCPU_EVENTS" },
		{ KVM_CAP_XSAVE, "XSAVE" },
		{ KVM_CAP_XCRS, "XCRS" },
		{ KVM_CAP_IRQCHIP, "IRQCHIP" },
		{ KVM_CAP_SPLIT_IRQCHIP, "SPLIT_IRQCHIP" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(caps); i++)
		TEST_ASSERT(kvm_check_cap(caps[i].cap) > 0, "KVM_CAP_%s is offered", caps[i].name);
	/* What KVM_GET_CLOCK can return, never more than KVM_SET_CLOCK accepts. */
	TEST_ASSERT(!(kvm_check_cap(KVM_CAP_ADJUST_CLOCK) &
		      ~(KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC)),
		    "KVM_CAP_ADJUST_CLOCK: known flags only");
}

static void test_tss_and_identity_map(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_barebones();
	__u64 addr = 0xfffbc000;


	/* The three TSS pages must lie below 4 GiB: up to 0xfffd0000 (KVM's -3 * PAGE_SIZE). */
	TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_SET_TSS_ADDR, (void *)0xfffbd000ul), 0);
	TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_SET_TSS_ADDR, (void *)0xffffd000ul), 0);
	TEST_ASSERT(__vm_ioctl(vm, KVM_SET_TSS_ADDR, (void *)0xffffe000ul) == -1 && errno == EINVAL,
		    "KVM_SET_TSS_ADDR beyond 4 GiB - 3 pages: EINVAL");
	TEST_ASSERT(__vm_ioctl(vm, KVM_SET_TSS_ADDR, (void *)(1ul << 32)) == -1 && errno == EINVAL,
		    "KVM_SET_TSS_ADDR at 4 GiB: EINVAL");

	TEST_ASSERT_EQ(__vm_ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &addr), 0);
	TEST_ASSERT(__vm_ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, (__u64 *)8) == -1 && errno == EFAULT,
		    "KVM_SET_IDENTITY_MAP_ADDR from a bad pointer: EFAULT");
	vcpu = __vm_vcpu_add(vm, 0);
	TEST_ASSERT(vcpu, "a vCPU");
	TEST_ASSERT(__vm_ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &addr) == -1 && errno == EINVAL,
		    "KVM_SET_IDENTITY_MAP_ADDR after KVM_CREATE_VCPU: EINVAL");
	kvm_vm_free(vm);
}

static void test_clock(void)
{
	struct kvm_clock_data d, e;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	__u64 before, set_at = 1ull << 40;

	/* A new VM's clock starts near 0 and counts up in nanoseconds. */
	get_clock(vm, &d);
	TEST_ASSERT(d.clock < 60 * NSEC_PER_SEC, "a new VM's clock is young: %llu", d.clock);
	TEST_ASSERT(!(d.flags & ~kvm_check_cap(KVM_CAP_ADJUST_CLOCK)), "flags %#x are offered", d.flags);
	TEST_ASSERT(!d.pad0 && !d.pad[0] && !d.pad[1] && !d.pad[2] && !d.pad[3], "padding zeroed");
	if (d.flags & KVM_CLOCK_REALTIME) {
		__u64 now = realtime_ns();

		TEST_ASSERT(d.realtime <= now && now - d.realtime < 60 * NSEC_PER_SEC,
			    "realtime %llu is the host's (%llu)", d.realtime, now);
	}
	before = d.clock;
	usleep(20000);
	get_clock(vm, &e);
	TEST_ASSERT(e.clock >= before + 20 * 1000000ull, "20 ms later: %llu -> %llu", before, e.clock);

	/* KVM_SET_CLOCK moves it; it counts on from there. */
	memset(&d, 0, sizeof(d));
	d.clock = set_at;
	vm_ioctl(vm, KVM_SET_CLOCK, &d);
	get_clock(vm, &e);
	TEST_ASSERT(e.clock >= set_at && e.clock - set_at < NSEC_PER_SEC, "set to 2^40: %llu", e.clock);

	/* With KVM_CLOCK_REALTIME, the real time since `realtime` is added. */
	memset(&d, 0, sizeof(d));
	d.clock = set_at;
	d.flags = KVM_CLOCK_REALTIME;
	d.realtime = realtime_ns() - 5 * NSEC_PER_SEC;
	vm_ioctl(vm, KVM_SET_CLOCK, &d);
	get_clock(vm, &e);
	TEST_ASSERT(e.clock >= set_at + 5 * NSEC_PER_SEC && e.clock < set_at + 6 * NSEC_PER_SEC,
		    "5 s of real time added: %llu", e.clock - set_at);

	/* What KVM_GET_CLOCK returned goes back as it is; unknown flags are EINVAL. */
	get_clock(vm, &d);
	vm_ioctl(vm, KVM_SET_CLOCK, &d);
	d.flags = 1;
	TEST_ASSERT(__vm_ioctl(vm, KVM_SET_CLOCK, &d) == -1 && errno == EINVAL, "flag 1: EINVAL");
	d.flags = 1u << 4;
	TEST_ASSERT(__vm_ioctl(vm, KVM_SET_CLOCK, &d) == -1 && errno == EINVAL, "flag 16: EINVAL");
	TEST_ASSERT(__vm_ioctl(vm, KVM_GET_CLOCK, (struct kvm_clock_data *)8) == -1 && errno == EFAULT, "GET: EFAULT");
	TEST_ASSERT(__vm_ioctl(vm, KVM_SET_CLOCK, (struct kvm_clock_data *)8) == -1 && errno == EFAULT, "SET: EFAULT");
	kvm_vm_free(vm);
}

int main(void)
{
	test_capabilities();
	pr_info("capabilities passed\n");
	test_tss_and_identity_map();
	pr_info("KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR passed\n");
	test_clock();
	pr_info("KVM_GET_CLOCK, KVM_SET_CLOCK passed\n");
	return 0;
}
