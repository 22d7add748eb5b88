// SPDX-License-Identifier: GPL-2.0
//! A vCPU's architectural state, and the one table that maps it to VMCS guest-state fields.
//!
//! [`ArchState`] is the processor state a VMCS guest-state area describes (SDM 25.4) plus the
//! general-purpose registers, which no VMCS holds. It has one owner at a time: outside an
//! IRQs-off region the vCPU's `ArchState` is the state; inside one, the loaded VMCS holds
//! every field of [`GUEST_STATE`] and the world switch's register array the GPRs, until the
//! region reads them back. Every transfer between the two — VMCS01/VMCS02 at region entry and
//! exit, VMCS12 at nested entry and exit — goes through [`ArchState::store`] and
//! [`ArchState::load`] over [`GUEST_STATE`], so a field is named once.
//!
//! CR0 and CR4 are the values the guest sees (its MOV from CR). What the hardware VMCS holds
//! in `GUEST_CR0`/`GUEST_CR4` differs by the bits the host forces (VMX operation's fixed
//! bits, [`hw_cr0`]); the read shadows give the guest's view back ([`guest_view`]).
//! Segment access rights are kept in the VMCS format (SDM 25.4.1, table 25-2):
//! `struct kvm_segment` exists only at the file-descriptor layer.

use super::debug_regs::DebugRegs;
use super::field::{Field, FieldValue, TypedField};
use super::field_table as f;
use super::segment::AR_UNUSABLE;

/// The segment registers in the order of their VMCS encodings (ES 0 ... TR 7, SDM app. B.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // the register names
pub enum Seg {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
    Ldtr = 6,
    Tr = 7,
}

/// One segment register: selector and the hidden part (SDM 25.4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Selector (visible part).
    pub selector: u16,
    /// Base address.
    pub base: u64,
    /// Segment limit in bytes (granularity applied).
    pub limit: u32,
    /// Access rights in the VMCS format (bit 16: unusable).
    pub ar: u32,
}

impl Segment {
    /// Whether the register is unusable (SDM 25.4.1).
    pub const fn unusable(&self) -> bool {
        self.ar & AR_UNUSABLE != 0
    }
    /// Descriptor privilege level (SS's is the CPL, SDM 25.4.1).
    pub const fn dpl(&self) -> u8 {
        ((self.ar >> 5) & 3) as u8
    }
    /// CS.L: 64-bit code.
    pub const fn long(&self) -> bool {
        self.ar & (1 << 13) != 0
    }
    /// CS.D/B: 32-bit default operand size.
    pub const fn default_big(&self) -> bool {
        self.ar & (1 << 14) != 0
    }
}

/// GDTR or IDTR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DescriptorTable {
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes.
    pub limit: u16,
}

/// An event the next VM entry injects (SDM 25.8.3): interruption information (valid bit set),
/// error code, and the instruction length for software events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// VM-entry interruption information (SDM table 25-17), valid bit set.
    pub info: u32,
    /// VM-entry exception error code.
    pub error_code: u32,
    /// VM-entry instruction length.
    pub insn_len: u32,
}

/// Interruption-information bit 31: valid.
pub const EVENT_VALID: u32 = 1 << 31;

impl Event {
    /// The event as VM entry can deliver it, where a VMM may have set it (KVM_SET_VCPU_EVENTS)
    /// for any mode: a hardware exception in real mode pushes no error code, and the CPU takes
    /// only bits 15:0 of one (SDM 27.2.1.3 refuses anything else; KVM strips both the same
    /// way, kvm_inject_exception and vmx_inject_exception).
    pub const fn for_entry(self, protected: bool) -> Event {
        let info = super::exit::InterruptionInfo(self.info);
        if !info.deliver_error_code() {
            return self;
        }
        if !protected {
            return Event { info: info.with_deliver_error_code(false).0, error_code: 0, ..self };
        }
        Event { error_code: self.error_code & 0xffff, ..self }
    }
}

/// The architectural state of a vCPU (L1's, or L2's while it runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchState {
    /// RAX..R15 in x86 register-number order (RSP is slot 4).
    pub gprs: [u64; 16],
    /// Instruction pointer.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// ES, CS, SS, DS, FS, GS, LDTR, TR ([`Seg`] order).
    pub segs: [Segment; 8],
    /// GDTR.
    pub gdtr: DescriptorTable,
    /// IDTR.
    pub idtr: DescriptorTable,
    /// CR0 and CR4 as the guest sees them.
    pub cr0: u64,
    /// CR2 is not VMCS state: the region loads it on the CPU around the guest's stretch.
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4 as the guest sees it.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// IA32_PAT.
    pub pat: u64,
    /// IA32_SYSENTER_CS, _ESP, _EIP.
    pub sysenter: [u64; 3],
    /// DR0-DR3, DR6 and DR7 (DR7 is VMCS state, the others are switched by the region).
    pub debug: DebugRegs,
    /// Guest interruptibility state (SDM 25.4.2, table 25-3).
    pub interruptibility: u32,
    /// An event to inject at the next entry.
    pub event: Option<Event>,
}

/// The register number of RSP.
pub const RSP: usize = 4;

/// EFER.LME: IA-32e mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: IA-32e mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 reads as 1 (SDM vol. 1 3.4.3).
pub const RFLAGS_FIXED: u64 = 1 << 1;
/// RFLAGS.DF (bit 10): string instructions step down.
pub const RFLAGS_DF: u64 = 1 << 10;
/// RFLAGS.VM (bit 17): virtual-8086 mode.
pub const RFLAGS_VM: u64 = 1 << 17;

/// One component of [`ArchState`] that a VMCS guest-state field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each names the ArchState component of the same name
pub enum StateField {
    Rsp,
    Rip,
    Rflags,
    Cr0,
    Cr3,
    Cr4,
    Dr7,
    Efer,
    Pat,
    Sysenter(usize),
    Interruptibility,
    GdtrBase,
    GdtrLimit,
    IdtrBase,
    IdtrLimit,
    Selector(Seg),
    Base(Seg),
    Limit(Seg),
    Ar(Seg),
}

/// The rows of the guest-state table, in VMCS-encoding groups (SDM app. B): every user of
/// the table ([`GUEST_STATE`], [`ArchState::store`], [`ArchState::load`]) is an expansion of
/// this one list, so that the transfers are straight-line code (each row a constant field and
/// a constant component) rather than a loop over a table with a match per row.
macro_rules! guest_state_table {
    ($expand:ident!($($arg:tt)*)) => {
        $expand!(($($arg)*) [
            (StateField::Rsp, f::GUEST_RSP),
            (StateField::Rip, f::GUEST_RIP),
            (StateField::Rflags, f::GUEST_RFLAGS),
            (StateField::Cr0, f::GUEST_CR0),
            (StateField::Cr3, f::GUEST_CR3),
            (StateField::Cr4, f::GUEST_CR4),
            (StateField::Dr7, f::GUEST_DR7),
            (StateField::Efer, f::GUEST_IA32_EFER),
            (StateField::Pat, f::GUEST_IA32_PAT),
            (StateField::Sysenter(0), f::GUEST_SYSENTER_CS),
            (StateField::Sysenter(1), f::GUEST_SYSENTER_ESP),
            (StateField::Sysenter(2), f::GUEST_SYSENTER_EIP),
            (StateField::Interruptibility, f::GUEST_INTERRUPTIBILITY_INFO),
            (StateField::GdtrBase, f::GUEST_GDTR_BASE),
            (StateField::GdtrLimit, f::GUEST_GDTR_LIMIT),
            (StateField::IdtrBase, f::GUEST_IDTR_BASE),
            (StateField::IdtrLimit, f::GUEST_IDTR_LIMIT),
            (StateField::Selector(Seg::Es), f::GUEST_ES_SELECTOR),
            (StateField::Base(Seg::Es), f::GUEST_ES_BASE),
            (StateField::Limit(Seg::Es), f::GUEST_ES_LIMIT),
            (StateField::Ar(Seg::Es), f::GUEST_ES_AR_BYTES),
            (StateField::Selector(Seg::Cs), f::GUEST_CS_SELECTOR),
            (StateField::Base(Seg::Cs), f::GUEST_CS_BASE),
            (StateField::Limit(Seg::Cs), f::GUEST_CS_LIMIT),
            (StateField::Ar(Seg::Cs), f::GUEST_CS_AR_BYTES),
            (StateField::Selector(Seg::Ss), f::GUEST_SS_SELECTOR),
            (StateField::Base(Seg::Ss), f::GUEST_SS_BASE),
            (StateField::Limit(Seg::Ss), f::GUEST_SS_LIMIT),
            (StateField::Ar(Seg::Ss), f::GUEST_SS_AR_BYTES),
            (StateField::Selector(Seg::Ds), f::GUEST_DS_SELECTOR),
            (StateField::Base(Seg::Ds), f::GUEST_DS_BASE),
            (StateField::Limit(Seg::Ds), f::GUEST_DS_LIMIT),
            (StateField::Ar(Seg::Ds), f::GUEST_DS_AR_BYTES),
            (StateField::Selector(Seg::Fs), f::GUEST_FS_SELECTOR),
            (StateField::Base(Seg::Fs), f::GUEST_FS_BASE),
            (StateField::Limit(Seg::Fs), f::GUEST_FS_LIMIT),
            (StateField::Ar(Seg::Fs), f::GUEST_FS_AR_BYTES),
            (StateField::Selector(Seg::Gs), f::GUEST_GS_SELECTOR),
            (StateField::Base(Seg::Gs), f::GUEST_GS_BASE),
            (StateField::Limit(Seg::Gs), f::GUEST_GS_LIMIT),
            (StateField::Ar(Seg::Gs), f::GUEST_GS_AR_BYTES),
            (StateField::Selector(Seg::Ldtr), f::GUEST_LDTR_SELECTOR),
            (StateField::Base(Seg::Ldtr), f::GUEST_LDTR_BASE),
            (StateField::Limit(Seg::Ldtr), f::GUEST_LDTR_LIMIT),
            (StateField::Ar(Seg::Ldtr), f::GUEST_LDTR_AR_BYTES),
            (StateField::Selector(Seg::Tr), f::GUEST_TR_SELECTOR),
            (StateField::Base(Seg::Tr), f::GUEST_TR_BASE),
            (StateField::Limit(Seg::Tr), f::GUEST_TR_LIMIT),
            (StateField::Ar(Seg::Tr), f::GUEST_TR_AR_BYTES),
        ])
    };
}

macro_rules! table_as_array {
    (() [$(($s:expr, $f:expr),)*]) => {
        [$(($s, $f.field())),*]
    };
}

macro_rules! store_rows {
    (($this:ident, $vmcs:ident, $rows:ident) [$(($s:expr, $f:expr),)*]) => {
        $(if $rows.includes($s) {
            $vmcs.write($f.field(), $this.get($s));
        })*
    };
}

macro_rules! load_rows {
    (($this:ident, $vmcs:ident, $rows:ident) [$(($s:expr, $f:expr),)*]) => {
        $(if $rows.includes($s) {
            $this.set($s, $vmcs.read($f.field()));
        })*
    };
}

/// The one mapping between [`ArchState`] and the VMCS guest-state area (SDM 25.4.1-25.4.2):
/// every transfer is an expansion of it.
pub const GUEST_STATE: [(StateField, Field); 49] = guest_state_table!(table_as_array!());

/// A VMCS as the transfers see it: the CPU's current VMCS (VMREAD/VMWRITE) or a VMCS12.
pub trait Vmcs {
    /// The field's value (zero-extended).
    fn read(&self, field: Field) -> u64;
    /// Set the field (truncated to its width).
    fn write(&mut self, field: Field, value: u64);

    /// A field of the table, as its width's type.
    #[inline(always)]
    fn get<T: FieldValue>(&self, field: TypedField<T>) -> T {
        T::from_operand(self.read(field.field()))
    }

    /// Set a field of the table.
    #[inline(always)]
    fn put<T: FieldValue>(&mut self, field: TypedField<T>, value: T) {
        self.write(field.field(), value.to_operand())
    }
}

impl Vmcs for super::vmcs12::Vmcs12 {
    #[inline(always)]
    fn read(&self, field: Field) -> u64 {
        super::vmcs12::Vmcs12::read(self, field.full()).unwrap_or(0)
    }
    #[inline(always)]
    fn write(&mut self, field: Field, value: u64) {
        let _ = super::vmcs12::Vmcs12::write(self, field.full(), value);
    }
}

/// Which [`GUEST_STATE`] rows a transfer moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rows {
    /// IA32_EFER (the "load/save IA32_EFER" controls decide it for VMCS12).
    pub efer: bool,
    /// IA32_PAT ("load/save IA32_PAT").
    pub pat: bool,
    /// DR7 ("load/save debug controls").
    pub dr7: bool,
    /// CR0, CR4 and RFLAGS as the guest sees them. A VMCS that L0 runs holds other values
    /// there (CR0 with NE forced, the CR4 fixed bits, RFLAGS bit 1), which its writer puts
    /// in itself, so that each field is written once.
    pub cr_rflags: bool,
}

impl Rows {
    /// Every row.
    pub const ALL: Rows = Rows { efer: true, pat: true, dr7: true, cr_rflags: true };
    /// Every row but CR0, CR4 and RFLAGS: the store into a VMCS that L0 runs.
    pub const FOR_HARDWARE: Rows = Rows { cr_rflags: false, ..Rows::ALL };

    #[inline(always)]
    const fn includes(self, s: StateField) -> bool {
        match s {
            StateField::Efer => self.efer,
            StateField::Pat => self.pat,
            StateField::Dr7 => self.dr7,
            StateField::Cr0 | StateField::Cr4 | StateField::Rflags => self.cr_rflags,
            _ => true,
        }
    }
}

impl ArchState {
    /// The value of one component, as its VMCS field holds it.
    #[inline(always)]
    pub const fn get(&self, s: StateField) -> u64 {
        match s {
            StateField::Rsp => self.gprs[RSP],
            StateField::Rip => self.rip,
            StateField::Rflags => self.rflags,
            StateField::Cr0 => self.cr0,
            StateField::Cr3 => self.cr3,
            StateField::Cr4 => self.cr4,
            StateField::Dr7 => self.debug.dr7,
            StateField::Efer => self.efer,
            StateField::Pat => self.pat,
            StateField::Sysenter(i) => self.sysenter[i],
            StateField::Interruptibility => self.interruptibility as u64,
            StateField::GdtrBase => self.gdtr.base,
            StateField::GdtrLimit => self.gdtr.limit as u64,
            StateField::IdtrBase => self.idtr.base,
            StateField::IdtrLimit => self.idtr.limit as u64,
            StateField::Selector(g) => self.segs[g as usize].selector as u64,
            StateField::Base(g) => self.segs[g as usize].base,
            StateField::Limit(g) => self.segs[g as usize].limit as u64,
            StateField::Ar(g) => self.segs[g as usize].ar as u64,
        }
    }

    /// Set one component from its VMCS field's value (truncated to the component's width,
    /// as the VMCS field is).
    #[inline(always)]
    pub fn set(&mut self, s: StateField, v: u64) {
        match s {
            StateField::Rsp => self.gprs[RSP] = v,
            StateField::Rip => self.rip = v,
            StateField::Rflags => self.rflags = v,
            StateField::Cr0 => self.cr0 = v,
            StateField::Cr3 => self.cr3 = v,
            StateField::Cr4 => self.cr4 = v,
            StateField::Dr7 => self.debug.dr7 = v,
            StateField::Efer => self.efer = v,
            StateField::Pat => self.pat = v,
            StateField::Sysenter(i) => self.sysenter[i] = v,
            StateField::Interruptibility => self.interruptibility = v as u32,
            StateField::GdtrBase => self.gdtr.base = v,
            StateField::GdtrLimit => self.gdtr.limit = v as u16,
            StateField::IdtrBase => self.idtr.base = v,
            StateField::IdtrLimit => self.idtr.limit = v as u16,
            StateField::Selector(g) => self.segs[g as usize].selector = v as u16,
            StateField::Base(g) => self.segs[g as usize].base = v,
            StateField::Limit(g) => self.segs[g as usize].limit = v as u32,
            StateField::Ar(g) => self.segs[g as usize].ar = v as u32,
        }
    }

    /// Write the `rows` of [`GUEST_STATE`] into `vmcs`.
    #[inline]
    pub fn store(&self, vmcs: &mut impl Vmcs, rows: Rows) {
        guest_state_table!(store_rows!(self, vmcs, rows));
    }

    /// Take the `rows` of [`GUEST_STATE`] from `vmcs` (the others, and the GPRs but RSP,
    /// stay).
    #[inline]
    pub fn load(&mut self, vmcs: &impl Vmcs, rows: Rows) {
        guest_state_table!(load_rows!(self, vmcs, rows));
    }

    /// One segment register.
    pub const fn seg(&self, s: Seg) -> &Segment {
        &self.segs[s as usize]
    }

    /// The current privilege level: SS.DPL (SDM 25.4.1).
    pub const fn cpl(&self) -> u8 {
        self.segs[Seg::Ss as usize].dpl()
    }

    /// IA-32e mode is active (EFER.LMA).
    pub const fn long_mode(&self) -> bool {
        self.efer & EFER_LMA != 0
    }

    /// The state after RESET (SDM vol. 3A 10.1.1, table 10-1), as KVM reports it before the
    /// first KVM_SET_*REGS: real mode at F000:FFF0, CD/NW/ET set, the power-up PAT.
    pub fn reset() -> Self {
        // Read/write data, accessed, present; limit 64 KiB (the real-mode hidden parts).
        let data = |selector: u16, base: u64| Segment { selector, base, limit: 0xffff, ar: 0x93 };
        ArchState {
            gprs: [0; 16],
            rip: 0xfff0,
            rflags: RFLAGS_FIXED,
            segs: [
                data(0, 0),
                Segment { ar: 0x9b, ..data(0xf000, 0xffff_0000) },
                data(0, 0),
                data(0, 0),
                data(0, 0),
                data(0, 0),
                // LDTR: an LDT, present; TR: a busy 32-bit TSS (VM entry requires busy).
                Segment { ar: 0x82, ..data(0, 0) },
                Segment { ar: 0x8b, ..data(0, 0) },
            ],
            gdtr: DescriptorTable { base: 0, limit: 0xffff },
            idtr: DescriptorTable { base: 0, limit: 0xffff },
            cr0: 0x6000_0010,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            efer: 0,
            pat: 0x0007_0406_0007_0406,
            sysenter: [0; 3],
            debug: DebugRegs::default(),
            interruptibility: 0,
            event: None,
        }
    }

    /// INIT (SDM vol. 3A 10.1, table 10-1 "INIT" column; KVM's kvm_vcpu_reset(init_event)):
    /// the registers as after RESET (EFER 0, as KVM sets it), with the MSRs that INIT leaves
    /// alone kept (PAT, SYSENTER).
    pub fn init(&self) -> Self {
        ArchState { pat: self.pat, sysenter: self.sysenter, ..ArchState::reset() }
    }

    /// A start-up IPI (SDM vol. 3A 10.4.4): real mode at `vector`:0000.
    pub fn sipi(&mut self, vector: u8) {
        let cs = &mut self.segs[Seg::Cs as usize];
        cs.selector = (vector as u16) << 8;
        cs.base = (vector as u64) << 12;
        self.rip = 0;
    }
}

/// What the hardware VMCS holds in `GUEST_CR0`: the guest's CR0 with the bits VMX operation
/// fixes to 1 (`fixed0`, PE/PG excepted under unrestricted guest, SDM 26.8) and CD/NW
/// cleared (KVM's KVM_VM_CR0_ALWAYS_OFF: the guest keeps its caching); the read shadow holds
/// the guest's own value.
pub const fn hw_cr0(cr0: u64, fixed0: u64, unrestricted: bool) -> u64 {
    const PE: u64 = 1;
    const PG: u64 = 1 << 31;
    const CD_NW: u64 = (1 << 30) | (1 << 29);
    let forced = if unrestricted { fixed0 & !(PE | PG) } else { fixed0 };
    (cr0 | forced) & !CD_NW
}

/// The guest's view of a control register: the host-owned bits (`mask`) from the read
/// shadow, the others from the register (SDM 25.6.6).
pub const fn guest_view(hw: u64, shadow: u64, mask: u64) -> u64 {
    (hw & !mask) | (shadow & mask)
}

#[cfg(test)]
mod tests {
    use super::super::vmcs12::Vmcs12;
    use super::*;

    fn sample() -> ArchState {
        let mut s = ArchState::reset();
        for (i, g) in s.gprs.iter_mut().enumerate() {
            *g = 0x1000 + i as u64;
        }
        s.rip = 0xffff_8000_0000_1234;
        s.rflags = 0x246;
        s.cr0 = 0x8005_0033;
        s.cr3 = 0x1234_5000;
        s.cr4 = 0x2020;
        s.efer = EFER_LME | EFER_LMA | 1;
        s.segs[Seg::Cs as usize] = Segment { selector: 8, base: 0, limit: 0xffff_ffff, ar: 0xa09b };
        s.segs[Seg::Fs as usize] = Segment { selector: 0, base: 0x7fff_0000, limit: 0, ar: AR_UNUSABLE };
        s.gdtr = DescriptorTable { base: 0xffff_f000, limit: 0x7f };
        s.sysenter = [0x10, 0x20, 0x30];
        s.interruptibility = 1;
        s.debug.dr7 = 0x401;
        s
    }

    #[test]
    fn the_table_names_every_guest_state_field_once() {
        for (i, (s, field)) in GUEST_STATE.iter().enumerate() {
            assert_eq!(field.kind(), super::super::field::Kind::GuestState, "{s:?}");
            for (t, other) in &GUEST_STATE[i + 1..] {
                assert_ne!(field, other, "{s:?} and {t:?}");
                assert_ne!(s, t);
            }
        }
    }

    #[test]
    fn store_then_load_is_the_identity_for_the_table() {
        let s = sample();
        let mut v = Vmcs12::default();
        s.store(&mut v, Rows::ALL);
        assert_eq!(v.get(f::GUEST_CS_AR_BYTES), 0xa09b);
        assert_eq!(v.get(f::GUEST_RSP), 0x1004);
        assert_eq!(v.get(f::GUEST_FS_BASE), 0x7fff_0000);
        assert_eq!(v.get(f::GUEST_DR7), 0x401);
        let mut back = ArchState { gprs: s.gprs, ..ArchState::reset() };
        back.load(&v, Rows::ALL);
        assert_eq!(back, s);
    }

    #[test]
    fn events_for_entry() {
        use super::super::exit::{intr_kind, InterruptionInfo};
        let gp = Event { info: InterruptionInfo::event(intr_kind::HW_EXCEPTION, 13, true).0, error_code: 0xdead_0018, insn_len: 0 };
        assert_eq!(gp.for_entry(true), Event { error_code: 0x0018, ..gp });
        let real = gp.for_entry(false);
        assert!(!InterruptionInfo(real.info).deliver_error_code());
        assert_eq!((InterruptionInfo(real.info).vector(), real.error_code), (13, 0));
        let irq = Event { info: InterruptionInfo::event(intr_kind::EXTERNAL, 0x30, false).0, ..Event::default() };
        assert_eq!(irq.for_entry(false), irq);
    }

    #[test]
    fn rows_leave_the_unselected_fields_alone() {
        let s = sample();
        let mut v = Vmcs12::default();
        v.set(f::GUEST_IA32_PAT, 7);
        s.store(&mut v, Rows { efer: true, pat: false, dr7: false, cr_rflags: true });
        assert_eq!(v.get(f::GUEST_IA32_PAT), 7);
        assert_eq!(v.get(f::GUEST_DR7), 0);
        let mut back = ArchState::reset();
        back.load(&v, Rows { efer: false, pat: true, dr7: false, cr_rflags: true });
        assert_eq!((back.efer, back.pat, back.debug.dr7), (0, 7, 0x400));
        // The store for a VMCS L0 runs leaves CR0, CR4 and RFLAGS to its writer.
        let mut hw = Vmcs12::default();
        hw.set(f::GUEST_CR0, 0x21);
        s.store(&mut hw, Rows::FOR_HARDWARE);
        assert_eq!((hw.get(f::GUEST_CR0), hw.get(f::GUEST_CR4), hw.get(f::GUEST_RFLAGS)), (0x21, 0, 0));
        assert_eq!(hw.get(f::GUEST_RSP), s.gprs[4]);
    }

    #[test]
    fn reset_is_table_10_1() {
        let s = ArchState::reset();
        assert_eq!((s.rip, s.rflags, s.cr0), (0xfff0, 2, 0x6000_0010));
        let cs = s.seg(Seg::Cs);
        assert_eq!((cs.selector, cs.base, cs.limit, cs.ar), (0xf000, 0xffff_0000, 0xffff, 0x9b));
        assert_eq!(s.seg(Seg::Tr).ar & 0xf, 0xb);
        assert_eq!((s.debug.dr6, s.debug.dr7), (0xffff_0ff0, 0x400));
        assert_eq!(s.cpl(), 0);
    }

    #[test]
    fn init_keeps_the_msrs_and_sipi_starts_at_the_vector() {
        let mut s = sample();
        s.pat = 6;
        let mut i = s.init();
        assert_eq!((i.efer, i.pat, i.sysenter), (0, 6, s.sysenter));
        assert_eq!((i.rip, i.cr0, i.gprs[0]), (0xfff0, 0x6000_0010, 0));
        i.sipi(0x9a);
        assert_eq!((i.seg(Seg::Cs).selector, i.seg(Seg::Cs).base, i.rip), (0x9a00, 0x9a000, 0));
    }

    #[test]
    fn hardware_cr0_and_the_guest_view() {
        // Fixed-0 = PE | NE | PG on a typical CPU.
        let fixed0 = 0x8000_0021;
        assert_eq!(hw_cr0(0x6000_0010, fixed0, true), 0x30);
        assert_eq!(hw_cr0(0x6000_0010, fixed0, false), 0x8000_0031);
        assert_eq!(guest_view(0x8000_0031, 0x6000_0010, 0xe000_0020), 0x6000_0011);
    }
}
