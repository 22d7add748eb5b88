// SPDX-License-Identifier: GPL-2.0
//! The state transforms of a nested VM entry and VM exit, as pure functions of VMCS12 and
//! [`ArchState`]: what L2's state is after L1's VMLAUNCH/VMRESUME (SDM 27.3.2, 27.6), what
//! an L2 exit saves into VMCS12 (SDM 28.2, 28.3), what L1's state is after it (28.5), how
//! VMCS02's controls are made from L0's and VMCS12's (SDM 26 for what each control makes
//! exit), and what the CR read-back of an L2 exit means. The module carries them out; the
//! reference reading is KVM's `prepare_vmcs02`, `sync_vmcs02_to_vmcs12` and
//! `load_vmcs12_host_state` (arch/x86/kvm/vmx/nested.c).

use super::arch_state::{ArchState, Event, Rows, Seg, Segment, Vmcs, EFER_LMA, EFER_LME, EVENT_VALID, RFLAGS_FIXED, RSP};
use super::controls::{entry, exit as exit_ctl, pin, primary, secondary};
use super::debug_regs::DR7_FIXED_1;
use super::exception::vmcs02_exception_bitmap;
use super::field_table as f;
use super::segment::AR_UNUSABLE;
use super::vmcs12::Vmcs12;

/// The VM-exit information fields of an exit L1 gets (SDM 25.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit reason (bit 31: VM-entry failure).
    pub reason: u32,
    /// Exit qualification.
    pub qualification: u64,
    /// VM-exit interruption information and error code.
    pub intr_info: u32,
    /// VM-exit interruption error code.
    pub intr_error: u32,
    /// IDT-vectoring information and error code.
    pub idt_info: u32,
    /// IDT-vectoring error code.
    pub idt_error: u32,
    /// VM-exit instruction length.
    pub insn_len: u32,
    /// VM-exit instruction information.
    pub insn_info: u32,
    /// Guest linear address.
    pub linear: u64,
    /// Guest-physical address (EPT violations and misconfigurations).
    pub gpa: u64,
}

impl ExitInfo {
    /// Whether this is a VM-entry failure (SDM 27.8).
    pub const fn entry_failed(&self) -> bool {
        super::exit::ExitReason(self.reason).entry_failed()
    }
}

/// Basic exit reasons that carry a guest-physical address (SDM 28.2.1).
const EPT_VIOLATION: u16 = 48;
const EPT_MISCONFIG: u16 = 49;

/// L2's state after a VM entry that passed its checks (SDM 27.3.2 guest-state load, 27.6
/// event injection): VMCS12's guest-state area loaded over L1's state `s`, in place. The
/// GPRs but RSP stay L1's, which the entry does not change; so do CR2 and DR0-DR3/DR6.
pub fn load_l2_entry_state(v: &Vmcs12, s: &mut ArchState) {
    let en = v.get(f::VM_ENTRY_CONTROLS);
    s.load(v, Rows { efer: en & entry::LOAD_IA32_EFER != 0, pat: en & entry::LOAD_IA32_PAT != 0, dr7: false, cr_rflags: true });
    // SDM 27.3.2.1: without "load IA32_EFER", LMA (and LME when paging) follow the IA-32e
    // mode guest control.
    if en & entry::LOAD_IA32_EFER == 0 {
        let e = s.efer & !(EFER_LMA | EFER_LME);
        s.efer = if en & entry::IA32E_MODE_GUEST != 0 {
            e | EFER_LMA | if s.cr0 & (1 << 31) != 0 { EFER_LME } else { 0 }
        } else {
            e
        };
    }
    // "load debug controls" loads DR7 (bits 63:32 were checked), with its fixed bits.
    if en & entry::LOAD_DEBUG_CONTROLS != 0 {
        let _ = s.debug.write(7, v.get(f::GUEST_DR7), false);
    }
    let info = v.get(f::VM_ENTRY_INTR_INFO_FIELD);
    s.event = (info & EVENT_VALID != 0).then(|| Event {
        info,
        error_code: v.get(f::VM_ENTRY_EXCEPTION_ERROR_CODE),
        insn_len: v.get(f::VM_ENTRY_INSTRUCTION_LEN),
    });
}

/// SDM 28.3: L2's guest state into VMCS12, what the exit controls ask to save included;
/// the activity state is active (nvmx offers no other) and the IA-32e mode guest control
/// records EFER.LMA (IA32_VMX_MISC[5]).
pub fn save_l2(l2: &ArchState, v: &mut Vmcs12) {
    let ex = v.get(f::VM_EXIT_CONTROLS);
    l2.store(v, Rows {
        efer: ex & exit_ctl::SAVE_IA32_EFER != 0,
        pat: ex & exit_ctl::SAVE_IA32_PAT != 0,
        dr7: ex & exit_ctl::SAVE_DEBUG_CONTROLS != 0,
        cr_rflags: true,
    });
    v.set(f::GUEST_ACTIVITY_STATE, 0);
    let en = v.get(f::VM_ENTRY_CONTROLS) & !entry::IA32E_MODE_GUEST;
    v.set(f::VM_ENTRY_CONTROLS, en | if l2.long_mode() { entry::IA32E_MODE_GUEST } else { 0 });
}

/// SDM 28.2 (27.8 for entry failures): the exit-information fields. An entry failure
/// writes only the reason and qualification. Every VM exit clears the valid bit of the
/// VM-entry interruption-information field (SDM 28.2.5).
pub fn write_exit_info(v: &mut Vmcs12, info: &ExitInfo) {
    v.set(f::VM_EXIT_REASON, info.reason);
    v.set(f::EXIT_QUALIFICATION, info.qualification);
    if !info.entry_failed() {
        v.set(f::VM_EXIT_INTR_INFO, info.intr_info);
        v.set(f::VM_EXIT_INTR_ERROR_CODE, info.intr_error);
        v.set(f::IDT_VECTORING_INFO_FIELD, info.idt_info);
        v.set(f::IDT_VECTORING_ERROR_CODE, info.idt_error);
        v.set(f::VM_EXIT_INSTRUCTION_LEN, info.insn_len);
        v.set(f::VMX_INSTRUCTION_INFO, info.insn_info);
        v.set(f::GUEST_LINEAR_ADDRESS, info.linear);
        if matches!(super::exit::ExitReason(info.reason).basic(), EPT_VIOLATION | EPT_MISCONFIG) {
            v.set(f::GUEST_PHYSICAL_ADDRESS, info.gpa);
        }
    }
    let ei = v.get(f::VM_ENTRY_INTR_INFO_FIELD);
    v.set(f::VM_ENTRY_INTR_INFO_FIELD, ei & !EVENT_VALID);
}

/// An NMI for L1 that arrives while L2 runs, with L1's "NMI exiting" (SDM 25.6.1): the VM
/// exit it causes (SDM 26.2: exit reason 0, the interruption information of an NMI, vector
/// 2). Without the control the NMI is L2's, delivered through L2's IDT (SDM 26.3).
pub fn l1_nmi_exit(v: &Vmcs12) -> Option<ExitInfo> {
    if v.get(f::PIN_BASED_VM_EXEC_CONTROL) & pin::NMI_EXITING == 0 {
        return None;
    }
    let intr_info = super::exit::InterruptionInfo::event(super::exit::intr_kind::NMI, 2, false).0;
    Some(ExitInfo { reason: super::exit::reason::EXCEPTION_NMI.into(), intr_info, ..ExitInfo::default() })
}

/// Which of L1's own events L1's pin-based controls turn into VM exits while L2 runs (SDM
/// 25.6.1): those never reach L2. With a control clear the event is delivered through L2's
/// IDT instead (SDM 26.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1Intercepts {
    /// "NMI exiting".
    pub nmi: bool,
    /// "External-interrupt exiting": the local APIC's interrupts and the VMM's ExtINT.
    pub interrupts: bool,
}

impl L1Intercepts {
    /// From VMCS12's pin-based controls.
    pub fn of(v: &Vmcs12) -> Self {
        let p = v.get(f::PIN_BASED_VM_EXEC_CONTROL);
        Self { nmi: p & pin::NMI_EXITING != 0, interrupts: p & pin::EXT_INTR_EXITING != 0 }
    }
}

/// After an exit to L1 (once [`load_host_state`] ran): "An NMI causes subsequent NMIs to be
/// blocked, but only after the VM exit completes" (SDM 26.2) — an NMI exit leaves L1
/// NMI-blocked until its next IRET, as KVM's nested NMI exit does.
pub fn block_nmis_after_nmi_exit(info: &ExitInfo, s: &mut ArchState) {
    let i = super::exit::InterruptionInfo(info.intr_info);
    if !info.entry_failed()
        && super::exit::ExitReason(info.reason).basic() == super::exit::reason::EXCEPTION_NMI
        && i.valid()
        && i.kind() == super::exit::intr_kind::NMI
    {
        s.interruptibility |= super::vcpu_events::BLOCKING_NMI;
    }
}

/// SDM 28.5: L1's state after a VM exit — VMCS12's host-state area loaded over the state
/// `s` L2 left, in place (the GPRs but RSP, CR2 and DR0-DR3/DR6 stay what L2 had).
pub fn load_host_state(v: &Vmcs12, s: &mut ArchState) {
    let ex = v.get(f::VM_EXIT_CONTROLS);
    let host64 = ex & exit_ctl::HOST_ADDR_SPACE_SIZE != 0;
    s.cr0 = v.get(f::HOST_CR0) | (1 << 4); // ET is always 1 (SDM 28.5.1)
    s.cr3 = v.get(f::HOST_CR3);
    s.cr4 = v.get(f::HOST_CR4);
    s.efer = if ex & exit_ctl::LOAD_IA32_EFER != 0 {
        v.get(f::HOST_IA32_EFER)
    } else if host64 {
        s.efer | EFER_LMA | EFER_LME
    } else {
        s.efer & !(EFER_LMA | EFER_LME)
    };
    if ex & exit_ctl::LOAD_IA32_PAT != 0 {
        s.pat = v.get(f::HOST_IA32_PAT);
    }
    s.sysenter = [u64::from(v.get(f::HOST_IA32_SYSENTER_CS)), v.get(f::HOST_IA32_SYSENTER_ESP), v.get(f::HOST_IA32_SYSENTER_EIP)];
    // SDM 28.5.2. CS: execute/read accessed code, DPL 0, base 0, limit 4 GiB - 1, granular,
    // L = host address-space size, D = its complement.
    let code_ar = 0xb | (1 << 4) | (1 << 7) | ((host64 as u32) << 13) | ((!host64 as u32) << 14) | (1 << 15);
    s.segs[Seg::Cs as usize] = Segment { selector: v.get(f::HOST_CS_SELECTOR), base: 0, limit: 0xffff_ffff, ar: code_ar };
    // SS, DS, ES, FS, GS: read/write accessed data, unusable when the selector is null; the
    // FS and GS bases are loaded even then.
    let data = |sel: u16, base: u64| Segment {
        selector: sel,
        base,
        limit: 0xffff_ffff,
        ar: if sel == 0 { AR_UNUSABLE } else { 3 | (1 << 4) | (1 << 7) | (1 << 14) | (1 << 15) },
    };
    s.segs[Seg::Ss as usize] = data(v.get(f::HOST_SS_SELECTOR), 0);
    s.segs[Seg::Ds as usize] = data(v.get(f::HOST_DS_SELECTOR), 0);
    s.segs[Seg::Es as usize] = data(v.get(f::HOST_ES_SELECTOR), 0);
    s.segs[Seg::Fs as usize] = data(v.get(f::HOST_FS_SELECTOR), v.get(f::HOST_FS_BASE));
    s.segs[Seg::Gs as usize] = data(v.get(f::HOST_GS_SELECTOR), v.get(f::HOST_GS_BASE));
    // TR: busy 64-bit TSS, limit 67H; LDTR unusable.
    s.segs[Seg::Tr as usize] = Segment { selector: v.get(f::HOST_TR_SELECTOR), base: v.get(f::HOST_TR_BASE), limit: 0x67, ar: 0xb | (1 << 7) };
    s.segs[Seg::Ldtr as usize] = Segment { selector: 0, base: 0, limit: 0, ar: AR_UNUSABLE };
    s.gdtr.base = v.get(f::HOST_GDTR_BASE);
    s.gdtr.limit = 0xffff;
    s.idtr.base = v.get(f::HOST_IDTR_BASE);
    s.idtr.limit = 0xffff;
    s.rip = v.get(f::HOST_RIP);
    s.gprs[RSP] = v.get(f::HOST_RSP);
    s.rflags = RFLAGS_FIXED;
    s.interruptibility = 0;
    s.event = None;
    // SDM 28.5.1: DR7 is 400H after every VM exit.
    s.debug.dr7 = DR7_FIXED_1;
}

/// L1's state when the CPU refuses VMCS02 at the first entry (VMfailValid): as it was at
/// VMLAUNCH/VMRESUME (`at_entry`, RIP already past the instruction), with the GPRs it has.
pub fn l1_after_entry_vmfail(at_entry: &ArchState, now: &ArchState) -> ArchState {
    let mut gprs = now.gprs;
    gprs[RSP] = at_entry.gprs[RSP];
    ArchState { gprs, event: None, ..*at_entry }
}

/// The CR0/CR4 an L2 exit reads back from VMCS02 ([`super::arch_state::guest_view`] with
/// VMCS02's masks, which are L0's | L1's): for bits both L0 and L1 own, VMCS02's shadow holds
/// L1's shadow, not L2's value — keep the value L2 had (only L1 changes those). CR4 bits only
/// L1 owns come from the register itself.
pub fn l2_cr_readback(v: &Vmcs12, read: (u64, u64), before: (u64, u64), hw_cr4: u64, l0_masks: (u64, u64)) -> (u64, u64) {
    let (cr0, cr4) = read;
    let both0 = v.get(f::CR0_GUEST_HOST_MASK) & l0_masks.0;
    let cr0 = (cr0 & !both0) | (before.0 & both0);
    let m12 = v.get(f::CR4_GUEST_HOST_MASK);
    let l1_only = m12 & !l0_masks.1;
    let both4 = m12 & l0_masks.1;
    let cr4 = (cr4 & !(l1_only | both4)) | (hw_cr4 & l1_only) | (before.1 & both4);
    (cr0, cr4)
}

/// L0's controls for L2's state (VMCS01's setup), which the merge starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L0Controls {
    /// Pin-based, primary and secondary processor-based controls.
    pub pin: u32,
    /// Primary processor-based controls.
    pub primary: u32,
    /// Secondary processor-based controls.
    pub secondary: u32,
    /// CR0/CR4 guest/host masks.
    pub cr0_mask: u64,
    /// CR4 guest/host mask.
    pub cr4_mask: u64,
    /// CR0/CR4 read shadows (L2's values).
    pub cr0_shadow: u64,
    /// CR4 read shadow.
    pub cr4_shadow: u64,
    /// GUEST_CR0 as written ([`super::arch_state::hw_cr0`] under unrestricted guest).
    pub guest_cr0: u64,
    /// IA32_VMX_CR0_FIXED0 of the CPU.
    pub cr0_fixed0: u64,
    /// L0's TSC offset for L1.
    pub tsc_offset: u64,
    /// L0's EPT pointer (L2 without L1's EPT shares L1's guest-physical space).
    pub eptp: u64,
}

/// Host addresses of L1's pages that VMCS02 gives the CPU (looked up in L0's EPT).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vmcs02Pages {
    /// L1's virtual-APIC page, when VMCS12 uses the TPR shadow.
    pub virtual_apic: Option<u64>,
    /// L1's APIC-access page, when VMCS12 virtualizes APIC accesses.
    pub apic_access: Option<u64>,
    /// EPT02's pointer, when VMCS12 enables EPT.
    pub ept02: Option<u64>,
}

/// L1's primary controls that VMCS02 takes over as they are: each makes L2 exit where L1
/// asked (SDM 26.1.3); the I/O and MSR bitmaps are evaluated by nvmx instead (VMCS02 exits
/// on every I/O and MSR access), and TSC offsetting is folded into VMCS02's offset.
const PRIMARY_PASS: u32 = primary::INTR_WINDOW_EXITING | primary::HLT_EXITING | primary::INVLPG_EXITING
    | primary::MWAIT_EXITING | primary::RDPMC_EXITING | primary::RDTSC_EXITING
    | primary::CR3_LOAD_EXITING | primary::CR3_STORE_EXITING | primary::CR8_LOAD_EXITING
    | primary::CR8_STORE_EXITING | primary::NMI_WINDOW_EXITING | primary::MOV_DR_EXITING
    | primary::MONITOR_EXITING | primary::PAUSE_EXITING;

/// VMCS02 = L0's controls for L2's state with VMCS12's merged in, written into `out`. The
/// merge writes every control it derives, whatever VMCS12 asks (the pin-based controls and
/// EPT pointer too when they are L0's own), so a VMCS02 that once got L0's fixed controls
/// (exit controls, counts, link pointer) needs only this at each entry: no field is written
/// twice and none keeps a value of an earlier VMCS12.
pub fn merge_vmcs02(l0: &L0Controls, v: &Vmcs12, pages: &Vmcs02Pages, out: &mut impl Vmcs) {
    let prim12 = v.get(f::CPU_BASED_VM_EXEC_CONTROL);
    let sec12 = v.secondary_controls();
    let mut prim02 = l0.primary | (prim12 & PRIMARY_PASS);
    // L1's TPR shadow runs on the CPU, on L1's virtual-APIC page (SDM 30.1): L2's CR8 is
    // VTPR, not the host's TPR, so L0's CR8 exits are not needed — L2 exits on CR8 where L1
    // asked.
    if let Some(hpa) = pages.virtual_apic {
        const CR8_EXITS: u32 = primary::CR8_LOAD_EXITING | primary::CR8_STORE_EXITING;
        prim02 = (prim02 & !CR8_EXITS) | (prim12 & CR8_EXITS) | primary::TPR_SHADOW;
        out.put(f::VIRTUAL_APIC_PAGE_ADDR, hpa);
        out.put(f::TPR_THRESHOLD, v.get(f::TPR_THRESHOLD) & 0xf);
    }
    out.put(f::CPU_BASED_VM_EXEC_CONTROL, prim02);
    // NMI-window exiting needs virtual NMIs (SDM 26.2.1.1).
    let vnmi = if prim12 & primary::NMI_WINDOW_EXITING != 0 { pin::VIRTUAL_NMIS } else { 0 };
    out.put(f::PIN_BASED_VM_EXEC_CONTROL, l0.pin | vnmi);
    // No VPID (L2's translations never outlive an entry or exit); unrestricted guest only
    // where L1 gives it to L2 (it needs L1's EPT), else the CPU checks L2's state in full.
    let mut sec02 = (l0.secondary & !(secondary::ENABLE_VPID | secondary::UNRESTRICTED_GUEST))
        | (sec12 & (secondary::DESC_TABLE_EXITING | secondary::WBINVD_EXITING | secondary::UNRESTRICTED_GUEST));
    if let Some(hpa) = pages.apic_access {
        sec02 |= secondary::VIRTUALIZE_APIC_ACCESSES;
        out.put(f::APIC_ACCESS_ADDR, hpa);
    }
    out.put(f::SECONDARY_VM_EXEC_CONTROL, sec02);
    out.put(f::EPT_POINTER, pages.ept02.unwrap_or(l0.eptp));
    // L1's exceptions, with L0's always-intercepted ones on top.
    out.put(f::EXCEPTION_BITMAP, vmcs02_exception_bitmap(v.get(f::EXCEPTION_BITMAP)));
    out.put(f::PAGE_FAULT_ERROR_CODE_MASK, v.get(f::PAGE_FAULT_ERROR_CODE_MASK));
    out.put(f::PAGE_FAULT_ERROR_CODE_MATCH, v.get(f::PAGE_FAULT_ERROR_CODE_MATCH));
    // Without unrestricted guest CR0.PE/PG are fixed to 1 on VMCS02 (L2 has them: checked).
    let fixed = if sec02 & secondary::UNRESTRICTED_GUEST == 0 { l0.cr0_fixed0 } else { 0 };
    out.put(f::GUEST_CR0, l0.guest_cr0 | fixed);
    // CR0/CR4: bits L1 owns read as VMCS12's shadow; the others as L0 shows them.
    let m0 = v.get(f::CR0_GUEST_HOST_MASK);
    out.put(f::CR0_GUEST_HOST_MASK, l0.cr0_mask | m0);
    out.put(f::CR0_READ_SHADOW, (l0.cr0_shadow & !m0) | (v.get(f::CR0_READ_SHADOW) & m0));
    let m4 = v.get(f::CR4_GUEST_HOST_MASK);
    out.put(f::CR4_GUEST_HOST_MASK, l0.cr4_mask | m4);
    out.put(f::CR4_READ_SHADOW, (l0.cr4_shadow & !m4) | (v.get(f::CR4_READ_SHADOW) & m4));
    out.put(f::TSC_OFFSET, l2_tsc_offset(l0.tsc_offset, v));
}


/// L2's TSC offset: L0's for L1 plus L1's for L2 when L1 uses TSC offsetting.
pub fn l2_tsc_offset(l0: u64, v: &Vmcs12) -> u64 {
    if v.get(f::CPU_BASED_VM_EXEC_CONTROL) & primary::USE_TSC_OFFSETTING != 0 {
        l0.wrapping_add(v.get(f::TSC_OFFSET))
    } else {
        l0
    }
}

#[cfg(test)]
mod tests {
    use super::super::arch_state::DescriptorTable;
    use super::super::field::Field;
    use super::*;

    /// L1 in 64-bit mode, as KVM's selftests run it.
    fn l2_entry_state(v: &Vmcs12, l1: &ArchState) -> ArchState {
        let mut s = *l1;
        load_l2_entry_state(v, &mut s);
        s
    }

    fn l1_after_exit(v: &Vmcs12, l2: &ArchState) -> ArchState {
        let mut s = *l2;
        load_host_state(v, &mut s);
        s
    }

    fn l1() -> ArchState {
        let mut s = ArchState::reset();
        for (i, g) in s.gprs.iter_mut().enumerate() {
            *g = 0x100 + i as u64;
        }
        s.cr0 = 0x8000_0033;
        s.cr4 = 0x2020;
        s.efer = 0xd01;
        s.pat = 0x0007_0406_0007_0406;
        s.cr2 = 0xdead_0000;
        s.debug.db[0] = 0x1234;
        s
    }

    #[test]
    fn nmi_exit_to_l1_blocks_nmis() {
        let mut v = Vmcs12::default();
        assert_eq!(l1_nmi_exit(&v), None, "without NMI exiting the NMI is L2's");
        v.set(f::PIN_BASED_VM_EXEC_CONTROL, pin::NMI_EXITING | pin::EXT_INTR_EXITING);
        let info = l1_nmi_exit(&v).unwrap();
        assert_eq!((info.reason, info.intr_info, info.qualification), (0, 0x8000_0202, 0));
        let mut s = l1();
        s.interruptibility = 0;
        block_nmis_after_nmi_exit(&info, &mut s);
        assert_eq!(s.interruptibility, 8);
        // A hardware exception through exit reason 0, an entry failure: no NMI blocking.
        let mut s = l1();
        s.interruptibility = 0;
        let pf = ExitInfo { intr_info: 0x8000_0b0e, ..info };
        block_nmis_after_nmi_exit(&pf, &mut s);
        let failed = ExitInfo { reason: 0x8000_0021, ..info };
        block_nmis_after_nmi_exit(&failed, &mut s);
        assert_eq!(s.interruptibility, 0);
    }

    #[test]
    fn l1_intercepts_follow_pin_controls() {
        let mut v = Vmcs12::default();
        assert_eq!(L1Intercepts::of(&v), L1Intercepts { nmi: false, interrupts: false });
        v.set(f::PIN_BASED_VM_EXEC_CONTROL, pin::EXT_INTR_EXITING);
        assert_eq!(L1Intercepts::of(&v), L1Intercepts { nmi: false, interrupts: true });
        v.set(f::PIN_BASED_VM_EXEC_CONTROL, pin::NMI_EXITING | pin::VIRTUAL_NMIS);
        assert_eq!(L1Intercepts::of(&v), L1Intercepts { nmi: true, interrupts: false });
    }

    fn vmcs12_for_64bit_l2() -> Vmcs12 {
        let mut v = Vmcs12::default();
        v.set(f::VM_ENTRY_CONTROLS, entry::IA32E_MODE_GUEST);
        v.set(f::GUEST_CR0, 0x8000_0031);
        v.set(f::GUEST_CR3, 0x5000);
        v.set(f::GUEST_CR4, 0x2020);
        v.set(f::GUEST_RIP, 0x40_0000);
        v.set(f::GUEST_RSP, 0x80_0000);
        v.set(f::GUEST_RFLAGS, 0x2);
        v.set(f::GUEST_CS_SELECTOR, 8);
        v.set(f::GUEST_CS_AR_BYTES, 0xa09b);
        v.set(f::GUEST_CS_LIMIT, 0xffff_ffff);
        v.set(f::GUEST_TR_AR_BYTES, 0x8b);
        v.set(f::GUEST_GDTR_LIMIT, 0x7f);
        v.set(f::GUEST_IA32_PAT, 0x6);
        v.set(f::GUEST_DR7, 0x401);
        v
    }

    #[test]
    fn entry_loads_vmcs12_guest_state_and_keeps_the_gprs() {
        let v = vmcs12_for_64bit_l2();
        let s = l2_entry_state(&v, &l1());
        assert_eq!((s.rip, s.gprs[RSP], s.cr3), (0x40_0000, 0x80_0000, 0x5000));
        assert_eq!(s.gprs[0], 0x100, "RAX stays L1's");
        assert_eq!((s.cr2, s.debug.db[0]), (0xdead_0000, 0x1234));
        assert_eq!(s.seg(Seg::Cs).ar, 0xa09b);
        assert_eq!(s.gdtr, DescriptorTable { base: 0, limit: 0x7f });
        // No "load IA32_PAT" and no "load debug controls": L1's PAT and DR7 stay.
        assert_eq!((s.pat, s.debug.dr7), (0x0007_0406_0007_0406, 0x400));
        assert_eq!(s.event, None);
    }

    #[test]
    fn entry_efer_follows_the_ia32e_mode_control_without_load_efer() {
        // SDM 27.3.2.1: LMA = IA-32e mode guest; LME too when CR0.PG; the other bits stay.
        let v = vmcs12_for_64bit_l2();
        assert_eq!(l2_entry_state(&v, &l1()).efer, 0xd01);
        let mut l1_legacy = l1();
        l1_legacy.efer = 0x801; // NXE | SCE
        assert_eq!(l2_entry_state(&v, &l1_legacy).efer, 0xd01);
        let mut v32 = v.clone();
        v32.set(f::VM_ENTRY_CONTROLS, 0);
        assert_eq!(l2_entry_state(&v32, &l1()).efer, 0x801);
        let mut load = v.clone();
        load.set(f::VM_ENTRY_CONTROLS, entry::IA32E_MODE_GUEST | entry::LOAD_IA32_EFER);
        load.set(f::GUEST_IA32_EFER, 0x500);
        assert_eq!(l2_entry_state(&load, &l1()).efer, 0x500);
    }

    #[test]
    fn entry_loads_pat_dr7_and_the_event_when_asked() {
        let mut v = vmcs12_for_64bit_l2();
        v.set(f::VM_ENTRY_CONTROLS, entry::IA32E_MODE_GUEST | entry::LOAD_IA32_PAT | entry::LOAD_DEBUG_CONTROLS);
        v.set(f::VM_ENTRY_INTR_INFO_FIELD, 0x8000_0b0e); // #PF, hardware exception, error code
        v.set(f::VM_ENTRY_EXCEPTION_ERROR_CODE, 2);
        let s = l2_entry_state(&v, &l1());
        assert_eq!((s.pat, s.debug.dr7), (6, 0x401));
        assert_eq!(s.event, Some(Event { info: 0x8000_0b0e, error_code: 2, insn_len: 0 }));
    }

    #[test]
    fn exit_saves_l2_and_records_lma_in_the_entry_controls() {
        let mut v = vmcs12_for_64bit_l2();
        let mut l2 = l2_entry_state(&v, &l1());
        l2.rip = 0x40_0010;
        l2.gprs[RSP] = 0x7f_fff8;
        l2.pat = 0x77;
        l2.efer = 0x500; // L2 left IA-32e mode... as far as EFER says
        v.set(f::VM_EXIT_CONTROLS, exit_ctl::SAVE_IA32_PAT);
        save_l2(&l2, &mut v);
        assert_eq!((v.get(f::GUEST_RIP), v.get(f::GUEST_RSP)), (0x40_0010, 0x7f_fff8));
        assert_eq!(v.get(f::GUEST_IA32_PAT), 0x77);
        assert_eq!(v.get(f::GUEST_IA32_EFER), 0, "not saved without save IA32_EFER");
        assert_eq!(v.get(f::VM_ENTRY_CONTROLS) & entry::IA32E_MODE_GUEST, entry::IA32E_MODE_GUEST);
        l2.efer = 0;
        save_l2(&l2, &mut v);
        assert_eq!(v.get(f::VM_ENTRY_CONTROLS) & entry::IA32E_MODE_GUEST, 0);
    }

    #[test]
    fn exit_information_and_entry_failures() {
        let mut v = Vmcs12::default();
        v.set(f::VM_ENTRY_INTR_INFO_FIELD, 0x8000_0030);
        let info = ExitInfo { reason: EPT_VIOLATION.into(), qualification: 0x181, gpa: 0xabc000, linear: 0x1000, insn_len: 3, ..ExitInfo::default() };
        write_exit_info(&mut v, &info);
        assert_eq!((v.get(f::VM_EXIT_REASON), v.get(f::EXIT_QUALIFICATION)), (48, 0x181));
        assert_eq!((v.get(f::GUEST_PHYSICAL_ADDRESS), v.get(f::GUEST_LINEAR_ADDRESS)), (0xabc000, 0x1000));
        assert_eq!(v.get(f::VM_ENTRY_INTR_INFO_FIELD), 0x30, "valid bit cleared (SDM 28.2.5)");
        // An entry failure writes reason and qualification only (SDM 27.8).
        let mut w = Vmcs12::default();
        w.set(f::VM_EXIT_INSTRUCTION_LEN, 9);
        write_exit_info(&mut w, &ExitInfo { reason: (1 << 31) | 33, qualification: 2, insn_len: 5, ..ExitInfo::default() });
        assert_eq!((w.get(f::VM_EXIT_REASON), w.get(f::EXIT_QUALIFICATION)), ((1 << 31) | 33, 2));
        assert_eq!(w.get(f::VM_EXIT_INSTRUCTION_LEN), 9);
        // The GPA is written only for EPT exits.
        let mut c = Vmcs12::default();
        c.set(f::GUEST_PHYSICAL_ADDRESS, 7);
        write_exit_info(&mut c, &ExitInfo { reason: 10, gpa: 0x99, ..ExitInfo::default() });
        assert_eq!(c.get(f::GUEST_PHYSICAL_ADDRESS), 7);
    }

    #[test]
    fn host_state_load_is_sdm_28_5() {
        let mut v = vmcs12_for_64bit_l2();
        v.set(f::VM_EXIT_CONTROLS, exit_ctl::HOST_ADDR_SPACE_SIZE);
        v.set(f::HOST_CR0, 0x8000_0021);
        v.set(f::HOST_CR3, 0x9000);
        v.set(f::HOST_CR4, 0x2020);
        v.set(f::HOST_CS_SELECTOR, 0x10);
        v.set(f::HOST_SS_SELECTOR, 0x18);
        v.set(f::HOST_TR_SELECTOR, 0x40);
        v.set(f::HOST_TR_BASE, 0xffff_1000);
        v.set(f::HOST_FS_BASE, 0xf5);
        v.set(f::HOST_RIP, 0xc0de);
        v.set(f::HOST_RSP, 0x5ac0);
        let mut l2 = l2_entry_state(&v, &l1());
        l2.gprs[0] = 0xaaaa;
        l2.interruptibility = 1;
        l2.event = Some(Event::default());
        let s = l1_after_exit(&v, &l2);
        assert_eq!((s.cr0, s.cr3, s.rip, s.gprs[RSP], s.rflags), (0x8000_0031, 0x9000, 0xc0de, 0x5ac0, 2));
        assert_eq!(s.gprs[0], 0xaaaa, "L1's RAX is what L2 left");
        assert_eq!(s.efer & (EFER_LMA | EFER_LME), EFER_LMA | EFER_LME);
        assert_eq!(*s.seg(Seg::Cs), Segment { selector: 0x10, base: 0, limit: 0xffff_ffff, ar: 0xa09b });
        assert_eq!(s.seg(Seg::Ss).ar, 0xc093);
        assert!(s.seg(Seg::Ds).unusable() && s.seg(Seg::Ldtr).unusable());
        assert_eq!((s.seg(Seg::Fs).base, s.seg(Seg::Fs).unusable()), (0xf5, true), "base loaded with a null selector");
        assert_eq!(*s.seg(Seg::Tr), Segment { selector: 0x40, base: 0xffff_1000, limit: 0x67, ar: 0x8b });
        assert_eq!((s.gdtr.limit, s.idtr.limit), (0xffff, 0xffff));
        assert_eq!((s.interruptibility, s.event, s.debug.dr7), (0, None, 0x400));
        // A 32-bit host: CS.D, not CS.L; EFER.LMA/LME cleared.
        v.set(f::VM_EXIT_CONTROLS, 0);
        let s32 = l1_after_exit(&v, &l2);
        assert_eq!(s32.seg(Seg::Cs).ar, 0xc09b);
        assert_eq!(s32.efer & (EFER_LMA | EFER_LME), 0);
    }

    #[test]
    fn entry_vmfail_returns_to_l1_at_its_instruction() {
        let at = l1();
        let mut now = l2_entry_state(&vmcs12_for_64bit_l2(), &at);
        now.gprs[3] = 0xbb;
        let s = l1_after_entry_vmfail(&at, &now);
        assert_eq!((s.rip, s.cr3, s.gprs[RSP], s.gprs[3]), (at.rip, at.cr3, at.gprs[RSP], 0xbb));
    }

    #[test]
    fn cr_readback_keeps_the_bits_both_own() {
        let mut v = Vmcs12::default();
        // L1 owns CR0.TS (bit 3) and CR0.NE (bit 5, also L0's); CR4.PGE (7) and VMXE (13, L0's).
        v.set(f::CR0_GUEST_HOST_MASK, 0x28);
        v.set(f::CR4_GUEST_HOST_MASK, 0x2080);
        let l0 = (0xe000_0020, 0x2000);
        // Read with VMCS02's masks: NE came from VMCS02's shadow (L1's shadow said 0).
        let (cr0, cr4) = l2_cr_readback(&v, (0x8000_0011, 0x20), (0x8000_0031, 0x2020), 0xa0, l0);
        assert_eq!(cr0, 0x8000_0031, "NE as L2 had it");
        assert_eq!(cr4, 0x20a0, "PGE from the register, VMXE as L2 had it");
    }

    #[test]
    fn vmcs02_merge() {
        /// The writes of the merge, in order.
        #[derive(Default)]
        struct Writes(Vec<(Field, u64)>);
        impl Vmcs for Writes {
            fn read(&self, _: Field) -> u64 {
                unreachable!("the merge only writes")
            }
            fn write(&mut self, field: Field, value: u64) {
                self.0.push((field, value));
            }
        }
        let l0 = L0Controls {
            pin: 0x9,
            primary: 0x8400_0000 | primary::CR8_LOAD_EXITING | primary::CR8_STORE_EXITING,
            secondary: secondary::ENABLE_EPT | secondary::ENABLE_VPID | secondary::UNRESTRICTED_GUEST,
            cr0_mask: 0xe000_0020,
            cr4_mask: 0x2000,
            cr0_shadow: 0x8000_0031,
            cr4_shadow: 0x2020,
            guest_cr0: 0x8000_0031,
            cr0_fixed0: 0x8000_0021,
            tsc_offset: 100,
            eptp: 0x105e,
        };
        let mut v = Vmcs12::default();
        v.set(f::CPU_BASED_VM_EXEC_CONTROL, primary::HLT_EXITING | primary::USE_IO_BITMAPS | primary::USE_TSC_OFFSETTING | primary::NMI_WINDOW_EXITING);
        v.set(f::TSC_OFFSET, 5);
        v.set(f::CR0_GUEST_HOST_MASK, 0x8);
        v.set(f::CR0_READ_SHADOW, 0x8);
        let mut w = Writes::default();
        merge_vmcs02(&l0, &v, &Vmcs02Pages::default(), &mut w);
        let get = |field: Field| w.0.iter().find(|(x, _)| *x == field).map(|&(_, v)| v);
        let prim = get(f::CPU_BASED_VM_EXEC_CONTROL.field()).unwrap() as u32;
        assert_ne!(prim & primary::HLT_EXITING, 0);
        assert_eq!(prim & primary::USE_IO_BITMAPS, 0, "nvmx evaluates L1's bitmaps");
        assert_eq!(get(f::PIN_BASED_VM_EXEC_CONTROL.field()), Some((0x9 | pin::VIRTUAL_NMIS) as u64));
        let sec = get(f::SECONDARY_VM_EXEC_CONTROL.field()).unwrap() as u32;
        assert_eq!(sec & (secondary::ENABLE_VPID | secondary::UNRESTRICTED_GUEST), 0);
        assert_eq!(get(f::GUEST_CR0.field()), Some(0x8000_0031), "PE/PG fixed without unrestricted guest");
        assert_eq!(get(f::CR0_GUEST_HOST_MASK.field()), Some(0xe000_0028));
        assert_eq!(get(f::CR0_READ_SHADOW.field()), Some(0x8000_0039));
        assert_eq!(get(f::TSC_OFFSET.field()), Some(105));
        assert_eq!(get(f::EPT_POINTER.field()), Some(0x105e), "L0's EPT without L1's");
        // With L1's TPR shadow: VTPR page and threshold, L1's CR8 exits instead of L0's.
        let pages = Vmcs02Pages { virtual_apic: Some(0x7000), apic_access: Some(0x8000), ept02: Some(0x9000 | 0x5e) };
        v.set(f::TPR_THRESHOLD, 3);
        let mut w = Writes::default();
        merge_vmcs02(&l0, &v, &pages, &mut w);
        let get = |field: Field| w.0.iter().find(|(x, _)| *x == field).map(|&(_, v)| v);
        let prim = get(f::CPU_BASED_VM_EXEC_CONTROL.field()).unwrap() as u32;
        assert_eq!(prim & (primary::CR8_LOAD_EXITING | primary::CR8_STORE_EXITING), 0);
        assert_ne!(prim & primary::TPR_SHADOW, 0);
        assert_eq!((get(f::VIRTUAL_APIC_PAGE_ADDR.field()), get(f::TPR_THRESHOLD.field())), (Some(0x7000), Some(3)));
        assert_ne!(get(f::SECONDARY_VM_EXEC_CONTROL.field()).unwrap() as u32 & secondary::VIRTUALIZE_APIC_ACCESSES, 0);
        assert_eq!(get(f::EPT_POINTER.field()), Some(0x905e));
        assert_eq!(get(f::PIN_BASED_VM_EXEC_CONTROL.field()), Some(u64::from(0x9 | pin::VIRTUAL_NMIS)));
        // Without NMI-window exiting the pin controls are L0's, written all the same: VMCS02
        // must not keep the virtual NMIs of an earlier VMCS12.
        v.set(f::CPU_BASED_VM_EXEC_CONTROL, primary::HLT_EXITING);
        let mut w = Writes::default();
        merge_vmcs02(&l0, &v, &Vmcs02Pages::default(), &mut w);
        let get = |field: Field| w.0.iter().find(|(x, _)| *x == field).map(|&(_, v)| v);
        assert_eq!(get(f::PIN_BASED_VM_EXEC_CONTROL.field()), Some(0x9));
        assert_eq!(get(f::GUEST_CR0.field()), Some(0x8000_0031), "PE/PG fixed");
        // Under L1's unrestricted guest GUEST_CR0 is L2's (here real mode) as L0 wrote it.
        v.set(f::CPU_BASED_VM_EXEC_CONTROL, primary::HLT_EXITING | primary::SECONDARY_CONTROLS);
        v.set(f::SECONDARY_VM_EXEC_CONTROL, secondary::ENABLE_EPT | secondary::UNRESTRICTED_GUEST);
        let real_mode = L0Controls { guest_cr0: 0x30, ..l0 };
        let mut ug = Writes::default();
        merge_vmcs02(&real_mode, &v, &Vmcs02Pages::default(), &mut ug);
        assert!(ug.0.contains(&(f::GUEST_CR0.field(), 0x30)));
        // No field twice.
        let mut fields: Vec<Field> = w.0.iter().map(|&(x, _)| x).collect();
        fields.sort();
        let n = fields.len();
        fields.dedup();
        assert_eq!(fields.len(), n);
    }
}
