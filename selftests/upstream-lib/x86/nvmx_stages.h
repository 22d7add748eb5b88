/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The host side of nvmx's library-based tests: run the vCPU through its guest's
 * GUEST_SYNC(1), GUEST_SYNC(2), ... stages, in order, printing each.
 */
#ifndef NVMX_STAGES_H
#define NVMX_STAGES_H

#include "kvm_util.h"
#include "ucall_common.h"

/* Run to the guest's next ucall: the stage of a GUEST_SYNC, 0 for GUEST_DONE; a guest
 * assert fails the test. */
static inline int nvmx_next_stage(struct kvm_vcpu *vcpu)
{
	struct ucall uc;

	vcpu_run(vcpu);
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
	switch (get_ucall(vcpu, &uc)) {
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	case UCALL_SYNC:
		return uc.args[1];
	case UCALL_DONE:
		return 0;
	default:
		TEST_FAIL("Unknown ucall %lu", uc.cmd);
	}
	return -1;
}

/*
 * Until GUEST_DONE, or (stop_after > 0) until stage `stop_after` has passed; a guest assert
 * fails the test. Returns the number of stages that passed.
 */
static inline int nvmx_run_stages(struct kvm_vcpu *vcpu, const char *what, int stop_after)
{
	int stages = 0;

	for (;;) {
		int stage = nvmx_next_stage(vcpu);

		if (!stage)
			return stages;
		TEST_ASSERT_EQ(stage, ++stages);
		pr_info("%s stage %d passed\n", what, stages);
		if (stages == stop_after)
			return stages;
	}
}

/* Run to the guest's next ucall, which must be GUEST_SYNC(stage), or GUEST_DONE for 0. */
static inline void nvmx_run_to_stage(struct kvm_vcpu *vcpu, int stage)
{
	TEST_ASSERT_EQ(nvmx_next_stage(vcpu), stage);
}

#endif
