// SPDX-License-Identifier: GPL-2.0
//! The exceptions nvmx always intercepts, and what it does when one exits.
//!
//! A guest can make the CPU loop inside exception delivery: a data breakpoint on the slot of
//! its #DB IST stack that delivery writes (each delivery raises the next #DB), or, in 32-bit
//! protected mode with CR0.AM and EFLAGS.AC, a misaligned ring-3 stack for its #AC handler
//! (each push raises the next #AC). Such a loop never reaches an instruction boundary where
//! an interrupt, an NMI or the VMX-preemption timer could cause a VM exit (debug traps and
//! faults during delivery outrank them, SDM vol. 3A 6.9), so the host CPU is lost for good
//! (CVE-2015-8104, CVE-2015-5307). With #DB and #AC in the exception bitmap (SDM vol. 3C
//! 25.6.3) every iteration is a VM exit instead, after which nvmx re-injects the exception
//! and the host keeps control. #MC is intercepted so that a machine check in the guest goes
//! to the host's machine-check handler, as KVM does (vmx.c: these bits are always set, and
//! in guest mode ORed with VMCS12's).

/// Debug exception.
pub const DB_VECTOR: u8 = 1;
/// Breakpoint (INT3).
pub const BP_VECTOR: u8 = 3;
/// Alignment check.
pub const AC_VECTOR: u8 = 17;
/// Machine check.
pub const MC_VECTOR: u8 = 18;

/// The exception bitmap of VMCS01: #DB, #AC, #MC.
pub const L0_EXCEPTION_BITMAP: u32 = (1 << DB_VECTOR) | (1 << AC_VECTOR) | (1 << MC_VECTOR);

/// VMCS01's exception bitmap for a vCPU whose VMM takes its breakpoints
/// (KVM_GUESTDBG_USE_SW_BP): #BP too.
pub const fn l0_exception_bitmap(vmm_breakpoints: bool) -> u32 {
    if vmm_breakpoints { L0_EXCEPTION_BITMAP | 1 << BP_VECTOR } else { L0_EXCEPTION_BITMAP }
}

/// VMCS02's exception bitmap: L1's (VMCS12's) with L0's on top. An exception that L1's
/// bitmap does not ask for then exits to L0, which re-injects it into L2.
pub const fn vmcs02_exception_bitmap(bitmap12: u32) -> u32 {
    bitmap12 | L0_EXCEPTION_BITMAP
}

/// VM-exit interruption-information type (bits 10:8, SDM table 25-19).
const TYPE_HW_EXCEPTION: u32 = 3;
const TYPE_PRIV_SW_EXCEPTION: u32 = 5;
const TYPE_SW_EXCEPTION: u32 = 6;

/// DR6 bits: B0-B3 (set per #DB), RTM (bit 16, active low), bit 12 (reserved in DR6, but
/// "enabled breakpoint" in the pending-debug-exceptions format of the exit qualification).
const DR6_TRAP_BITS: u64 = 0xf;
const DR6_RTM: u64 = 1 << 16;
const DR6_BIT12: u64 = 1 << 12;
/// DR6's bits with active-low semantics (KVM's DR6_ACTIVE_LOW).
const DR6_ACTIVE_LOW: u64 = 0xffff_0ff0;
/// DR6's fixed-1 bits (RTM, bit 16, excluded: it is set above unless the payload has it).
const DR6_FIXED_1: u64 = 0xfffe_0ff0;
/// DR7.GD: cleared when a #DB is delivered (SDM vol. 3B 18.2.4).
pub const DR7_GD: u64 = 1 << 13;
/// RFLAGS.RF, set in the image a fault pushes; RFLAGS.AC; CR0.AM.
pub const RFLAGS_RF: u64 = 1 << 16;
const RFLAGS_AC: u64 = 1 << 18;
const CR0_AM: u64 = 1 << 18;

/// What to do with an intercepted exception's VM exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intercepted {
    /// #DB: deliver it to the guest that raised it. The CPU did not update DR6 (SDM vol. 3C
    /// 28.1: the exit qualification holds what the #DB would have set): the guest's DR6
    /// becomes [`dr6_after_db`] of this payload, and DR7.GD is cleared. `skip` is the length
    /// of an ICEBP (INT1) to step over first: its exit comes at the instruction, before
    /// the trap-like #DB it raises.
    Debug {
        /// DR6 bits in the pending-debug-exceptions format.
        payload: u64,
        /// ICEBP's instruction length.
        skip: Option<u64>,
    },
    /// #AC raised by an alignment check (CPL 3, CR0.AM, EFLAGS.AC): deliver it, error code 0.
    AlignmentCheck,
    /// #AC the guest's alignment checking cannot have raised (the host's split-lock
    /// detection): not the guest's exception, and nvmx does not virtualize split-lock
    /// detection, so the VMM is told (KVM_EXIT_INTERNAL_ERROR) rather than the guest.
    ForeignAlignmentCheck,
    /// #MC: the host's machine-check handler runs; the guest resumes (as on KVM).
    MachineCheck,
    /// #BP of an INT3 (intercepted for the VMM's software breakpoints): the exit comes at
    /// the instruction, of this length.
    Breakpoint {
        /// INT3's instruction length.
        insn_len: u64,
    },
    /// Some other exception, which nvmx does not intercept: unexpected.
    Unexpected,
}

/// The guest state an #AC's origin depends on.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcContext {
    /// Current privilege level (SS.DPL).
    pub cpl: u8,
    /// CR0 as the guest sees it.
    pub cr0: u64,
    /// RFLAGS.
    pub rflags: u64,
}

/// Whether alignment checking is on for the guest's current accesses (SDM vol. 3A 6.15,
/// "Interrupt 17"): CPL 3, CR0.AM and EFLAGS.AC.
pub const fn alignment_check_enabled(c: &AcContext) -> bool {
    c.cpl == 3 && c.cr0 & CR0_AM != 0 && c.rflags & RFLAGS_AC != 0
}

/// Decide about an exception's VM exit (exit reason 0, not an NMI): `intr_info` is the
/// VM-exit interruption information, `qualification` the exit qualification, `insn_len`
/// the VM-exit instruction length.
pub fn decide(intr_info: u64, qualification: u64, insn_len: u64, ac: &AcContext) -> Intercepted {
    let vector = (intr_info & 0xff) as u8;
    let kind = ((intr_info >> 8) & 7) as u32;
    match (vector, kind) {
        (DB_VECTOR, TYPE_HW_EXCEPTION) => Intercepted::Debug { payload: qualification, skip: None },
        (DB_VECTOR, TYPE_PRIV_SW_EXCEPTION) => Intercepted::Debug { payload: qualification, skip: Some(insn_len) },
        (AC_VECTOR, TYPE_HW_EXCEPTION) if alignment_check_enabled(ac) => Intercepted::AlignmentCheck,
        (AC_VECTOR, TYPE_HW_EXCEPTION) => Intercepted::ForeignAlignmentCheck,
        (MC_VECTOR, TYPE_HW_EXCEPTION) => Intercepted::MachineCheck,
        (BP_VECTOR, TYPE_SW_EXCEPTION) => Intercepted::Breakpoint { insn_len },
        _ => Intercepted::Unexpected,
    }
}

/// The guest's DR6 after a #DB with `payload` (the exit qualification's format, which is
/// the pending-debug-exceptions format: B0-B3, bit 12, BD, BS, RTM, all active high), as
/// KVM's kvm_deliver_exception_payload computes it: B0-B3 are replaced, RTM is set unless
/// the payload has it, the other payload bits are added (BD, BS and BT are sticky), bit 12
/// is cleared and the fixed-1 bits set.
pub const fn dr6_after_db(dr6: u64, payload: u64) -> u64 {
    let mut v = dr6 & !DR6_TRAP_BITS;
    v |= DR6_RTM;
    v &= !(payload & DR6_ACTIVE_LOW);
    v |= payload & !DR6_ACTIVE_LOW;
    (v & !DR6_BIT12) | DR6_FIXED_1
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: u64 = 1 << 31;
    const HW: u64 = 3 << 8;
    const PRIV_SW: u64 = 5 << 8;

    #[test]
    fn bitmaps() {
        assert_eq!(L0_EXCEPTION_BITMAP, 0x0006_0002);
        assert_eq!(vmcs02_exception_bitmap(0), 0x0006_0002);
        assert_eq!(vmcs02_exception_bitmap(1 << 14), 0x0006_4002, "L1's #PF kept");
        assert_eq!(vmcs02_exception_bitmap(u32::MAX), u32::MAX);
        assert_eq!(l0_exception_bitmap(true), 0x0006_000a);
        assert_eq!(l0_exception_bitmap(false), L0_EXCEPTION_BITMAP);
    }

    #[test]
    fn debug_exits() {
        let ac = AcContext::default();
        assert_eq!(decide(VALID | HW | 1, 0x1, 0, &ac), Intercepted::Debug { payload: 1, skip: None });
        assert_eq!(decide(VALID | PRIV_SW | 1, 0, 1, &ac), Intercepted::Debug { payload: 0, skip: Some(1) }, "ICEBP");
    }

    #[test]
    fn alignment_check_origin() {
        let user = AcContext { cpl: 3, cr0: CR0_AM | 1, rflags: RFLAGS_AC | 2 };
        assert_eq!(decide(VALID | HW | (1 << 11) | 17, 0, 0, &user), Intercepted::AlignmentCheck);
        for c in [
            AcContext { cpl: 0, ..user },
            AcContext { cr0: 1, ..user },
            AcContext { rflags: 2, ..user },
        ] {
            assert!(!alignment_check_enabled(&c));
            assert_eq!(decide(VALID | HW | (1 << 11) | 17, 0, 0, &c), Intercepted::ForeignAlignmentCheck);
        }
    }

    #[test]
    fn machine_check_and_others() {
        let ac = AcContext::default();
        assert_eq!(decide(VALID | HW | 18, 0, 0, &ac), Intercepted::MachineCheck);
        assert_eq!(decide(VALID | HW | 14, 0, 0, &ac), Intercepted::Unexpected);
        assert_eq!(decide(VALID | (6 << 8) | 3, 0, 1, &ac), Intercepted::Breakpoint { insn_len: 1 }, "INT3, when the VMM intercepts it");
    }

    #[test]
    fn dr6_as_kvm_computes_it() {
        // A data breakpoint on DR0 from the reset value.
        assert_eq!(dr6_after_db(0xffff_0ff0, 0x1), 0xffff_0ff1);
        // A single step: BS; the previous B0 replaced.
        assert_eq!(dr6_after_db(0xffff_0ff1, 1 << 14), 0xffff_4ff0);
        // BD and BS are sticky, B0-B3 are not.
        assert_eq!(dr6_after_db(0xffff_6ff3, 0x4), 0xffff_6ff4);
        // Bit 12 ("enabled breakpoint") of the payload never reaches DR6.
        assert_eq!(dr6_after_db(0xffff_0ff0, DR6_BIT12 | 0x2), 0xffff_0ff2);
        // ICEBP: no payload bits; B0-B3 cleared.
        assert_eq!(dr6_after_db(0xffff_0ff8, 0), 0xffff_0ff0);
        // RTM in the payload (a #DB inside a transaction) clears the active-low DR6.RTM.
        assert_eq!(dr6_after_db(0xffff_0ff0, DR6_RTM | 1), 0xfffe_0ff1);
    }
}
