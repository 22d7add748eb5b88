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

/// The outcome of a VMX instruction from CF and ZF (SDM 31.2).
fn vm_result(cf: u8, zf: u8) -> Result<(), VmFail> {
    vm_failed(cf | zf, cf)
}

/// The outcome of VMREAD/VMWRITE, the two instructions on the nested fast path: `failed` is
/// CF or ZF (one SETBE), so success costs one test.
#[inline(always)]
fn vm_failed(failed: u8, cf: u8) -> Result<(), VmFail> {
    if failed == 0 {
        Ok(())
    } else if cf != 0 {
        Err(VmFail::Invalid)
    } else {
        Err(VmFail::Valid)
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
/// so that nothing rewrites CR4 from the shadow in between (Documentation/nvmx.rst, "Why IRQs-off regions only"), and `v` may differ
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

/// VMCLEAR of the VMCS at physical address `phys` (SDM 31.3).
///
/// # Safety
///
/// In VMX root operation (IRQs-off region); `phys` is a VMCS region nvmx owns.
pub(crate) unsafe fn vmclear(phys: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: guaranteed by the caller; the operand is a u64 on our stack.
    unsafe {
        asm!("vmclear qword ptr [{p}]", "setc {cf}", "setz {zf}",
             p = in(reg) &phys, cf = out(reg_byte) cf, zf = out(reg_byte) zf, options(nostack))
    };
    vm_result(cf, zf)
}

/// VMPTRLD: make the VMCS at `phys` current (SDM 31.3).
///
/// # Safety
///
/// In VMX root operation; `phys` is a VMCS region nvmx owns, initialised by VMCLEAR.
pub(crate) unsafe fn vmptrld(phys: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: guaranteed by the caller.
    unsafe {
        asm!("vmptrld qword ptr [{p}]", "setc {cf}", "setz {zf}",
             p = in(reg) &phys, cf = out(reg_byte) cf, zf = out(reg_byte) zf, options(nostack))
    };
    vm_result(cf, zf)
}

/// VMREAD of `field` from the current VMCS (SDM 31.3: on VMfail the destination is left
/// unchanged, so a failure is returned, not whatever the register held).
///
/// # Safety
///
/// In VMX root operation with a current VMCS.
#[inline(always)]
pub(crate) unsafe fn vmread(field: u32) -> Result<u64, VmFail> {
    let v: u64;
    let (failed, cf): (u8, u8);
    // SAFETY: guaranteed by the caller; VMREAD writes only the output register and flags.
    unsafe {
        asm!("vmread {v}, {f}", "setbe {failed}", "setc {cf}", f = in(reg) field as u64,
             v = inout(reg) 0u64 => v, failed = out(reg_byte) failed, cf = out(reg_byte) cf,
             options(nomem, nostack))
    };
    vm_failed(failed, cf).map(|()| v)
}

/// VMWRITE of `value` into `field` of the current VMCS.
///
/// # Safety
///
/// In VMX root operation with a current VMCS.
#[inline(always)]
pub(crate) unsafe fn vmwrite(field: u32, value: u64) -> Result<(), VmFail> {
    let (failed, cf): (u8, u8);
    // SAFETY: guaranteed by the caller.
    unsafe {
        asm!("vmwrite {f}, {v}", "setbe {failed}", "setc {cf}", f = in(reg) field as u64,
             v = in(reg) value, failed = out(reg_byte) failed, cf = out(reg_byte) cf,
             options(nomem, nostack))
    };
    vm_failed(failed, cf)
}

/// INVEPT (SDM 31.3): single-context for `eptp` (type 1), or all-context (type 2) when
/// `single` is false.
///
/// # Safety
///
/// In VMX root operation.
pub(crate) unsafe fn invept(eptp: u64, single: bool) -> Result<(), VmFail> {
    let desc: [u64; 2] = [eptp, 0];
    let kind: u64 = if single { 1 } else { 2 };
    let (cf, zf): (u8, u8);
    // SAFETY: guaranteed by the caller; the descriptor is 16 bytes on our stack.
    unsafe {
        asm!("invept {t}, xmmword ptr [{d}]", "setc {cf}", "setz {zf}", t = in(reg) kind,
             d = in(reg) &desc, cf = out(reg_byte) cf, zf = out(reg_byte) zf, options(nostack))
    };
    vm_result(cf, zf)
}

/// Reads CR3.
pub(crate) fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads an MSR the CPU is known to have (architectural host MSRs).
pub(crate) fn rdmsr(index: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called for MSRs every VMX-capable x86-64 CPU has.
    unsafe {
        asm!("rdmsr", in("ecx") index, out("eax") lo, out("edx") hi,
             options(nomem, nostack, preserves_flags))
    };
    ((hi as u64) << 32) | lo as u64
}

/// Writes an MSR the CPU is known to have.
///
/// # Safety
///
/// `index` is an architectural MSR of every x86-64 VMX CPU, `value` legal for it, and the
/// caller restores whatever host state the write changes before the kernel can observe it.
pub(crate) unsafe fn wrmsr(index: u32, value: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        asm!("wrmsr", in("ecx") index, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    };
}

/// Reads DR7.
pub(crate) fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 at CPL 0 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Load CR2 with a guest's value.
///
/// # Safety
///
/// IRQs off until the guest has run (a host page fault would overwrite it, which is
/// harmless to the host but loses the guest's value).
pub(crate) unsafe fn write_cr2(v: u64) {
    // SAFETY: CR2 only reports faulting addresses; writing it changes no translation.
    unsafe { asm!("mov cr2, {}", in(reg) v, options(nomem, nostack, preserves_flags)) };
}

pub(crate) fn read_dr7() -> u64 {
    let v: u64;
    // SAFETY: reading DR7 at CPL 0 has no side effects.
    unsafe { asm!("mov {}, dr7", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Writes DR7.
///
/// # Safety
///
/// `v` is a value DR7 held before (the host's own breakpoint setup).
pub(crate) unsafe fn write_dr7(v: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { asm!("mov dr7, {}", in(reg) v, options(nomem, nostack, preserves_flags)) };
}

/// Reads debug register `n` (0-3 or 6).
pub(crate) fn read_dr(n: u8) -> u64 {
    let v: u64;
    // SAFETY: reading a debug register at CPL 0 has no side effects.
    unsafe {
        match n {
            0 => asm!("mov {}, dr0", out(reg) v, options(nomem, nostack, preserves_flags)),
            1 => asm!("mov {}, dr1", out(reg) v, options(nomem, nostack, preserves_flags)),
            2 => asm!("mov {}, dr2", out(reg) v, options(nomem, nostack, preserves_flags)),
            3 => asm!("mov {}, dr3", out(reg) v, options(nomem, nostack, preserves_flags)),
            _ => asm!("mov {}, dr6", out(reg) v, options(nomem, nostack, preserves_flags)),
        }
    }
    v
}

/// Writes debug register `n` (0-3 or 6).
///
/// # Safety
///
/// DR7 enables no breakpoint that `v` could make fire in the host (or `v` is the host's
/// own value being restored), and a DR6 value has its reserved bits as the CPU wants them.
pub(crate) unsafe fn write_dr(n: u8, v: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        match n {
            0 => asm!("mov dr0, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
            1 => asm!("mov dr1, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
            2 => asm!("mov dr2, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
            3 => asm!("mov dr3, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
            _ => asm!("mov dr6, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
        }
    }
}

/// Reads the time-stamp counter.
pub(crate) fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC has no side effects (CR4.TSD does not apply at CPL 0).
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    ((hi as u64) << 32) | lo as u64
}

/// A 512-byte FXSAVE area (SDM vol. 1 10.5.1), 16-byte aligned as FXSAVE requires.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub(crate) struct FxArea(pub(crate) [u8; 512]);

/// Saves the x87/MMX/SSE state into `area` (FXSAVE64).
pub(crate) fn fxsave(area: &mut FxArea) {
    // SAFETY: `area` is 512 writable, 16-byte-aligned bytes; CR4.OSFXSR is set on x86-64.
    unsafe { asm!("fxsave64 [{}]", in(reg) area.0.as_mut_ptr(), options(nostack, preserves_flags)) };
}

/// A vCPU's extended state in the standard XSAVE format (rust/core/src/xsave.rs), 64-byte
/// aligned as XSAVE/XRSTOR require; its first 512 bytes are an FXSAVE image.
#[repr(C, align(64))]
#[derive(kernel::prelude::Zeroable)]
pub(crate) struct XsaveArea(pub(crate) [u8; crate::vmx_core::xsave::KVM_XSAVE_BYTES]);

/// Saves the components in `mask` (a subset of XCR0) into `area` (XSAVE64, standard format);
/// with `mask` 0 and no XSAVE on the host, the legacy region (FXSAVE64).
pub(crate) fn xsave(area: &mut XsaveArea, xsave: bool, mask: u64) {
    let p = area.0.as_mut_ptr();
    // SAFETY: `area` is 4096 writable, 64-byte-aligned bytes, more than the standard format
    // of every component nvmx switches needs (xsave::XsaveHost::probe); with `xsave`,
    // CR4.OSXSAVE is set (the host uses XSAVE); otherwise CR4.OSFXSR is (x86-64).
    unsafe {
        if xsave {
            asm!("xsave64 [{}]", in(reg) p, in("eax") mask as u32, in("edx") (mask >> 32) as u32,
                 options(nostack, preserves_flags));
        } else {
            asm!("fxsave64 [{}]", in(reg) p, options(nostack, preserves_flags));
        }
    }
}

/// Loads the components in `mask` from `area` (XRSTOR64, standard format), or with no
/// XSAVE on the host its legacy region (FXRSTOR64).
///
/// # Safety
///
/// `area` passed xsave::XsaveHost::read_xsave's checks or was written by [`xsave`] (an
/// MXCSR within the CPU's mask, XSTATE_BV within XCR0, the header's reserved bytes zero;
/// else #GP), and the caller owns the FPU registers until the host's state is reloaded
/// (IRQs off inside a [`crate::shim::KernelFpu`] section).
pub(crate) unsafe fn xrstor(area: &XsaveArea, xsave: bool, mask: u64) {
    let p = area.0.as_ptr();
    // SAFETY: guaranteed by the caller; `area` is 4096 readable, aligned bytes.
    unsafe {
        if xsave {
            asm!("xrstor64 [{}]", in(reg) p, in("eax") mask as u32, in("edx") (mask >> 32) as u32,
                 options(nostack, preserves_flags));
        } else {
            asm!("fxrstor64 [{}]", in(reg) p, options(nostack, preserves_flags));
        }
    }
}

/// XCR0 (XGETBV with ECX = 0; CR4.OSXSAVE must be set).
pub(crate) fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: called only where the host has CR4.OSXSAVE set (else #UD); no side effects.
    unsafe { asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    ((hi as u64) << 32) | lo as u64
}

/// Writes XCR0 (XSETBV with ECX = 0).
///
/// # Safety
///
/// CR4.OSXSAVE is set, `value` passed xsave::xcr0_valid within the host's XCR0 (else #GP),
/// and the host's own XCR0 is written back before anything in the kernel uses the FPU
/// (IRQs off).
pub(crate) unsafe fn xsetbv0(value: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        asm!("xsetbv", in("ecx") 0u32, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nomem, nostack, preserves_flags))
    };
}

/// The CS, SS and TR selectors of this CPU.
pub(crate) fn host_selectors() -> (u16, u16, u16) {
    let (cs, ss, tr): (u16, u16, u16);
    // SAFETY: reading segment selectors has no side effects.
    unsafe {
        asm!("mov {0:x}, cs", "mov {1:x}, ss", "str {2:x}", out(reg) cs, out(reg) ss,
             out(reg) tr, options(nomem, nostack, preserves_flags))
    };
    (cs, ss, tr)
}

extern "C" {
    fn nvmx_vmx_run(gprs: *mut u64, resume: i32) -> i32;
    /// HOST_RIP: where VM exits land (rust/vmx_asm.S).
    static nvmx_vmx_exit: u8;
}

/// Address of the VM-exit landing point, for HOST_RIP.
pub(crate) fn vmx_exit_rip() -> u64 {
    core::ptr::addr_of!(nvmx_vmx_exit) as u64
}

/// Enter the guest (VMLAUNCH, or VMRESUME when `resume`) with `gprs` (x86 register order,
/// 16 entries). Ok after a VM exit, Err if the instruction failed.
///
/// # Safety
///
/// IRQs off, VMX root operation, a current VMCS fully set up with this CPU's host state.
pub(crate) unsafe fn vmx_run(gprs: &mut [u64; 16], resume: bool) -> Result<(), VmFail> {
    // SAFETY: guaranteed by the caller; `gprs` is valid for the asm's 16 slots.
    match unsafe { nvmx_vmx_run(gprs.as_mut_ptr(), resume as i32) } {
        0 => Ok(()),
        _ => Err(VmFail::Valid),
    }
}
