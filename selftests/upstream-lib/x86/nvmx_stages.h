/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The host side of nvmx's library-based tests: run the vCPU through its guest's
 * GUEST_SYNC(1), GUEST_SYNC(2), ... stages, in order, printing each.
 */
#ifndef NVMX_STAGES_H
#define NVMX_STAGES_H

#include "kvm_util.h"
#include "ucall_common.h"

/*
 * Until GUEST_DONE, or (stop_after > 0) until stage `stop_after` has passed; a guest assert
 * fails the test. Returns the number of stages that passed.
 */
static inline int nvmx_run_stages(struct kvm_vcpu *vcpu, const char *what, int stop_after)
{
	struct ucall uc;
	int stages = 0;

	for (;;) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
		case UCALL_SYNC:
			TEST_ASSERT_EQ(uc.args[1], ++stages);
			pr_info("%s stage %d passed\n", what, stages);
			if (stages == stop_after)
				return stages;
			break;
		case UCALL_DONE:
			return stages;
		default:
			TEST_FAIL("Unknown ucall %lu", uc.cmd);
		}
	}
}

#endif
