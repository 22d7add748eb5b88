// SPDX-License-Identifier: GPL-2.0
//! VM-exit information: basic exit reasons (SDM vol. 3D, appendix C) and the exit
//! qualifications nvmx decodes (SDM 28.2.1).

use super::bits::{bitfield, extract};

/// Basic exit reasons (SDM appendix C).
pub mod reason {
    /// Exception or NMI.
    pub const EXCEPTION_NMI: u16 = 0;
    /// External interrupt.
    pub const EXTERNAL_INTERRUPT: u16 = 1;
    /// Triple fault.
    pub const TRIPLE_FAULT: u16 = 2;
    /// INIT signal.
    pub const INIT: u16 = 3;
    /// Interrupt window (the guest can take an external interrupt now).
    pub const INTERRUPT_WINDOW: u16 = 7;
    /// NMI window (the guest can take an NMI now).
    pub const NMI_WINDOW: u16 = 8;
    /// CPUID.
    pub const CPUID: u16 = 10;
    /// HLT.
    pub const HLT: u16 = 12;
    /// INVD (always exits, SDM 26.1.2).
    pub const INVD: u16 = 13;
    /// INVLPG.
    pub const INVLPG: u16 = 14;
    /// RDPMC.
    pub const RDPMC: u16 = 15;
    /// RDTSC.
    pub const RDTSC: u16 = 16;
    /// VMCALL.
    pub const VMCALL: u16 = 18;
    /// VMCLEAR .. VMXON (19..=27) are the VMX instructions.
    pub const VMCLEAR: u16 = 19;
    /// VMLAUNCH.
    pub const VMLAUNCH: u16 = 20;
    /// VMPTRLD.
    pub const VMPTRLD: u16 = 21;
    /// VMPTRST.
    pub const VMPTRST: u16 = 22;
    /// VMREAD.
    pub const VMREAD: u16 = 23;
    /// VMRESUME.
    pub const VMRESUME: u16 = 24;
    /// VMWRITE.
    pub const VMWRITE: u16 = 25;
    /// VMXOFF.
    pub const VMXOFF: u16 = 26;
    /// VMXON.
    pub const VMXON: u16 = 27;
    /// Control-register access.
    pub const CR_ACCESS: u16 = 28;
    /// MOV DR.
    pub const DR_ACCESS: u16 = 29;
    /// I/O instruction.
    pub const IO_INSTRUCTION: u16 = 30;
    /// RDMSR.
    pub const RDMSR: u16 = 31;
    /// WRMSR.
    pub const WRMSR: u16 = 32;
    /// VM-entry failure due to a machine-check event.
    pub const MCE_DURING_VMENTRY: u16 = 41;
    /// VM-entry failure due to invalid guest state.
    pub const INVALID_GUEST_STATE: u16 = 33;
    /// VM-entry failure due to MSR loading.
    pub const MSR_LOADING: u16 = 34;
    /// MWAIT.
    pub const MWAIT: u16 = 36;
    /// TPR below threshold.
    pub const TPR_BELOW_THRESHOLD: u16 = 43;
    /// APIC access.
    pub const APIC_ACCESS: u16 = 44;
    /// MONITOR.
    pub const MONITOR: u16 = 39;
    /// PAUSE.
    pub const PAUSE: u16 = 40;
    /// EPT violation.
    pub const EPT_VIOLATION: u16 = 48;
    /// EPT misconfiguration.
    pub const EPT_MISCONFIG: u16 = 49;
    /// INVEPT.
    pub const INVEPT: u16 = 50;
    /// RDTSCP.
    pub const RDTSCP: u16 = 51;
    /// VMX-preemption timer expired.
    pub const PREEMPTION_TIMER: u16 = 52;
    /// WBINVD or WBNOINVD with WBINVD exiting.
    pub const WBINVD: u16 = 54;
    /// XSETBV.
    pub const XSETBV: u16 = 55;
    /// INVVPID.
    pub const INVVPID: u16 = 53;
    /// VMFUNC.
    pub const VMFUNC: u16 = 59;
}

bitfield! {
    /// The exit-reason field (SDM 25.9.1).
    pub struct ExitReason(u32) {
        /// Basic exit reason.
        basic, with_basic: 15:0 as u16;
        /// Bit 31: VM-entry failure.
        entry_failed, with_entry_failed: 31;
    }
}

impl ExitReason {
    /// A VM-entry failure with basic reason `basic` (SDM 27.8: bit 31 set).
    pub const fn entry_failure(basic: u16) -> Self {
        ExitReason(0).with_basic(basic).with_entry_failed(true)
    }

    /// Whether the basic reason is one of the VMX instructions that exit unconditionally in
    /// VMX non-root operation (VMCALL, VMCLEAR..VMXON, INVEPT, INVVPID, VMFUNC).
    pub const fn is_vmx_instruction(self) -> bool {
        let b = self.basic();
        b == reason::VMCALL
            || (b >= reason::VMCLEAR && b <= reason::VMXON)
            || b == reason::INVEPT
            || b == reason::INVVPID
            || b == reason::VMFUNC
    }
}

bitfield! {
    /// Exit qualification of an I/O instruction (SDM table 28-5).
    pub struct IoQualification(u64) {
        /// Size of access minus one (0: 1 byte, 1: 2 bytes, 3: 4 bytes).
        size_code, with_size_code: 2:0 as u8;
        /// IN (true) or OUT.
        is_in, with_in: 3;
        /// INS/OUTS.
        is_string, with_string: 4;
        /// REP prefixed.
        is_rep, with_rep: 5;
        /// Port number.
        port, with_port: 31:16 as u16;
    }
}

impl IoQualification {
    /// Access size in bytes (1, 2 or 4).
    pub const fn size(self) -> u8 {
        self.size_code() + 1
    }
}

/// Interruption types (SDM table 25-17, bits 10:8 of [`InterruptionInfo`]).
pub mod intr_kind {
    /// External interrupt.
    pub const EXTERNAL: u8 = 0;
    /// Reserved.
    pub const RESERVED: u8 = 1;
    /// Non-maskable interrupt.
    pub const NMI: u8 = 2;
    /// Hardware exception.
    pub const HW_EXCEPTION: u8 = 3;
    /// Software interrupt (INT n).
    pub const SW_INTERRUPT: u8 = 4;
    /// Privileged software exception (INT1).
    pub const PRIV_SW_EXCEPTION: u8 = 5;
    /// Software exception (INT3, INTO).
    pub const SW_EXCEPTION: u8 = 6;
    /// Other event (monitor trap flag, with vector 0).
    pub const OTHER: u8 = 7;
}

bitfield! {
    /// Interruption information: the VM-entry field (SDM 25.8.3, table 25-17), the VM-exit
    /// field (25.9.2) and the IDT-vectoring field (25.9.3) share this layout.
    pub struct InterruptionInfo(u32) {
        /// Vector of the interrupt or exception.
        vector, with_vector: 7:0 as u8;
        /// Interruption type ([`intr_kind`]).
        kind, with_kind: 10:8 as u8;
        /// Deliver (or delivered) an error code.
        deliver_error_code, with_deliver_error_code: 11;
        /// Exit fields: NMI unblocking due to IRET; undefined in the entry field.
        nmi_unblocking, with_nmi_unblocking: 12;
        /// Valid.
        valid, with_valid: 31;
    }
}

impl InterruptionInfo {
    /// A valid event of `kind` with `vector`, with an error code or not.
    pub const fn event(kind: u8, vector: u8, error_code: bool) -> Self {
        InterruptionInfo(0).with_valid(true).with_kind(kind).with_vector(vector).with_deliver_error_code(error_code)
    }
}

/// The address size of an INS/OUTS, from the VM-exit instruction-information field (SDM
/// table 28-8, bits 9:7): the mask that applies to RCX, RSI and RDI.
pub const fn string_io_addr_mask(instruction_info: u64) -> u64 {
    match extract(instruction_info, 9, 7) {
        0 => 0xffff,
        1 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// How many items of one INS/OUTS exit go to userspace at once: all that REP asks for
/// (`count`), but no more than the 4 KiB PIO page holds and no more than reach the end
/// (DF = 0) or the start (DF = 1) of the guest page at `linear`, so one translation serves
/// the batch — KVM batches the same way. At least one.
pub const fn string_io_batch(count: u64, size: u8, linear: u64, df: bool) -> u64 {
    let size = size as u64;
    let offset = linear & 0xfff;
    let in_page = if df { (offset / size) + 1 } else { (4096 - offset) / size };
    let mut n = count;
    if n > 4096 / size {
        n = 4096 / size;
    }
    if n > in_page {
        n = in_page;
    }
    if n == 0 { 1 } else { n }
}

/// A string-register update: `reg` moves by `delta` within the address size `mask` (a
/// 32-bit result zeroes bits 63:32, a 16-bit one keeps them, SDM vol. 1 3.4.1.1).
pub const fn string_reg_add(reg: u64, delta: i64, mask: u64) -> u64 {
    let v = reg.wrapping_add(delta as u64) & mask;
    if mask == 0xffff { (reg & !0xffff) | v } else { v }
}

/// What a control-register access did (SDM table 28-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrAccess {
    /// MOV to CR `cr` from general-purpose register `gpr`.
    MovTo {
        /// Control register number.
        cr: u8,
        /// Source register (0 = RAX ... 15 = R15).
        gpr: u8,
    },
    /// MOV from CR `cr` to general-purpose register `gpr`.
    MovFrom {
        /// Control register number.
        cr: u8,
        /// Destination register.
        gpr: u8,
    },
    /// CLTS.
    Clts,
    /// LMSW with the given 16-bit source.
    Lmsw(u16),
}

bitfield! {
    /// Exit qualification of a control-register access (SDM table 28-3).
    pub struct CrQualification(u64) {
        /// Number of the control register (0 for CLTS and LMSW).
        cr, with_cr: 3:0 as u8;
        /// Access type: 0 MOV to CR, 1 MOV from CR, 2 CLTS, 3 LMSW.
        access_type, with_access_type: 5:4 as u8;
        /// LMSW operand type: memory (true) or register.
        lmsw_memory, with_lmsw_memory: 6;
        /// The general-purpose register of a MOV CR (0 = RAX ... 15 = R15).
        gpr, with_gpr: 11:8 as u8;
        /// LMSW source data.
        lmsw_source, with_lmsw_source: 31:16 as u16;
    }
}

impl CrAccess {
    /// Decode a CR-access exit qualification.
    pub const fn decode(q: u64) -> CrAccess {
        let q = CrQualification(q);
        let (cr, gpr) = (q.cr(), q.gpr());
        match q.access_type() {
            0 => CrAccess::MovTo { cr, gpr },
            1 => CrAccess::MovFrom { cr, gpr },
            2 => CrAccess::Clts,
            _ => CrAccess::Lmsw(q.lmsw_source()),
        }
    }
}

/// Merge `size` bytes of `data` into `old` as IN does: 1- and 2-byte INs keep the upper bits
/// of RAX, a 4-byte IN zero-extends into RAX (SDM vol. 1, 3.4.1.1).
pub const fn merge_in(old: u64, data: u32, size: u8) -> u64 {
    match size {
        1 => (old & !0xff) | (data as u64 & 0xff),
        2 => (old & !0xffff) | (data as u64 & 0xffff),
        _ => data as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interruption_information_is_sdm_table_25_17() {
        // #GP with an error code: vector 13, type 3, bit 11, valid.
        let gp = InterruptionInfo::event(intr_kind::HW_EXCEPTION, 13, true);
        assert_eq!(gp.0, 0x8000_0b0d);
        assert_eq!((gp.valid(), gp.kind(), gp.vector(), gp.deliver_error_code()), (true, 3, 13, true));
        assert_eq!(InterruptionInfo::event(intr_kind::NMI, 2, false).0, 0x8000_0202);
        // An exit's NMI-unblocking bit is not part of the entry format.
        let exit = InterruptionInfo(0x8000_1202);
        assert!(exit.nmi_unblocking());
        assert_eq!(exit.with_nmi_unblocking(false).0, 0x8000_0202);
        assert!(!InterruptionInfo(0x0000_0b0d).valid());
    }

    #[test]
    fn io_qualification_fields() {
        // OUT DX, AL to port 0x3f8 (SDM table 28-5): size code 0, OUT, not string.
        let q = IoQualification(0x03f8_0000);
        assert_eq!((q.size(), q.is_in(), q.is_string(), q.port()), (1, false, false, 0x3f8));
        // REP INSD from port 0x1f0.
        let q = IoQualification(0x01f0_0000 | 0b11_1011);
        assert_eq!((q.size(), q.is_in(), q.is_string(), q.is_rep()), (4, true, true, true));
        assert_eq!(ExitReason(0x8000_0021).basic(), 33);
        assert!(ExitReason(0x8000_0021).entry_failed());
    }

    #[test]
    fn exit_reason_fields() {
        let r = ExitReason(0x8000_0021);
        assert!(r.entry_failed());
        assert_eq!(r.basic(), reason::INVALID_GUEST_STATE);
        assert!(!ExitReason(30).entry_failed());
        for b in [18u32, 19, 23, 27, 50, 53, 59] {
            assert!(ExitReason(b).is_vmx_instruction(), "{b}");
        }
        for b in [10u32, 12, 28, 30, 48, 52] {
            assert!(!ExitReason(b).is_vmx_instruction(), "{b}");
        }
    }

    #[test]
    fn io_qualification() {
        // OUT DX, AL to port 0x1000: size 0 (1 byte), direction 0, port 0x1000.
        let q = IoQualification(0x1000_0000);
        assert_eq!((q.size(), q.is_in(), q.port()), (1, false, 0x1000));
        // IN EAX, 0x60: size 3 (4 bytes), in, immediate operand (bit 6).
        let q = IoQualification(0x0060_0000 | 1 << 6 | 1 << 3 | 3);
        assert_eq!((q.size(), q.is_in(), q.port()), (4, true, 0x60));
        // REP OUTSW to 0x3f8.
        let q = IoQualification(0x03f8_0000 | 1 << 5 | 1 << 4 | 1);
        assert!(q.is_string() && q.is_rep() && !q.is_in());
        assert_eq!(string_io_addr_mask(0), 0xffff);
        assert_eq!(string_io_addr_mask(1 << 7), 0xffff_ffff);
        assert_eq!(string_io_addr_mask(2 << 7), u64::MAX);
        // Batches stop at the page end (DF=0) or start (DF=1) and at the PIO page.
        assert_eq!(string_io_batch(8192, 1, 0x1000, false), 4096);
        assert_eq!(string_io_batch(8192, 1, 0x1ffd, false), 3);
        assert_eq!(string_io_batch(2, 1, 0x1ffd, false), 2);
        assert_eq!(string_io_batch(100, 4, 0x1ff0, false), 4);
        assert_eq!(string_io_batch(100, 4, 0x100c, true), 4, "0x100c, 0x1008, 0x1004, 0x1000");
        assert_eq!(string_io_batch(100, 4, 0x1ffe, false), 1, "an item crossing the page: alone");
        assert_eq!(string_io_batch(0, 1, 0, false), 1);
        assert_eq!(string_reg_add(0xffff_ffff_0000_fffe, 3, 0xffff), 0xffff_ffff_0000_0001);
        assert_eq!(string_reg_add(0xffff_ffff_ffff_fffe, 3, 0xffff_ffff), 1);
        assert_eq!(string_reg_add(10, -4, u64::MAX), 6);
        assert_eq!(q.size(), 2);
    }

    #[test]
    fn cr_access() {
        assert_eq!(CrAccess::decode(0x0000_0300), CrAccess::MovTo { cr: 0, gpr: 3 });
        assert_eq!(CrAccess::decode(0x0000_0f14), CrAccess::MovFrom { cr: 4, gpr: 15 });
        assert_eq!(CrAccess::decode(0x20), CrAccess::Clts);
        assert_eq!(CrAccess::decode(0x0011_0030), CrAccess::Lmsw(0x11));
    }

    #[test]
    fn in_merges_like_hardware() {
        assert_eq!(merge_in(0x1122_3344_5566_7788, 0xab, 1), 0x1122_3344_5566_77ab);
        assert_eq!(merge_in(0x1122_3344_5566_7788, 0xabcd, 2), 0x1122_3344_5566_abcd);
        assert_eq!(merge_in(0x1122_3344_5566_7788, 0xdead_beef, 4), 0xdead_beef);
    }
}
