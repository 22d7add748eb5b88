// SPDX-License-Identifier: GPL-2.0-only
/*
 * nvmx-status on a host with two open VMs (issue 6), written with the upstream KVM selftest
 * library and run against nvmx only (selftests/nvmx-only.list): one VM whose VMM hides VT-x
 * (CPUID.1:ECX.VMX cleared), one whose L1 enters VMX operation and fails a VMLAUNCH on a
 * reserved pin-based control (VMfailValid(7), SDM 27.2.1.1). While both are open, the tool
 * must list the first as "VT-x not exposed", the second as exposed and in VMX operation,
 * and explain the failed entry: section, field, value, rule. Then a third VM whose L2 makes
 * three VMCALLs (exits L1 gets): once it is closed, NVMX_GET_HOST_STATUS's totals of closed
 * vCPUs grew by at least those three reflected exits, and the tool says where L2's exits went.
 */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <linux/nvmx.h>

#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "nvmx_stages.h"

#define TOOL "/bin/nvmx-status"
#define PIN_RESERVED (1ul << 31)

static void l2_code(void)
{
	GUEST_FAIL("L2 must not run");
}

static void l1_code(struct vmx_pages *vmx)
{
	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_code);
	vmwrite(PIN_BASED_VM_EXEC_CONTROL, vmreadz(PIN_BASED_VM_EXEC_CONTROL) | PIN_RESERVED);
	GUEST_ASSERT(vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_INSTRUCTION_ERROR), 7);
	GUEST_SYNC(1);
	GUEST_DONE();
}

static void l2_vmcalls(void)
{
	vmcall();
	vmcall();
	vmcall();
	GUEST_FAIL("L1 stops after three VMCALLs");
}

static void l1_runs_l2(struct vmx_pages *vmx)
{
	int i;

	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	GUEST_ASSERT(load_vmcs(vmx));
	prepare_vmcs(vmx, l2_vmcalls);
	for (i = 0; i < 3; i++) {
		GUEST_ASSERT(!(i ? vmresume() : vmlaunch()));
		GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
		vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
	}
	GUEST_DONE();
}

static struct nvmx_host_status host_status(void)
{
	struct nvmx_host_status st;
	int fd = open_kvm_dev_path_or_exit();

	TEST_ASSERT_EQ(ioctl(fd, NVMX_GET_HOST_STATUS, &st), 0);
	close(fd);
	return st;
}

static void idle_code(void)
{
	GUEST_DONE();
}

/* Run the tool; its output in `out`, its exit status returned. */
static int tool(const char *args, char *out, size_t len)
{
	char cmd[128];
	size_t n = 0;
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd), TOOL " %s", args);
	p = popen(cmd, "r");
	TEST_ASSERT(p, "popen %s", cmd);
	while (n + 1 < len && !feof(p))
		n += fread(out + n, 1, len - 1 - n, p);
	out[n] = 0;
	st = pclose(p);
	pr_info("%s:\n%s\n", cmd, out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect(const char *out, const char *what)
{
	TEST_ASSERT(strstr(out, what), "nvmx-status output lacks '%s'", what);
}

int main(int argc, char *argv[])
{
	static char out[65536];
	struct kvm_vcpu *hidden, *l1;
	struct kvm_vm *vm_hidden, *vm_l1;
	struct nvmx_host_status before, after;
	char want[256];
	gva_t vmx_gva;
	struct ucall uc;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	vm_hidden = vm_create_with_one_vcpu(&hidden, idle_code);
	vcpu_clear_cpuid_feature(hidden, X86_FEATURE_VMX);
	vm_l1 = vm_create_with_one_vcpu(&l1, l1_code);
	vcpu_alloc_vmx(vm_l1, &vmx_gva);
	vcpu_args_set(l1, 1, vmx_gva);
	/* L1's VMLAUNCH failed as meant (stage 1): its vCPU stays open for the tool. */
	TEST_ASSERT_EQ(nvmx_run_stages(l1, "L1", 1), 1);

	/* The host is usable; a guest's failed entry is a warning, not a host failure. */
	TEST_ASSERT_EQ(tool("--json", out, sizeof(out)), 0);
	expect(out, "\"usable\":true");
	snprintf(want, sizeof(want),
		 "\"pid\":%d,\"vmx_exposed\":false,\"vmxon\":false,\"guest_mode\":false,\"last_entry_failure\":null",
		 getpid());
	expect(out, want);
	snprintf(want, sizeof(want),
		 "\"pid\":%d,\"vmx_exposed\":true,\"vmxon\":true,\"guest_mode\":false,"
		 "\"last_entry_failure\":{\"kind\":1,\"section\":\"27.2.1.1\",\"field\":16384,"
		 "\"field_name\":\"PIN_BASED_VM_EXEC_CONTROL\",\"value\":%lu,",
		 getpid(), (vcpu_get_msr(l1, MSR_IA32_VMX_TRUE_PINBASED_CTLS) & 0xffffffff) | PIN_RESERVED);
	expect(out, want);

	TEST_ASSERT_EQ(tool("", out, sizeof(out)), 0);
	expect(out, "VT-x not exposed");
	expect(out, "VMfailValid(7), invalid control field: SDM 27.2.1.1: PIN_BASED_VM_EXEC_CONTROL (0x4000)");
	expect(out, "nested virtualization with nvmx is USABLE");

	vcpu_run(l1);
	TEST_ASSERT_EQ(get_ucall(l1, &uc), UCALL_DONE);
	kvm_vm_free(vm_l1);
	kvm_vm_free(vm_hidden);

	before = host_status();
	vm_l1 = vm_create_with_one_vcpu(&l1, l1_runs_l2);
	vcpu_alloc_vmx(vm_l1, &vmx_gva);
	vcpu_args_set(l1, 1, vmx_gva);
	TEST_ASSERT_EQ(nvmx_run_stages(l1, "L1 running L2", 0), 0);
	kvm_vm_free(vm_l1);
	after = host_status();
	TEST_ASSERT(after.closed_l2_exits_reflected >= before.closed_l2_exits_reflected + 3,
		    "reflected %llu -> %llu", before.closed_l2_exits_reflected, after.closed_l2_exits_reflected);
	TEST_ASSERT(after.closed_l2_exits - before.closed_l2_exits >=
		    after.closed_l2_exits_reflected - before.closed_l2_exits_reflected,
		    "L2 exits %llu -> %llu", before.closed_l2_exits, after.closed_l2_exits);
	TEST_ASSERT_EQ(tool("", out, sizeof(out)), 0);
	expect(out, "reflected to L1");
	return 0;
}
