// SPDX-License-Identifier: GPL-2.0
/*
 * Run by the test machine while kvm_intel holds VMX on every CPU (loaded after nvmx): a
 * VMM's KVM_RUN on /dev/nvmx then fails with EBUSY, as often as it is tried, and the
 * message nvmx logs for it is rate-limited — a VMM looping on KVM_RUN must not be able to
 * flood the kernel log (the kernel's printk limit: 10 messages per 5 seconds).
 */
#include <errno.h>

#include "kselftest_harness.h"
#include "nvmx_guest.h"
#include "nvmx_util.h"

#define TRIES 200

TEST(run_is_ebusy_and_its_message_rate_limited)
{
	/* hlt */
	static const unsigned char code[] = { 0xf4 };
	static char log[1 << 16];
	struct guest g;
	int kmsg = nvmx_kmsg_open();
	int busy = 0, logged;

	ASSERT_LE(0, kmsg);
	ASSERT_EQ(0, guest_create(&g, code, sizeof(code)));
	for (int i = 0; i < TRIES; i++)
		busy += ioctl(g.vcpu, KVM_RUN, 0) == -1 && errno == EBUSY;
	EXPECT_EQ(TRIES, busy) TH_LOG("KVM_RUN while kvm_intel holds VMX: EBUSY every time");
	nvmx_kmsg_read(kmsg, log, sizeof(log));
	logged = nvmx_count_lines(log, "another hypervisor");
	EXPECT_LE(1, logged) TH_LOG("the refusal is logged");
	EXPECT_GE(10, logged) TH_LOG("%d messages for %d refusals: not rate-limited", logged, TRIES);
	guest_destroy(&g);
	close(kmsg);
}

TEST_HARNESS_MAIN
