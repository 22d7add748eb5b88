/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The world switch: enter the guest of the current VMCS and come back at its VM exit.
 * Modelled on KVM's arch/x86/kvm/vmx/vmenter.S, with the host kernel's own choice of
 * mitigations (rust/core/src/mitigation.rs): the alternatives below are patched at module
 * load from the feature bits the kernel set at boot, as they are for KVM. Guest GPRs are
 * always cleared after a VM exit.
 */
#include <linux/linkage.h>
#include <asm/alternative.h>
#include <asm/asm.h>
#include <asm/cpufeatures.h>
#include <asm/nospec-branch.h>
#include <asm/segment.h>
#include <asm/unwind_hints.h>

#define VMCS_HOST_RSP	0x6c14

/* The guest GPRs: 16 u64 in x86 register-number order (ArchState::gprs in
 * rust/core/src/arch_state.rs); slot 4 (RSP) is unused: RSP is a VMCS field. */
#define R_AX	(0 * 8)
#define R_CX	(1 * 8)
#define R_DX	(2 * 8)
#define R_BX	(3 * 8)
#define R_BP	(5 * 8)
#define R_SI	(6 * 8)
#define R_DI	(7 * 8)
#define R_8	(8 * 8)
#define R_9	(9 * 8)
#define R_10	(10 * 8)
#define R_11	(11 * 8)
#define R_12	(12 * 8)
#define R_13	(13 * 8)
#define R_14	(14 * 8)
#define R_15	(15 * 8)

/*
 * VERW's operand: a writable data segment selector. The kernel's (x86_verw_sel) is exported
 * to KVM only.
 */
	.pushsection .rodata
	.balign 2
nvmx_verw_sel:
	.word __KERNEL_DS
	.popsection

	.text
/*
 * int nvmx_vmx_run(struct nvmx_gprs *gprs, int resume)
 *
 * Loads the guest GPRs from @gprs and executes VMRESUME (@resume != 0) or VMLAUNCH. Returns
 * 0 after a VM exit, with the guest GPRs stored back into @gprs, or 1 if the instruction
 * failed (the VM-instruction error field tells why). Must run with interrupts disabled, in
 * VMX root operation, with a current VMCS whose host state is this CPU's and whose
 * HOST_RIP is nvmx_vmx_exit.
 */
SYM_FUNC_START(nvmx_vmx_run)
	push %rbp
	mov  %rsp, %rbp
	push %r15
	push %r14
	push %r13
	push %r12
	push %rbx
	push %rdi		/* @gprs, found again at VM exit */
	push %rsi		/* @resume */

	/* At VM exit RSP is this value: 0(%rsp) = @resume, 8(%rsp) = @gprs. */
	mov $VMCS_HOST_RSP, %eax
	vmwrite %rsp, %rax

	mov R_AX(%rdi), %rax
	mov R_CX(%rdi), %rcx
	mov R_DX(%rdi), %rdx
	mov R_BX(%rdi), %rbx
	mov R_BP(%rdi), %rbp
	mov R_SI(%rdi), %rsi
	mov R_8(%rdi),  %r8
	mov R_9(%rdi),  %r9
	mov R_10(%rdi), %r10
	mov R_11(%rdi), %r11
	mov R_12(%rdi), %r12
	mov R_13(%rdi), %r13
	mov R_14(%rdi), %r14
	mov R_15(%rdi), %r15
	/*
	 * Clear CPU buffers (MDS, TAA, MMIO stale data, RFDS) as late as possible, where the
	 * kernel chose that for VMs. VERW sets ZF: it comes before the launch/resume test.
	 */
	ALTERNATIVE "", "verw nvmx_verw_sel(%rip)", X86_FEATURE_CLEAR_CPU_BUF_VM
	/* Flags for the launch/resume choice; MOV below leaves them alone. */
	testl $1, (%rsp)
	mov R_DI(%rdi), %rdi	/* the @gprs pointer is gone from registers now */
	jz .Lvmlaunch

	UNWIND_HINT_SAVE
	vmresume
	jmp .Lvmfail
.Lvmlaunch:
	vmlaunch
	jmp .Lvmfail

SYM_INNER_LABEL(nvmx_vmx_exit, SYM_L_GLOBAL)
	UNWIND_HINT_RESTORE
	ENDBR
	push %rdi		/* guest RDI; @gprs is now at 16(%rsp) */
	mov 16(%rsp), %rdi
	mov %rax, R_AX(%rdi)
	mov %rcx, R_CX(%rdi)
	mov %rdx, R_DX(%rdi)
	mov %rbx, R_BX(%rdi)
	mov %rbp, R_BP(%rdi)
	mov %rsi, R_SI(%rdi)
	pop R_DI(%rdi)
	mov %r8,  R_8(%rdi)
	mov %r9,  R_9(%rdi)
	mov %r10, R_10(%rdi)
	mov %r11, R_11(%rdi)
	mov %r12, R_12(%rdi)
	mov %r13, R_13(%rdi)
	mov %r14, R_14(%rdi)
	mov %r15, R_15(%rdi)
	xor %ebx, %ebx		/* the return value: 0 */
	jmp .Lout

.Lvmfail:
	/* RSP is still the host's; every other GPR holds a guest value. */
	mov $1, %ebx
.Lout:
	/*
	 * No guest value stays in a register for host code to speculate with (KVM does the
	 * same): RBX holds the return value, RSP is the host's, the others are cleared.
	 */
	xor %eax, %eax
	xor %ecx, %ecx
	xor %edx, %edx
	xor %ebp, %ebp
	xor %esi, %esi
	xor %edi, %edi
	xor %r8d, %r8d
	xor %r9d, %r9d
	xor %r10d, %r10d
	xor %r11d, %r11d
	xor %r12d, %r12d
	xor %r13d, %r13d
	xor %r14d, %r14d
	xor %r15d, %r15d
	/*
	 * Refill the return stack buffer before the first unbalanced RET, where the kernel
	 * chose that for VM exits (retpoline/IBRS: all entries; eIBRS: one).
	 */
	FILL_RETURN_BUFFER %rcx, RSB_CLEAR_LOOPS, X86_FEATURE_RSB_VMEXIT, X86_FEATURE_RSB_VMEXIT_LITE
	mov %ebx, %eax
	add $16, %rsp		/* @resume, @gprs */
	pop %rbx
	pop %r12
	pop %r13
	pop %r14
	pop %r15
	pop %rbp
	RET
SYM_FUNC_END(nvmx_vmx_run)
