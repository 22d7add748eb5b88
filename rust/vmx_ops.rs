// SPDX-License-Identifier: GPL-2.0
//! One wrapper per privileged instruction nvmx executes (the model is KVM's `vmx_ops.h`).
//!
//! VMX instructions report failure in RFLAGS (SDM 31.2): CF=1 is VMfailInvalid (no current
//! VMCS to hold an error number), ZF=1 is VMfailValid (error number in the VM-instruction
//! error field).

use core::arch::asm;

/// A VMX instruction's failure (SDM 31.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VmFail {
    /// CF=1: VMfailInvalid.
    Invalid,
    /// ZF=1: VMfailValid; the number is in VM_INSTRUCTION_ERROR.
    Valid,
}

fn vm_result(cf: u8, zf: u8) -> Result<(), VmFail> {
    if cf != 0 {
        Err(VmFail::Invalid)
    } else if zf != 0 {
        Err(VmFail::Valid)
    } else {
        Ok(())
    }
}

/// Reads CR0.
pub(crate) fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading CR0 at CPL0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR4 from the register, not from the kernel's shadow (which does not know VMXE).
pub(crate) fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 at CPL0 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Writes CR4.
///
/// # Safety
///
/// Interrupts must be disabled from here until CR4 is restored to the kernel's shadow value,
/// so that nothing rewrites CR4 from the shadow in between (design.md §1), and `v` may differ
/// from the current value only in VMXE.
pub(crate) unsafe fn write_cr4(v: u64) {
    // SAFETY: the caller guarantees the IRQs-off region and that only VMXE changes.
    unsafe { asm!("mov cr4, {}", in(reg) v, options(nomem, nostack, preserves_flags)) };
}

/// VMXON with the VMXON region at physical address `phys` (SDM 31.3, VMXON).
///
/// # Safety
///
/// CR4.VMXE must be set in an IRQs-off region; `phys` must be a 4 KiB-aligned page owned by
/// nvmx whose first dword holds the VMCS revision id, and which nobody else touches while this
/// CPU is in VMX operation.
pub(crate) unsafe fn vmxon(phys: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: guaranteed by the caller; the operand is a pointer to a u64 on our stack.
    unsafe {
        asm!(
            "vmxon qword ptr [{p}]",
            "setc {cf}",
            "setz {zf}",
            p = in(reg) &phys,
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            options(nostack),
        )
    };
    vm_result(cf, zf)
}

/// VMXOFF (SDM 31.3, VMXOFF).
///
/// # Safety
///
/// This CPU must be in VMX root operation entered by [`vmxon`] in the same IRQs-off region.
pub(crate) unsafe fn vmxoff() -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: guaranteed by the caller.
    unsafe {
        asm!(
            "vmxoff",
            "setc {cf}",
            "setz {zf}",
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            options(nomem, nostack),
        )
    };
    vm_result(cf, zf)
}

/// CPUID with EAX = `leaf`, ECX = `subleaf`.
pub(crate) fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU and has no side effects.
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, subleaf) };
    [r.eax, r.ebx, r.ecx, r.edx]
}
