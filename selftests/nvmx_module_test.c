// SPDX-License-Identifier: GPL-2.0
/*
 * Loading and unloading nvmx.ko on a machine with VMX (Bochs, or a real Intel host):
 * VMXON/VMXOFF on every online CPU, load/unload/load, and the refusal while kvm_intel holds
 * VMX. Runs with nvmx not loaded; leaves it not loaded.
 *
 * Environment: NVMX_MODULE_DIR (default /lib/modules/nvmx), NVMX_EXPECT_CPUS (the number of
 * CPUs the machine was booted with; the test fails if fewer are online).
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "nvmx_util.h"

static char kmsg_buf[1 << 16];

FIXTURE(module) {
	int kmsg;
};

FIXTURE_SETUP(module)
{
	ASSERT_FALSE(nvmx_module_loaded("nvmx")) TH_LOG("nvmx is already loaded");
	self->kmsg = nvmx_kmsg_open();
	ASSERT_GE(self->kmsg, 0) TH_LOG("/dev/kmsg: %s", strerror(errno));
}

FIXTURE_TEARDOWN(module)
{
	if (nvmx_module_loaded("nvmx"))
		nvmx_unload_module("nvmx");
	close(self->kmsg);
}

static int online_cpus(void)
{
	return sysconf(_SC_NPROCESSORS_ONLN);
}

TEST_F(module, vmxon_vmxoff_logged_for_every_online_cpu)
{
	int cpus = online_cpus();
	const char *expect = getenv("NVMX_EXPECT_CPUS");
	char needle[64];

	if (expect)
		ASSERT_EQ(atoi(expect), cpus) TH_LOG("the machine was booted with %s CPUs", expect);
	ASSERT_EQ(0, nvmx_load_module(nvmx_module_path(), NULL));
	nvmx_kmsg_read(self->kmsg, kmsg_buf, sizeof(kmsg_buf));
	for (int cpu = 0; cpu < cpus; cpu++) {
		snprintf(needle, sizeof(needle), "nvmx: cpu%d: VMXON ok, VMXOFF ok, CR4 restored", cpu);
		EXPECT_EQ(1, nvmx_count_lines(kmsg_buf, needle)) TH_LOG("no '%s' in:\n%s", needle, kmsg_buf);
	}
	snprintf(needle, sizeof(needle), "VMX operation verified on %d of %d online CPUs", cpus, cpus);
	EXPECT_EQ(1, nvmx_count_lines(kmsg_buf, needle)) TH_LOG("%s", kmsg_buf);
	EXPECT_EQ(1, nvmx_count_lines(kmsg_buf, "nvmx: VMCS revision ")) TH_LOG("%s", kmsg_buf);
	EXPECT_EQ(0, nvmx_unload_module("nvmx"));
}

TEST_F(module, load_unload_load)
{
	struct stat st;

	for (int round = 0; round < 3; round++) {
		ASSERT_EQ(0, nvmx_load_module(nvmx_module_path(), NULL)) TH_LOG("round %d", round);
		EXPECT_EQ(0, stat("/dev/nvmx", &st)) TH_LOG("round %d: no /dev/nvmx", round);
		ASSERT_EQ(0, nvmx_unload_module("nvmx")) TH_LOG("round %d", round);
		EXPECT_EQ(-1, stat("/dev/nvmx", &st)) TH_LOG("round %d: /dev/nvmx left behind", round);
	}
	/* A second load would have refused (EBUSY) had any CPU been left with CR4.VMXE set. */
	nvmx_kmsg_read(self->kmsg, kmsg_buf, sizeof(kmsg_buf));
	EXPECT_EQ(3, nvmx_count_lines(kmsg_buf, "nvmx: unloaded; no CPU is in VMX operation"))
		TH_LOG("%s", kmsg_buf);
	EXPECT_EQ(0, nvmx_count_lines(kmsg_buf, "a hypervisor is already running"));
}

TEST_F(module, double_load_is_eexist)
{
	ASSERT_EQ(0, nvmx_load_module(nvmx_module_path(), NULL));
	EXPECT_EQ(EEXIST, nvmx_load_module(nvmx_module_path(), NULL));
	EXPECT_EQ(0, nvmx_unload_module("nvmx"));
}

TEST_F(module, unload_while_device_open_is_ebusy)
{
	int fd;

	ASSERT_EQ(0, nvmx_load_module(nvmx_module_path(), NULL));
	fd = open("/dev/nvmx", O_RDWR | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	/* An open file holds a module reference: the module cannot go away under it. */
	EXPECT_EQ(EWOULDBLOCK, nvmx_unload_module("nvmx"));
	EXPECT_EQ(12, ioctl(fd, _IO(0xAE, 0x00), 0));
	close(fd);
	EXPECT_EQ(0, nvmx_unload_module("nvmx"));
}

TEST_F(module, unload_while_vm_open_is_ebusy)
{
	int sys, vm, vcpu;

	ASSERT_EQ(0, nvmx_load_module(nvmx_module_path(), NULL));
	sys = open("/dev/nvmx", O_RDWR | O_CLOEXEC);
	ASSERT_GE(sys, 0);
	vm = ioctl(sys, _IO(0xAE, 0x01), 0);
	ASSERT_GE(vm, 0);
	vcpu = ioctl(vm, _IO(0xAE, 0x41), 0);
	ASSERT_GE(vcpu, 0);
	close(sys);
	close(vm);
	/* The vCPU fd alone keeps the module (and its VM) alive. */
	EXPECT_EQ(EWOULDBLOCK, nvmx_unload_module("nvmx"));
	close(vcpu);
	EXPECT_EQ(0, nvmx_unload_module("nvmx"));
}

TEST_F(module, refused_while_kvm_intel_holds_vmx)
{
	int cpus = online_cpus();

	/* kvm_intel enters VMX operation on every CPU at load (kvm.enable_virt_at_load=1). */
	ASSERT_EQ(0, system("modprobe kvm_intel enable_apicv=0"));
	ASSERT_TRUE(nvmx_module_loaded("kvm_intel"));
	EXPECT_EQ(EBUSY, nvmx_load_module(nvmx_module_path(), NULL));
	EXPECT_FALSE(nvmx_module_loaded("nvmx"));
	nvmx_kmsg_read(self->kmsg, kmsg_buf, sizeof(kmsg_buf));
	EXPECT_EQ(cpus, nvmx_count_lines(kmsg_buf, "a hypervisor is already running: another hypervisor owns VMX"))
		TH_LOG("%s", kmsg_buf);
	EXPECT_LE(1, nvmx_count_lines(kmsg_buf, "rmmod kvm_intel")) TH_LOG("%s", kmsg_buf);
	EXPECT_EQ(0, nvmx_count_lines(kmsg_buf, "VMXON ok"));

	/* Freeing VMX as the message says makes nvmx loadable again. */
	EXPECT_EQ(0, system("rmmod kvm_intel && rmmod kvm"));
	EXPECT_EQ(0, nvmx_load_module(nvmx_module_path(), NULL));
	EXPECT_EQ(0, nvmx_unload_module("nvmx"));
}

TEST_HARNESS_MAIN
