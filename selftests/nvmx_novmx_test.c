// SPDX-License-Identifier: GPL-2.0
/*
 * Loading nvmx.ko where VT-x is unusable (QEMU TCG offers no VMX): the load fails with the
 * documented errno and exactly one explanatory dmesg line, and leaves nothing behind.
 *
 * Environment: NVMX_EXPECT_ERRNO (e.g. 19 for ENODEV), NVMX_EXPECT_MESSAGE (a substring of
 * the dmesg line), NVMX_MODULE_DIR.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "kselftest_harness.h"
#include "nvmx_util.h"

static char kmsg_buf[1 << 16];

TEST(load_is_refused_with_the_documented_errno_and_message)
{
	const char *want_errno = getenv("NVMX_EXPECT_ERRNO");
	const char *want_msg = getenv("NVMX_EXPECT_MESSAGE");
	int kmsg = nvmx_kmsg_open();
	struct stat st;

	ASSERT_NE(NULL, want_errno);
	ASSERT_NE(NULL, want_msg);
	ASSERT_GE(kmsg, 0);
	EXPECT_EQ(atoi(want_errno), nvmx_load_module(nvmx_module_path(), NULL));
	EXPECT_FALSE(nvmx_module_loaded("nvmx"));
	EXPECT_EQ(-1, stat("/dev/nvmx", &st));
	nvmx_kmsg_read(kmsg, kmsg_buf, sizeof(kmsg_buf));
	EXPECT_EQ(1, nvmx_count_lines(kmsg_buf, want_msg)) TH_LOG("want '%s' in:\n%s", want_msg, kmsg_buf);
	EXPECT_EQ(0, nvmx_count_lines(kmsg_buf, "VMXON"));
	close(kmsg);
}

TEST(refusal_is_repeatable)
{
	/* A failed init must leave nothing (no device, no half-registered state) to trip on. */
	const char *want_errno = getenv("NVMX_EXPECT_ERRNO");

	ASSERT_NE(NULL, want_errno);
	for (int i = 0; i < 3; i++) {
		EXPECT_EQ(atoi(want_errno), nvmx_load_module(nvmx_module_path(), NULL));
	}
}

TEST_HARNESS_MAIN
