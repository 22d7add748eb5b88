// SPDX-License-Identifier: GPL-2.0-only
/*
 * nvmx's own nested-VMX test, written with the upstream KVM selftest library's VMX helpers
 * (lib/x86/vmx.c of linux-source-7.3, built at test time) so that it runs unchanged against
 * kvm_intel (nested=1) and nvmx in the same boot. L1 checks VMfail numbers of the VMX
 * instructions (SDM vol. 3C 32.4, table 32-1), then runs an L2 whose exits it asked for
 * (CPUID, HLT, I/O, an MSR in the MSR bitmap, VMCALL, a triple fault) and one it did not
 * (an OUT that goes to userspace and comes back into L2).
 */
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"

#include <sys/ioctl.h>
#include <linux/nvmx.h>

#define CF (1ul << 0)
#define ZF (1ul << 6)
#define PORT_L2_TO_USER 0x2001
#define UNKNOWN_FIELD 0x6c3e /* natural-width host field index 31: no such component */

static void l2_code(void)
{
	u32 a = 0, b, c = 0, d;
	struct { u16 limit; u64 base; } __attribute__((packed)) idt = { 0, 0 };

	__asm__ __volatile__("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
	__asm__ __volatile__("hlt");
	__asm__ __volatile__("outb %%al, $0x80" : : "a"(0));
	rdmsr(MSR_IA32_TSC);
	/* Not intercepted by L1: exits to userspace and comes back here. */
	__asm__ __volatile__("outb %%al, %%dx" : : "a"(0), "d"(PORT_L2_TO_USER));
	vmcall();
	/* No IDT: #BP, #GP, #DF, triple fault, which goes to L1. */
	__asm__ __volatile__("lidt %0; int3" : : "m"(idt));
}

static u64 vmxon_flags(u64 pa)
{
	u64 fl;

	__asm__ __volatile__("vmxon %[pa]; pushfq; popq %[fl]" : [fl] "=r"(fl) : [pa] "m"(pa) : "cc", "memory");
	return fl;
}

/* A macro, so that a failure names the line of the instruction that did not fail. */
#define expect_fail_valid(failed, err)					\
	do {								\
		GUEST_ASSERT(failed);					\
		GUEST_ASSERT_EQ(vmreadz(VM_INSTRUCTION_ERROR), err);	\
	} while (0)

static void next_l2_instruction(void)
{
	vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
}

static void l1_code(struct vmx_pages *vmx)
{
	u64 ctl, v;

	GUEST_ASSERT(prepare_for_vmx_operation(vmx));
	/* VMXON in VMX root operation without a current VMCS: VMfailInvalid. */
	GUEST_ASSERT(vmxon_flags(vmx->vmxon_gpa) & CF);
	GUEST_ASSERT(load_vmcs(vmx));
	/* ... and with one: VMfailValid(15). */
	GUEST_ASSERT(vmxon_flags(vmx->vmxon_gpa) & ZF);
	GUEST_ASSERT_EQ(vmreadz(VM_INSTRUCTION_ERROR), 15);
	expect_fail_valid(vmclear(0x1001), 2);			/* invalid address */
	expect_fail_valid(vmclear(vmx->vmxon_gpa), 3);		/* VMXON pointer */
	expect_fail_valid(vmptrld(0x1001), 9);			/* invalid address */
	expect_fail_valid(vmptrld(vmx->vmxon_gpa), 10);		/* VMXON pointer */
	/* A shadow VMCS (revision with bit 31) is a wrong revision where VMCS shadowing is not
	 * offered (nvmx); kvm_intel offers it on hosts that have it. */
	if (!((rdmsr(MSR_IA32_VMX_PROCBASED_CTLS2) >> 32) & SECONDARY_EXEC_SHADOW_VMCS))
		expect_fail_valid(vmptrld(vmx->shadow_vmcs_gpa), 11);
	expect_fail_valid(vmread(UNKNOWN_FIELD, &v), 12);	/* unsupported component */
	/* Read-only unless IA32_VMX_MISC[29] (VMWRITE to any field) is offered: nvmx does not,
	 * kvm_intel does where the host has it. */
	if (!(rdmsr(MSR_IA32_VMX_MISC) & (1ul << 29)))
		expect_fail_valid(vmwrite(VM_EXIT_REASON, 0), 13);
	GUEST_ASSERT_EQ(vmptrstz(), vmx->vmcs_gpa);
	GUEST_SYNC(1);

	prepare_vmcs(vmx, l2_code);
	expect_fail_valid(vmresume(), 5);			/* not launched */
	ctl = vmreadz(PIN_BASED_VM_EXEC_CONTROL);
	vmwrite(PIN_BASED_VM_EXEC_CONTROL, ctl | (1ul << 31));	/* reserved control */
	expect_fail_valid(vmlaunch(), 7);
	vmwrite(PIN_BASED_VM_EXEC_CONTROL, ctl);
	v = vmreadz(HOST_CS_SELECTOR);
	vmwrite(HOST_CS_SELECTOR, 0);				/* null host CS */
	expect_fail_valid(vmlaunch(), 8);
	vmwrite(HOST_CS_SELECTOR, v);
	GUEST_SYNC(2);

	/* CPUID exits unconditionally. */
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_CPUID);
	expect_fail_valid(vmlaunch(), 4);			/* VMLAUNCH of a launched VMCS */
	next_l2_instruction();
	/* HLT with HLT exiting. */
	ctl = vmreadz(CPU_BASED_VM_EXEC_CONTROL);
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, ctl | CPU_BASED_HLT_EXITING);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_HLT);
	next_l2_instruction();
	/* OUT 0x80 with unconditional I/O exiting: port in the qualification. */
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, ctl | CPU_BASED_UNCOND_IO_EXITING);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_IO_INSTRUCTION);
	GUEST_ASSERT_EQ(vmreadz(EXIT_QUALIFICATION) >> 16, 0x80);
	next_l2_instruction();
	/* RDMSR of IA32_TSC with its bit set in the read bitmap. */
	((u8 *)vmx->msr)[MSR_IA32_TSC / 8] |= 1 << (MSR_IA32_TSC % 8);
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, ctl | CPU_BASED_USE_MSR_BITMAPS);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_MSR_READ);
	next_l2_instruction();
	GUEST_SYNC(3);
	/* The OUT L1 does not intercept goes to userspace; then VMCALL comes to L1. */
	vmwrite(CPU_BASED_VM_EXEC_CONTROL, ctl);
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	next_l2_instruction();
	/* L2's triple fault is L1's. */
	GUEST_ASSERT(!vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_TRIPLE_FAULT);
	GUEST_DONE();
}

/* Where the exits went, from the host hypervisor's own counters. */
static void report_exits(struct kvm_vcpu *vcpu)
{
	struct nvmx_vcpu_stats s;

	if (ioctl(vcpu->fd, NVMX_GET_VCPU_STATS, &s)) {
		pr_info("host exits (KVM_GET_STATS_FD): %lu\n", vcpu_get_stat(vcpu, exits));
		return;
	}
	pr_info("nvmx took %llu exits, %llu of them from L2: %llu went to L1 as nested VM exits, "
		"nvmx handled the others; %llu nested entries, %llu returns to userspace, "
		"%llu VMXON/VMXOFF pairs\n", s.exits, s.l2_exits, s.l2_exits_reflected,
		s.nested_entries, s.user_exits, s.vmx_regions);
	/* The six entries above each ended in an exit L1 asked for; the OUT it did not ask
	 * for is an L2 exit nvmx handled (to userspace); each nested VM exit followed an
	 * entry; every return to userspace left a region. */
	TEST_ASSERT(s.l2_exits_reflected == 6 && s.l2_exits >= s.l2_exits_reflected + 1,
		    "nested exits %llu, L2 exits %llu", s.l2_exits_reflected, s.l2_exits);
	TEST_ASSERT(s.nested_entries >= s.l2_exits_reflected, "entries %llu < exits %llu",
		    s.nested_entries, s.l2_exits_reflected);
	TEST_ASSERT(s.user_exits >= 5 && s.vmx_regions >= s.user_exits, "user exits %llu, regions %llu",
		    s.user_exits, s.vmx_regions);
}

int main(int argc, char *argv[])
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	gva_t vmx_gva;
	int syncs = 0, to_user = 0;
	struct ucall uc;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	vm = vm_create_with_one_vcpu(&vcpu, l1_code);
	vcpu_alloc_vmx(vm, &vmx_gva);
	vcpu_args_set(vcpu, 1, vmx_gva);
	for (;;) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);
		if (vcpu->run->io.port == PORT_L2_TO_USER) {
			to_user++;
			continue;
		}
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
		case UCALL_SYNC:
			TEST_ASSERT_EQ(uc.args[1], ++syncs);
			pr_info("L1 stage %d passed\n", syncs);
			break;
		case UCALL_DONE:
			TEST_ASSERT_EQ(syncs, 3);
			TEST_ASSERT_EQ(to_user, 1);
			pr_info("L2 exits reflected and the userspace round trip done\n");
			report_exits(vcpu);
			kvm_vm_free(vm);
			return 0;
		default:
			TEST_FAIL("Unknown ucall %lu", uc.cmd);
		}
	}
}
