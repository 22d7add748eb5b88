// SPDX-License-Identifier: GPL-2.0
//! The checks of an emulated VMLAUNCH/VMRESUME on VMCS12 (nested VMX), in the
//! SDM's order (vol. 3C 27.2 and 27.3): VMX controls (failure: VMfailValid(7)), host state
//! (VMfailValid(8)), guest state (a VM-entry-failure exit to L1 with reason 33 and an exit
//! qualification, SDM 27.8). Each failure names the SDM rule, the field and its value, which
//! nvmx reports to the VMM.
//!
//! What is checked here is what L1 could get wrong without the CPU noticing on VMCS02 (the
//! controls are merged with L0's, the host state is L0's) plus the guest-state rules the
//! upstream tests depend on. The remaining guest-state rules (segment registers and
//! descriptor tables, SDM 27.3.1.2-27.3.1.3) are checked by the CPU on VMCS02, whose guest
//! segments are VMCS12's unchanged: an entry the CPU fails with reason 33 goes to L1 as the
//! same entry-failure exit (rust/nested.rs).

use super::controls::{cr0, cr4, entry, exit, pin, primary, secondary};
use super::exit::{intr_kind as kind, InterruptionInfo};
use super::field::{Field, Kind, TypedField};
use super::field_table as f;
use super::arch_state::RFLAGS_VM;
use super::nested_caps::L1VmxCaps;
use super::vmcs12::{Components, Vmcs12};

/// One failed rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed {
    /// SDM section of the rule.
    pub section: &'static str,
    /// The VMCS12 field that breaks it.
    pub field: Field,
    /// The field's value.
    pub value: u64,
    /// What the rule expects.
    pub rule: &'static str,
}

/// Why an emulated VM entry fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryFailure {
    /// VMfailValid(7): VM entry with invalid control field(s).
    Controls(Failed),
    /// VMfailValid(8): VM entry with invalid host-state field(s).
    HostState(Failed),
    /// VM-entry failure exit (reason 33, invalid guest state) with this exit qualification
    /// (SDM 27.8: 0 for most rules, 4 for the VMCS link pointer).
    GuestState(Failed, u64),
}

impl EntryFailure {
    /// The failed rule.
    pub fn failed(&self) -> &Failed {
        match self {
            EntryFailure::Controls(x) | EntryFailure::HostState(x) | EntryFailure::GuestState(x, _) => x,
        }
    }
}

/// What the checks need besides VMCS12 and L1's offered capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryEnv {
    /// L1's physical-address width.
    pub maxphyaddr: u8,
    /// L1's IA32_EFER.LMA when it executes VMLAUNCH/VMRESUME.
    pub l1_lma: bool,
}

/// Exit qualification of a VM-entry failure caused by the VMCS link pointer (SDM 27.8).
pub const QUAL_LINK_POINTER: u64 = 4;

const CR0_CD: u64 = 1 << 30;
const CR0_NW: u64 = 1 << 29;
const CR4_PCIDE: u64 = 1 << 17;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// EFER bits a guest may have: SCE, LME, LMA, NXE.
const EFER_VALID: u64 = 1 | (1 << 8) | (1 << 10) | (1 << 11);
const RFLAGS_IF: u64 = 1 << 9;

/// 48-bit canonical (sign extension of bit 47): L1 is not offered 5-level paging.
pub const fn canonical(a: u64) -> bool {
    ((a as i64) << 16 >> 16) as u64 == a
}

/// Every byte of a PAT value is a valid memory type (0, 1, 4, 5, 6, 7; SDM 13.12.2).
pub const fn valid_pat(pat: u64) -> bool {
    let mut i = 0;
    while i < 8 {
        let t = (pat >> (8 * i)) & 0xff;
        if !matches!(t, 0 | 1 | 4 | 5 | 6 | 7) {
            return false;
        }
        i += 1;
    }
    true
}

fn phys_ok(a: u64, maxphyaddr: u8) -> bool {
    maxphyaddr >= 64 || a >> maxphyaddr == 0
}

/// A 4-KByte aligned page address within the physical-address width (the bitmap and APIC
/// page rules of SDM 27.2.1.1).
fn page_ok(a: u64, maxphyaddr: u8) -> bool {
    a & 0xfff == 0 && phys_ok(a, maxphyaddr)
}

/// Run all checks. `read_u32` reads 4 bytes of L1 memory (VTPR in the virtual-APIC page, the
/// VMCS link pointer's region).
pub fn check(v: &Vmcs12, caps: &L1VmxCaps, env: &EntryEnv, read_u32: impl Fn(u64) -> Option<u32>) -> Result<(), EntryFailure> {
    check_controls(v, caps, env, &read_u32).map_err(EntryFailure::Controls)?;
    check_host(v, caps, env).map_err(EntryFailure::HostState)?;
    check_guest(v, caps, env, read_u32)
}

/// The components the control and host-state checks read: the control and host-state
/// fields, and the guest's CR0 (an injected exception's error code depends on CR0.PE,
/// SDM 27.2.1.3). A core test changes every other component and sees the same verdicts.
pub const CONTROL_AND_HOST_INPUTS: Components = {
    let mut c = Components::NONE;
    let mut i = 0;
    while i < f::ALL_FIELDS.len() {
        let field = f::ALL_FIELDS[i].1;
        if matches!(field.kind(), Kind::Control | Kind::HostState) || field.0 == f::GUEST_CR0.encoding() {
            c = c.with(i);
        }
        i += 1;
    }
    c
};

/// Whether the control checks read L1 memory (VTPR in the virtual-APIC page): their verdict
/// can then change with no VMCS12 component changing.
fn controls_read_memory(v: &Vmcs12) -> bool {
    let prim = v.get(f::CPU_BASED_VM_EXEC_CONTROL);
    let sec = v.secondary_controls();
    prim & primary::TPR_SHADOW != 0 && sec & secondary::VIRTUALIZE_APIC_ACCESSES == 0
}

/// [`check`] for the VMLAUNCH/VMRESUME of a VMCS12 that may have passed the checks before:
/// the control and host-state checks are pure functions of [`CONTROL_AND_HOST_INPUTS`], L1's
/// capabilities (fixed while L1 is in VMX operation, which a VMCS12 needs) and `env`, so
/// after they passed with this `env` (`proved`) and none of those components changed since,
/// they pass again and are skipped; the guest-state checks always run. KVM runs all of them
/// at every entry; an L1 hypervisor's VMRESUME loop changes guest state and exit information,
/// rarely a control.
pub fn check_changed(
    v: &mut Vmcs12,
    proved: &mut Option<EntryEnv>,
    caps: &L1VmxCaps,
    env: &EntryEnv,
    read_u32: impl Fn(u64) -> Option<u32>,
) -> Result<(), EntryFailure> {
    let changed = v.take_for_checks();
    let same = *proved == Some(*env) && !changed.intersects(&CONTROL_AND_HOST_INPUTS) && !controls_read_memory(v);
    *proved = None;
    if !same {
        check_controls(v, caps, env, &read_u32).map_err(EntryFailure::Controls)?;
        check_host(v, caps, env).map_err(EntryFailure::HostState)?;
    }
    *proved = Some(*env);
    check_guest(v, caps, env, read_u32)
}

fn fail(section: &'static str, field: impl Into<Field>, value: impl Into<u64>, rule: &'static str) -> Failed {
    Failed { section, field: field.into(), value: value.into(), rule }
}

macro_rules! require {
    ($cond:expr, $section:expr, $field:expr, $value:expr, $rule:expr) => {
        if !$cond {
            return Err(fail($section, $field, $value, $rule));
        }
    };
}

/// SDM 27.2.1: checks on VMX controls.
fn check_controls(v: &Vmcs12, caps: &L1VmxCaps, env: &EntryEnv, read_u32: impl Fn(u64) -> Option<u32>) -> Result<(), Failed> {
    let pin_ = v.get(f::PIN_BASED_VM_EXEC_CONTROL);
    let prim = v.get(f::CPU_BASED_VM_EXEC_CONTROL);
    let sec = v.secondary_controls();
    const S: &str = "27.2.1.1";
    require!(caps.pin.is_valid(pin_), S, f::PIN_BASED_VM_EXEC_CONTROL, pin_, "allowed by IA32_VMX_TRUE_PINBASED_CTLS");
    require!(caps.primary.is_valid(prim), S, f::CPU_BASED_VM_EXEC_CONTROL, prim, "allowed by IA32_VMX_TRUE_PROCBASED_CTLS");
    require!(caps.secondary.is_valid(sec), S, f::SECONDARY_VM_EXEC_CONTROL, sec, "allowed by IA32_VMX_PROCBASED_CTLS2");
    let count = v.get(f::CR3_TARGET_COUNT);
    require!(u64::from(count) <= (caps.misc >> 16) & 0x1ff, S, f::CR3_TARGET_COUNT, count, "at most IA32_VMX_MISC[24:16]");
    let page_ok = |a: u64| page_ok(a, env.maxphyaddr);
    if prim & primary::USE_IO_BITMAPS != 0 {
        for field in [f::IO_BITMAP_A, f::IO_BITMAP_B] {
            require!(page_ok(v.get(field)), S, field, v.get(field), "4-KByte aligned, within the physical-address width");
        }
    }
    if prim & primary::USE_MSR_BITMAPS != 0 {
        let a = v.get(f::MSR_BITMAP);
        require!(page_ok(a), S, f::MSR_BITMAP, a, "4-KByte aligned, within the physical-address width");
    }
    check_apic_virtualization(v, prim, sec, env, read_u32)?;
    let nmi = pin_ & pin::NMI_EXITING != 0;
    let vnmi = pin_ & pin::VIRTUAL_NMIS != 0;
    require!(nmi || !vnmi, S, f::PIN_BASED_VM_EXEC_CONTROL, pin_, "virtual NMIs only with NMI exiting");
    require!(vnmi || prim & primary::NMI_WINDOW_EXITING == 0, S, f::CPU_BASED_VM_EXEC_CONTROL, prim,
        "NMI-window exiting only with virtual NMIs");
    if sec & secondary::ENABLE_VPID != 0 {
        require!(v.get(f::VIRTUAL_PROCESSOR_ID) != 0, S, f::VIRTUAL_PROCESSOR_ID, 0u16, "non-zero when VPID is enabled");
    }
    if sec & secondary::UNRESTRICTED_GUEST != 0 {
        require!(sec & secondary::ENABLE_EPT != 0, S, f::SECONDARY_VM_EXEC_CONTROL, sec, "unrestricted guest only with EPT");
    }
    if sec & secondary::SHADOW_VMCS != 0 {
        for bitmap in [f::VMREAD_BITMAP, f::VMWRITE_BITMAP] {
            let a = v.get(bitmap);
            require!(page_ok(a), S, bitmap, a, "4-KByte aligned, within the physical-address width (VMCS shadowing)");
        }
    }
    if sec & secondary::ENABLE_EPT != 0 {
        let eptp = v.get(f::EPT_POINTER);
        require!(super::nested_ept::eptp_valid(eptp, caps.ept_vpid, env.maxphyaddr), S, f::EPT_POINTER, eptp,
            "an offered memory type and walk length, accessed/dirty only where offered, reserved bits zero");
    }

    // SDM 27.2.1.2: VM-exit control fields.
    let ex = v.get(f::VM_EXIT_CONTROLS);
    require!(caps.exit.is_valid(ex), "27.2.1.2", f::VM_EXIT_CONTROLS, ex, "allowed by IA32_VMX_TRUE_EXIT_CTLS");
    require!(ex & exit::SAVE_PREEMPTION_TIMER == 0 || pin_ & pin::PREEMPTION_TIMER != 0, "27.2.1.2",
        f::VM_EXIT_CONTROLS, ex, "save VMX-preemption timer value only with the timer activated");
    // SDM 27.2.1.3: VM-entry control fields.
    let en = v.get(f::VM_ENTRY_CONTROLS);
    require!(caps.entry.is_valid(en), "27.2.1.3", f::VM_ENTRY_CONTROLS, en, "allowed by IA32_VMX_TRUE_ENTRY_CTLS");
    for (count, addr) in [
        (f::VM_EXIT_MSR_STORE_COUNT, f::VM_EXIT_MSR_STORE_ADDR),
        (f::VM_EXIT_MSR_LOAD_COUNT, f::VM_EXIT_MSR_LOAD_ADDR),
        (f::VM_ENTRY_MSR_LOAD_COUNT, f::VM_ENTRY_MSR_LOAD_ADDR),
    ] {
        let (n, a) = (u64::from(v.get(count)), v.get(addr));
        if n != 0 {
            let last = a.wrapping_add(16 * n - 1);
            require!(a & 0xf == 0 && phys_ok(last, env.maxphyaddr), "27.2.1.2", addr, a,
                "16-byte aligned, the whole list within the physical-address width");
        }
    }
    check_event_injection(v)
}

/// SDM 27.2.1.1: the APIC-virtualization controls (TPR shadow, virtual-APIC page, TPR
/// threshold, virtualize x2APIC mode, APIC-access page). Virtual-interrupt delivery is not
/// offered, so the rules that hold without it apply.
fn check_apic_virtualization(v: &Vmcs12, prim: u32, sec: u32, env: &EntryEnv, read_u32: impl Fn(u64) -> Option<u32>) -> Result<(), Failed> {
    const S: &str = "27.2.1.1";
    let page_ok = |a: u64| page_ok(a, env.maxphyaddr);
    if prim & primary::TPR_SHADOW != 0 {
        let page = v.get(f::VIRTUAL_APIC_PAGE_ADDR);
        require!(page_ok(page), S, f::VIRTUAL_APIC_PAGE_ADDR, page, "4-KByte aligned, within the physical-address width");
        let threshold = v.get(f::TPR_THRESHOLD);
        require!(threshold >> 4 == 0, S, f::TPR_THRESHOLD, threshold, "bits 31:4 zero without virtual-interrupt delivery");
        if sec & secondary::VIRTUALIZE_APIC_ACCESSES == 0 {
            // An unreadable page is not checked here: VM entry cannot use it (rust/nested.rs
            // then exits to userspace, as KVM does).
            if let Some(vtpr) = read_u32(page + super::nested_apic::VTPR) {
                require!(threshold & 0xf <= (vtpr >> 4) & 0xf, S, f::TPR_THRESHOLD, threshold,
                    "bits 3:0 not above VTPR[7:4] without virtualized APIC accesses");
            }
        }
    } else {
        let needs_tpr = secondary::VIRTUALIZE_X2APIC | secondary::APIC_REGISTER_VIRT | secondary::VIRTUAL_INTR_DELIVERY;
        require!(sec & needs_tpr == 0, S, f::SECONDARY_VM_EXEC_CONTROL, sec,
            "virtualize x2APIC mode, APIC-register virtualization and virtual-interrupt delivery only with the TPR shadow");
    }
    require!(sec & secondary::VIRTUALIZE_X2APIC == 0 || sec & secondary::VIRTUALIZE_APIC_ACCESSES == 0, S,
        f::SECONDARY_VM_EXEC_CONTROL, sec, "virtualize x2APIC mode and virtualize APIC accesses not both");
    if sec & secondary::VIRTUALIZE_APIC_ACCESSES != 0 {
        let a = v.get(f::APIC_ACCESS_ADDR);
        require!(page_ok(a), S, f::APIC_ACCESS_ADDR, a, "4-KByte aligned, within the physical-address width");
    }
    Ok(())
}

/// SDM 27.2.1.3: the VM-entry interruption-information field.
fn check_event_injection(v: &Vmcs12) -> Result<(), Failed> {
    const S: &str = "27.2.1.3";
    let info = InterruptionInfo(v.get(f::VM_ENTRY_INTR_INFO_FIELD));
    if !info.valid() {
        return Ok(());
    }
    const F: TypedField<u32> = f::VM_ENTRY_INTR_INFO_FIELD;
    let (vector, event, deliver_code, raw) = (info.vector(), info.kind(), info.deliver_error_code(), info.0);
    require!(event != kind::RESERVED, S, F, raw, "interruption type not reserved (1)");
    require!(event != kind::NMI || vector == 2, S, F, raw, "an NMI has vector 2");
    require!(event != kind::HW_EXCEPTION || vector <= 31, S, F, raw, "a hardware exception has a vector up to 31");
    require!(event != kind::OTHER || vector == 0, S, F, raw, "type 7 (MTF) has vector 0");
    require!(event != kind::OTHER, S, F, raw, "other events (MTF) are not offered");
    let protected = v.get(f::GUEST_CR0) & cr0::PE != 0;
    let has_code = matches!(vector, 8 | 10..=14 | 17 | 21);
    require!(deliver_code == (protected && event == kind::HW_EXCEPTION && has_code), S, F, raw,
        "deliver-error-code set exactly for protected-mode hardware exceptions that push one");
    require!(raw & 0x7fff_f000 == 0, S, F, raw, "bits 30:12 zero");
    if deliver_code {
        let code = v.get(f::VM_ENTRY_EXCEPTION_ERROR_CODE);
        require!(code >> 15 == 0, S, f::VM_ENTRY_EXCEPTION_ERROR_CODE, code, "bits 31:15 zero");
    }
    if matches!(event, kind::SW_INTERRUPT | kind::PRIV_SW_EXCEPTION | kind::SW_EXCEPTION) {
        let len = v.get(f::VM_ENTRY_INSTRUCTION_LEN);
        require!((1..=15).contains(&len), S, f::VM_ENTRY_INSTRUCTION_LEN, len, "1 to 15 for software events");
    }
    Ok(())
}

/// SDM 27.2.2 and 27.2.3: checks on host control registers, MSRs and segments.
fn check_host(v: &Vmcs12, caps: &L1VmxCaps, env: &EntryEnv) -> Result<(), Failed> {
    const S: &str = "27.2.2";
    let c0 = v.get(f::HOST_CR0);
    let c4 = v.get(f::HOST_CR4);
    require!(caps.cr0.allows(c0), S, f::HOST_CR0, c0, "fixed bits of IA32_VMX_CR0_FIXED0/1");
    require!(caps.cr4.allows(c4), S, f::HOST_CR4, c4, "fixed bits of IA32_VMX_CR4_FIXED0/1");
    let c3 = v.get(f::HOST_CR3);
    require!(phys_ok(c3, env.maxphyaddr), S, f::HOST_CR3, c3, "no bit beyond the physical-address width");
    for field in [f::HOST_IA32_SYSENTER_ESP, f::HOST_IA32_SYSENTER_EIP] {
        require!(canonical(v.get(field)), S, field, v.get(field), "canonical");
    }
    let ex = v.get(f::VM_EXIT_CONTROLS);
    let host64 = ex & exit::HOST_ADDR_SPACE_SIZE != 0;
    if ex & exit::LOAD_IA32_PAT != 0 {
        let p = v.get(f::HOST_IA32_PAT);
        require!(valid_pat(p), S, f::HOST_IA32_PAT, p, "every byte a valid memory type");
    }
    if ex & exit::LOAD_IA32_EFER != 0 {
        let e = v.get(f::HOST_IA32_EFER);
        require!(e & !EFER_VALID == 0, S, f::HOST_IA32_EFER, e, "reserved bits zero");
        require!((e & EFER_LMA != 0) == host64 && (e & EFER_LME != 0) == host64, S, f::HOST_IA32_EFER, e,
            "LMA and LME equal to the host address-space size control");
    }
    const SEG: &str = "27.2.3";
    for field in [f::HOST_ES_SELECTOR, f::HOST_CS_SELECTOR, f::HOST_SS_SELECTOR, f::HOST_DS_SELECTOR,
                  f::HOST_FS_SELECTOR, f::HOST_GS_SELECTOR, f::HOST_TR_SELECTOR] {
        require!(v.get(field) & 7 == 0, SEG, field, v.get(field), "RPL and TI zero");
    }
    require!(v.get(f::HOST_CS_SELECTOR) != 0, SEG, f::HOST_CS_SELECTOR, 0u16, "not null");
    require!(v.get(f::HOST_TR_SELECTOR) != 0, SEG, f::HOST_TR_SELECTOR, 0u16, "not null");
    if !host64 {
        require!(v.get(f::HOST_SS_SELECTOR) != 0, SEG, f::HOST_SS_SELECTOR, 0u16, "not null outside a 64-bit host");
    }
    for field in [f::HOST_FS_BASE, f::HOST_GS_BASE, f::HOST_GDTR_BASE, f::HOST_IDTR_BASE, f::HOST_TR_BASE] {
        require!(canonical(v.get(field)), SEG, field, v.get(field), "canonical");
    }
    // SDM 27.2.4: address-space size.
    const AS: &str = "27.2.4";
    let ia32e_guest = v.get(f::VM_ENTRY_CONTROLS) & entry::IA32E_MODE_GUEST != 0;
    if !env.l1_lma {
        require!(!ia32e_guest, AS, f::VM_ENTRY_CONTROLS, v.get(f::VM_ENTRY_CONTROLS), "IA-32e guest only from an IA-32e host");
        require!(!host64, AS, f::VM_EXIT_CONTROLS, ex as u64, "host address-space size only from an IA-32e host");
    } else {
        require!(host64, AS, f::VM_EXIT_CONTROLS, ex as u64, "host address-space size set in IA-32e mode");
    }
    let rip = v.get(f::HOST_RIP);
    if host64 {
        require!(c4 & cr4::PAE != 0, AS, f::HOST_CR4, c4, "PAE set for a 64-bit host");
        require!(canonical(rip), AS, f::HOST_RIP, rip, "canonical");
    } else {
        require!(c4 & CR4_PCIDE == 0, AS, f::HOST_CR4, c4, "PCIDE clear outside a 64-bit host");
        require!(rip >> 32 == 0, AS, f::HOST_RIP, rip, "bits 63:32 zero outside a 64-bit host");
    }
    Ok(())
}

/// SDM 27.3.1: checks on the guest state (control registers, MSRs, RIP/RFLAGS,
/// non-register state). Failures are VM-entry-failure exits.
fn check_guest(v: &Vmcs12, caps: &L1VmxCaps, env: &EntryEnv, read_u32: impl Fn(u64) -> Option<u32>) -> Result<(), EntryFailure> {
    let g = |x: Failed| EntryFailure::GuestState(x, 0);
    check_guest_regs(v, caps, env).map_err(g)?;
    check_guest_non_register(v).map_err(g)?;
    // SDM 27.3.1.5: the VMCS link pointer: all ones, or a VMCS region with the revision in
    // bits 30:0 and the shadow-VMCS indicator (bit 31) equal to the "VMCS shadowing" control.
    let link = v.get(f::VMCS_LINK_POINTER);
    if link != u64::MAX {
        let sec = v.secondary_controls();
        let want = (caps.basic as u32 & 0x7fff_ffff) | if sec & secondary::SHADOW_VMCS != 0 { 1 << 31 } else { 0 };
        let ok = link & 0xfff == 0 && phys_ok(link, env.maxphyaddr) && read_u32(link).is_some_and(|r| r == want);
        if !ok {
            return Err(EntryFailure::GuestState(
                fail("27.3.1.5", f::VMCS_LINK_POINTER, link, "all ones, or a VMCS region of the right revision and shadow indicator"),
                QUAL_LINK_POINTER,
            ));
        }
    }
    Ok(())
}

fn check_guest_regs(v: &Vmcs12, caps: &L1VmxCaps, env: &EntryEnv) -> Result<(), Failed> {
    const S: &str = "27.3.1.1";
    let en = v.get(f::VM_ENTRY_CONTROLS);
    let sec = v.secondary_controls();
    let unrestricted = sec & secondary::UNRESTRICTED_GUEST != 0;
    let c0 = v.get(f::GUEST_CR0);
    let c4 = v.get(f::GUEST_CR4);
    // Unrestricted guest lifts PE and PG of CR0_FIXED0; CD/NW... are not fixed.
    let fixed0 = if unrestricted { caps.cr0.fixed0 & !(cr0::PE | cr0::PG) } else { caps.cr0.fixed0 };
    require!(c0 & fixed0 == fixed0 && c0 & !caps.cr0.fixed1 & !(CR0_CD | CR0_NW) == 0, S, f::GUEST_CR0, c0,
        "fixed bits of IA32_VMX_CR0_FIXED0/1");
    require!(c0 & cr0::PG == 0 || c0 & cr0::PE != 0, S, f::GUEST_CR0, c0, "PG only with PE");
    require!(caps.cr4.allows(c4), S, f::GUEST_CR4, c4, "fixed bits of IA32_VMX_CR4_FIXED0/1");
    if en & entry::LOAD_DEBUG_CONTROLS != 0 {
        let dr7 = v.get(f::GUEST_DR7);
        require!(dr7 >> 32 == 0, S, f::GUEST_DR7, dr7, "bits 63:32 zero");
    }
    let ia32e = en & entry::IA32E_MODE_GUEST != 0;
    if ia32e {
        require!(c0 & cr0::PG != 0, S, f::GUEST_CR0, c0, "PG set for an IA-32e guest");
        require!(c4 & cr4::PAE != 0, S, f::GUEST_CR4, c4, "PAE set for an IA-32e guest");
    } else {
        require!(c4 & CR4_PCIDE == 0, S, f::GUEST_CR4, c4, "PCIDE clear outside IA-32e mode");
    }
    let c3 = v.get(f::GUEST_CR3);
    require!(phys_ok(c3, env.maxphyaddr), S, f::GUEST_CR3, c3, "no bit beyond the physical-address width");
    for field in [f::GUEST_SYSENTER_ESP, f::GUEST_SYSENTER_EIP] {
        require!(canonical(v.get(field)), S, field, v.get(field), "canonical");
    }
    if en & entry::LOAD_IA32_PAT != 0 {
        let p = v.get(f::GUEST_IA32_PAT);
        require!(valid_pat(p), S, f::GUEST_IA32_PAT, p, "every byte a valid memory type");
    }
    if en & entry::LOAD_IA32_EFER != 0 {
        let e = v.get(f::GUEST_IA32_EFER);
        require!(e & !EFER_VALID == 0, S, f::GUEST_IA32_EFER, e, "reserved bits zero");
        require!((e & EFER_LMA != 0) == ia32e, S, f::GUEST_IA32_EFER, e, "LMA equal to the IA-32e mode guest control");
        require!(c0 & cr0::PG == 0 || (e & EFER_LMA != 0) == (e & EFER_LME != 0), S, f::GUEST_IA32_EFER, e,
            "LMA equal to LME when CR0.PG is set");
    }
    // SDM 27.3.1.4: RIP and RFLAGS.
    const R: &str = "27.3.1.4";
    let cs_l = v.get(f::GUEST_CS_AR_BYTES) & (1 << 13) != 0;
    let rip = v.get(f::GUEST_RIP);
    if !(ia32e && cs_l) {
        require!(rip >> 32 == 0, R, f::GUEST_RIP, rip, "bits 63:32 zero outside 64-bit mode");
    } else {
        require!(canonical(rip), R, f::GUEST_RIP, rip, "canonical in 64-bit mode");
    }
    let fl = v.get(f::GUEST_RFLAGS);
    require!(fl & !0x3f_ffff == 0 && fl & ((1 << 15) | (1 << 5) | (1 << 3)) == 0 && fl & 2 != 0, R, f::GUEST_RFLAGS, fl,
        "reserved bits 63:22, 15, 5, 3 zero and bit 1 set");
    if ia32e || c0 & cr0::PE == 0 {
        require!(fl & RFLAGS_VM == 0, R, f::GUEST_RFLAGS, fl, "VM clear in IA-32e mode and real mode");
    }
    let info = InterruptionInfo(v.get(f::VM_ENTRY_INTR_INFO_FIELD));
    if info.valid() && info.kind() == kind::EXTERNAL {
        require!(fl & RFLAGS_IF != 0, R, f::GUEST_RFLAGS, fl, "IF set when injecting an external interrupt");
    }
    Ok(())
}

/// SDM 27.3.1.5: activity and interruptibility state, pending debug exceptions.
fn check_guest_non_register(v: &Vmcs12) -> Result<(), Failed> {
    const S: &str = "27.3.1.5";
    let act = v.get(f::GUEST_ACTIVITY_STATE);
    // IA32_VMX_MISC offers no activity state but active (0).
    require!(act == 0, S, f::GUEST_ACTIVITY_STATE, act, "active (no other activity state is offered)");
    let intr = v.get(f::GUEST_INTERRUPTIBILITY_INFO);
    const F: TypedField<u32> = f::GUEST_INTERRUPTIBILITY_INFO;
    require!(intr >> 5 == 0, S, F, intr, "bits 31:5 zero");
    require!(intr & 3 != 3, S, F, intr, "not both STI and MOV-SS blocking");
    if v.get(f::GUEST_RFLAGS) & RFLAGS_IF == 0 {
        require!(intr & 1 == 0, S, F, intr, "no STI blocking with RFLAGS.IF clear");
    }
    let info = InterruptionInfo(v.get(f::VM_ENTRY_INTR_INFO_FIELD));
    if info.valid() {
        if info.kind() == kind::EXTERNAL {
            require!(intr & 3 == 0, S, F, intr, "no STI/MOV-SS blocking when injecting an external interrupt");
        }
        if info.kind() == kind::NMI {
            require!(intr & 2 == 0, S, F, intr, "no MOV-SS blocking when injecting an NMI");
        }
    }
    require!(intr & 4 == 0, S, F, intr, "no SMI blocking outside SMM");
    let pde = v.get(f::GUEST_PENDING_DBG_EXCEPTIONS);
    require!(pde & !0x1_500f == 0, S, f::GUEST_PENDING_DBG_EXCEPTIONS, pde, "reserved bits zero");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> L1VmxCaps {
        L1VmxCaps::offer(&super::super::host::skylake_caps(), 0x2e)
    }

    const ENV: EntryEnv = EntryEnv { maxphyaddr: 39, l1_lma: true };

    /// The VMCS12 the upstream selftest library's prepare_vmcs() builds (lib/x86/vmx.c).
    fn selftest_vmcs12(c: &L1VmxCaps) -> Vmcs12 {
        let mut v = Vmcs12::default();
        v.set(f::PIN_BASED_VM_EXEC_CONTROL, c.pin.must_be_one);
        v.set(f::CPU_BASED_VM_EXEC_CONTROL, c.primary.must_be_one | primary::SECONDARY_CONTROLS);
        v.set(f::VM_EXIT_CONTROLS, (0x36dff | exit::HOST_ADDR_SPACE_SIZE) & c.exit.may_be_one);
        v.set(f::VM_ENTRY_CONTROLS, 0x11ff | entry::IA32E_MODE_GUEST);
        v.set(f::HOST_CR0, 0x8005_0033);
        v.set(f::HOST_CR4, 0x2020);
        v.set(f::HOST_CR3, 0x10_0000);
        v.set(f::HOST_CS_SELECTOR, 8);
        v.set(f::HOST_SS_SELECTOR, 0x10);
        v.set(f::HOST_TR_SELECTOR, 0x18);
        v.set(f::HOST_RIP, 0x40_1000);
        v.set(f::GUEST_CR0, 0x8005_0033);
        v.set(f::GUEST_CR4, 0x2020);
        v.set(f::GUEST_CR3, 0x10_0000);
        v.set(f::GUEST_CS_AR_BYTES, 0xa09b);
        v.set(f::GUEST_RIP, 0x40_2000);
        v.set(f::GUEST_RFLAGS, 2);
        v.set(f::VMCS_LINK_POINTER, u64::MAX);
        v.set(f::GUEST_IA32_PAT, 0x0007_0406_0007_0406);
        v.set(f::HOST_IA32_PAT, 0x0007_0406_0007_0406);
        v.set(f::GUEST_IA32_EFER, 0x500);
        v.set(f::HOST_IA32_EFER, 0x500);
        v
    }

    fn run(v: &Vmcs12) -> Result<(), EntryFailure> {
        check(v, &caps(), &ENV, |_| None)
    }

    /// Control and host-state verdicts of `v` (the guest-state checks are not pure in
    /// VMCS12's controls, so they are left out).
    fn controls_and_host(v: &Vmcs12) -> (Result<(), Failed>, Result<(), Failed>) {
        (check_controls(v, &caps(), &ENV, |_| None), check_host(v, &caps(), &ENV))
    }

    #[test]
    fn control_and_host_checks_read_only_their_inputs() {
        // Starting from a passing and from failing VMCS12s, no component outside
        // CONTROL_AND_HOST_INPUTS changes the two verdicts, whatever its value.
        let c = caps();
        let mut bases = [selftest_vmcs12(&c), selftest_vmcs12(&c), selftest_vmcs12(&c)];
        bases[1].set(f::VM_ENTRY_INTR_INFO_FIELD, (1 << 31) | (3 << 8) | 13);
        bases[2].set(f::HOST_RIP, 1 << 63);
        for base in &bases {
            let want = controls_and_host(base);
            for (i, &(name, field)) in f::ALL_FIELDS.iter().enumerate() {
                if CONTROL_AND_HOST_INPUTS.contains(i) {
                    continue;
                }
                for value in [0, 1, 0xffff_ffff, u64::MAX, 1 << 63] {
                    let mut v = base.clone();
                    v.write(field, value).unwrap();
                    assert_eq!(controls_and_host(&v), want, "{name} = {value:#x}");
                }
            }
        }
    }

    #[test]
    fn unchanged_controls_and_host_state_are_not_checked_again() {
        let c = caps();
        let mut v = selftest_vmcs12(&c);
        let mut proved = None;
        assert_eq!(check_changed(&mut v, &mut proved, &c, &ENV, |_| None), Ok(()));
        assert_eq!(proved, Some(ENV));
        // Writing the same values is no change: still proved, and the verdict stands.
        v.set(f::PIN_BASED_VM_EXEC_CONTROL, v.get(f::PIN_BASED_VM_EXEC_CONTROL));
        v.set(f::GUEST_RIP, 0x40_3000);
        assert!(!v.take_for_checks().intersects(&CONTROL_AND_HOST_INPUTS));
        assert_eq!(check_changed(&mut v, &mut proved, &c, &ENV, |_| None), Ok(()));
        // A changed control is checked (and fails), and the proof is gone.
        v.set(f::CR3_TARGET_COUNT, 1);
        assert!(matches!(check_changed(&mut v, &mut proved, &c, &ENV, |_| None), Err(EntryFailure::Controls(_))));
        assert_eq!(proved, None);
        // Mended, it passes; a changed host field is checked.
        v.set(f::CR3_TARGET_COUNT, 0);
        assert_eq!(check_changed(&mut v, &mut proved, &c, &ENV, |_| None), Ok(()));
        v.set(f::HOST_RIP, 1 << 63);
        assert!(matches!(check_changed(&mut v, &mut proved, &c, &ENV, |_| None), Err(EntryFailure::HostState(_))));
        v.set(f::HOST_RIP, 0x40_1000);
        assert_eq!(check_changed(&mut v, &mut proved, &c, &ENV, |_| None), Ok(()));
        // Guest state is checked every time.
        v.set(f::GUEST_CR3, u64::MAX);
        assert!(matches!(check_changed(&mut v, &mut proved, &c, &ENV, |_| None), Err(EntryFailure::GuestState(..))));
        v.set(f::GUEST_CR3, 0x10_0000);
        // A changed environment (L1 left IA-32e mode) re-checks the host state.
        let legacy = EntryEnv { l1_lma: false, ..ENV };
        assert!(matches!(check_changed(&mut v, &mut proved, &c, &legacy, |_| None), Err(EntryFailure::HostState(_))));
    }

    #[test]
    fn a_shadow_vmcs_copy_is_no_change_for_the_shadow_but_one_for_the_checks() {
        let c = caps();
        let mut v = selftest_vmcs12(&c);
        let _ = (v.take_for_shadow(), v.take_for_checks());
        let i = super::super::vmcs12::component(f::CR3_TARGET_COUNT).unwrap();
        v.set_raw(i, 1);
        assert_eq!(v.take_for_shadow(), Components::NONE);
        let mut proved = Some(ENV);
        assert!(matches!(check_changed(&mut v, &mut proved, &c, &ENV, |_| None), Err(EntryFailure::Controls(_))));
    }

    #[test]
    fn controls_that_read_l1_memory_are_always_checked() {
        // TPR shadow without virtualized APIC accesses: TPR_THRESHOLD[3:0] against VTPR[7:4],
        // which L1 changes in memory without a VMWRITE.
        let c = caps();
        let mut v = selftest_vmcs12(&c);
        v.set(f::CPU_BASED_VM_EXEC_CONTROL, v.get(f::CPU_BASED_VM_EXEC_CONTROL) | primary::TPR_SHADOW);
        v.set(f::VIRTUAL_APIC_PAGE_ADDR, 0x5000);
        v.set(f::TPR_THRESHOLD, 4);
        let mut proved = None;
        assert_eq!(check_changed(&mut v, &mut proved, &c, &ENV, |_| Some(0x50)), Ok(()));
        assert!(matches!(check_changed(&mut v, &mut proved, &c, &ENV, |_| Some(0x30)), Err(EntryFailure::Controls(_))));
    }

    #[test]
    fn the_selftest_library_vmcs_passes() {
        assert_eq!(run(&selftest_vmcs12(&caps())), Ok(()));
    }

    #[test]
    fn invalid_guest_cr3_is_an_entry_failure_exit() {
        // nested_invalid_cr3_test: GUEST_CR3 = -1.
        let mut v = selftest_vmcs12(&caps());
        v.set(f::GUEST_CR3, u64::MAX);
        assert!(matches!(run(&v), Err(EntryFailure::GuestState(Failed { field, .. }, 0)) if field == f::GUEST_CR3));
    }

    #[test]
    fn preemption_timer_save_needs_the_timer() {
        let c = caps();
        assert!(c.pin.allows(pin::PREEMPTION_TIMER) && c.exit.allows(exit::SAVE_PREEMPTION_TIMER));
        let mut v = selftest_vmcs12(&c);
        let ex = v.get(f::VM_EXIT_CONTROLS) | exit::SAVE_PREEMPTION_TIMER;
        v.set(f::VM_EXIT_CONTROLS, ex);
        match run(&v) {
            Err(EntryFailure::Controls(x)) => assert!(x.field == f::VM_EXIT_CONTROLS && x.rule.contains("preemption")),
            other => panic!("{other:?}"),
        }
        v.set(f::PIN_BASED_VM_EXEC_CONTROL, v.get(f::PIN_BASED_VM_EXEC_CONTROL) | pin::PREEMPTION_TIMER);
        assert_eq!(run(&v), Ok(()));
    }

    #[test]
    fn control_failures_are_vmfail_7() {
        let c = caps();
        let base = selftest_vmcs12(&c);
        let cases: [(Field, u64); 6] = [
            // A pin control nvmx does not offer (posted interrupts).
            (f::PIN_BASED_VM_EXEC_CONTROL.field(), (c.pin.must_be_one | pin::POSTED_INTR) as u64),
            // A must-be-one control cleared.
            (f::CPU_BASED_VM_EXEC_CONTROL.field(), 0),
            (f::CR3_TARGET_COUNT.field(), 1),
            (f::VM_ENTRY_CONTROLS.field(), (0x11ff | entry::IA32E_MODE_GUEST | entry::ENTRY_TO_SMM).into()),
            (f::VM_ENTRY_INTR_INFO_FIELD.field(), (1 << 31) | (1 << 8)),
            // #GP in protected mode without deliver-error-code.
            (f::VM_ENTRY_INTR_INFO_FIELD.field(), (1 << 31) | (3 << 8) | 13),
        ];
        for (field, value) in cases {
            let mut v = base.clone();
            v.write(field, value).unwrap();
            assert!(matches!(run(&v), Err(EntryFailure::Controls(_))), "{field:?} = {value:#x}");
        }
        let mut v = base.clone();
        v.set(f::CPU_BASED_VM_EXEC_CONTROL, base.get(f::CPU_BASED_VM_EXEC_CONTROL) | primary::USE_MSR_BITMAPS);
        v.set(f::MSR_BITMAP, 0x1234);
        assert!(matches!(run(&v), Err(EntryFailure::Controls(Failed { field, .. })) if field == f::MSR_BITMAP));
        v.set(f::MSR_BITMAP, 0x5000);
        assert_eq!(run(&v), Ok(()));
    }

    #[test]
    fn apic_virtualization_controls() {
        let c = caps();
        let base = selftest_vmcs12(&c);
        let prim = base.get(f::CPU_BASED_VM_EXEC_CONTROL);
        let tpr = prim | primary::TPR_SHADOW;
        // VTPR (offset 80H of the virtual-APIC page at 0x5000) holds priority class 3.
        let vtpr = |a: u64| (a == 0x5080).then_some(0x30u32);
        let with = |p: u32, sec: u32, set: &[(Field, u64)]| {
            let mut v = base.clone();
            v.set(f::CPU_BASED_VM_EXEC_CONTROL, p);
            v.set(f::SECONDARY_VM_EXEC_CONTROL, sec);
            v.set(f::VIRTUAL_APIC_PAGE_ADDR, 0x5000);
            v.set(f::APIC_ACCESS_ADDR, 0x6000);
            for &(field, value) in set {
                v.write(field, value).unwrap();
            }
            check(&v, &c, &ENV, vtpr)
        };
        let refused = |r: Result<(), EntryFailure>, field: Field| {
            assert!(matches!(r, Err(EntryFailure::Controls(Failed { field: ff, .. })) if ff == field), "{field:?}: {r:?}");
        };
        assert_eq!(with(tpr, 0, &[(f::TPR_THRESHOLD.field(), 3)]), Ok(()));
        assert_eq!(with(tpr, secondary::VIRTUALIZE_X2APIC, &[]), Ok(()));
        assert_eq!(with(prim, secondary::VIRTUALIZE_APIC_ACCESSES, &[]), Ok(()));
        // Virtual-APIC page: aligned, within MAXPHYADDR.
        refused(with(tpr, 0, &[(f::VIRTUAL_APIC_PAGE_ADDR.field(), 0x5008)]), f::VIRTUAL_APIC_PAGE_ADDR.field());
        refused(with(tpr, 0, &[(f::VIRTUAL_APIC_PAGE_ADDR.field(), 1 << 39)]), f::VIRTUAL_APIC_PAGE_ADDR.field());
        // TPR threshold: bits 31:4 zero; bits 3:0 not above VTPR[7:4] (3) unless APIC
        // accesses are virtualized.
        refused(with(tpr, 0, &[(f::TPR_THRESHOLD.field(), 0x10)]), f::TPR_THRESHOLD.field());
        refused(with(tpr, 0, &[(f::TPR_THRESHOLD.field(), 4)]), f::TPR_THRESHOLD.field());
        assert_eq!(with(tpr, secondary::VIRTUALIZE_APIC_ACCESSES, &[(f::TPR_THRESHOLD.field(), 4)]), Ok(()));
        // Virtualize x2APIC mode needs the TPR shadow and excludes virtualized APIC accesses.
        refused(with(prim, secondary::VIRTUALIZE_X2APIC, &[]), f::SECONDARY_VM_EXEC_CONTROL.field());
        refused(with(tpr, secondary::VIRTUALIZE_X2APIC | secondary::VIRTUALIZE_APIC_ACCESSES, &[]),
            f::SECONDARY_VM_EXEC_CONTROL.field());
        // APIC-access page: aligned, within MAXPHYADDR.
        refused(with(prim, secondary::VIRTUALIZE_APIC_ACCESSES, &[(f::APIC_ACCESS_ADDR.field(), 0x6001)]), f::APIC_ACCESS_ADDR.field());
        refused(with(prim, secondary::VIRTUALIZE_APIC_ACCESSES, &[(f::APIC_ACCESS_ADDR.field(), 1 << 40)]), f::APIC_ACCESS_ADDR.field());
        // Not offered: APIC-register virtualization (the offer check catches it first).
        refused(with(tpr, secondary::APIC_REGISTER_VIRT, &[]), f::SECONDARY_VM_EXEC_CONTROL.field());
    }

    #[test]
    fn ept_pointer_and_unrestricted_guest() {
        let c = caps();
        let mut v = selftest_vmcs12(&c);
        v.set(f::SECONDARY_VM_EXEC_CONTROL, secondary::UNRESTRICTED_GUEST);
        assert!(matches!(run(&v), Err(EntryFailure::Controls(Failed { field, .. })) if field == f::SECONDARY_VM_EXEC_CONTROL),
            "unrestricted guest without EPT");
        v.set(f::SECONDARY_VM_EXEC_CONTROL, secondary::UNRESTRICTED_GUEST | secondary::ENABLE_EPT);
        for bad in [0, 0x5000 | 0x1d, 0x5000 | 0x26, 0x5000 | 0x5e, (1 << 39) | 0x1e] {
            v.set(f::EPT_POINTER, bad);
            assert!(matches!(run(&v), Err(EntryFailure::Controls(Failed { field, .. })) if field == f::EPT_POINTER), "{bad:#x}");
        }
        v.set(f::EPT_POINTER, 0x5000 | 0x1e);
        assert_eq!(run(&v), Ok(()));
        // Unrestricted guest lets L2 start with paging and protection off.
        v.set(f::GUEST_CR0, 0x30);
        v.set(f::VM_ENTRY_CONTROLS, 0x11ff);
        v.set(f::GUEST_IA32_EFER, 0);
        v.set(f::GUEST_CS_AR_BYTES, 0x9b);
        assert!(!matches!(run(&v), Err(EntryFailure::GuestState(Failed { field, .. }, _)) if field == f::GUEST_CR0));
    }

    #[test]
    fn host_state_failures_are_vmfail_8() {
        let mut base = selftest_vmcs12(&caps());
        let ex = base.get(f::VM_EXIT_CONTROLS) | exit::LOAD_IA32_PAT | exit::LOAD_IA32_EFER;
        base.set(f::VM_EXIT_CONTROLS, ex);
        assert_eq!(run(&base), Ok(()));
        let cases: [(Field, u64); 7] = [
            (f::HOST_CR0.field(), 0x8005_0032),          // PE clear
            (f::HOST_CR4.field(), 0x20),                 // VMXE clear
            (f::HOST_CS_SELECTOR.field(), 0),
            (f::HOST_TR_SELECTOR.field(), 0x1b),         // RPL 3
            (f::HOST_RIP.field(), 0x8000_0000_0000),     // not canonical
            (f::HOST_IA32_EFER.field(), 0x100),          // LMA clear with a 64-bit host
            (f::HOST_IA32_PAT.field(), 0x02),            // memory type 2 is reserved
        ];
        for (field, value) in cases {
            let mut v = base.clone();
            v.write(field, value).unwrap();
            assert!(matches!(run(&v), Err(EntryFailure::HostState(Failed { field: ff, .. })) if ff == field), "{field:?}");
        }
    }

    #[test]
    fn guest_state_failures_are_entry_failure_exits() {
        let mut base = selftest_vmcs12(&caps());
        let en = base.get(f::VM_ENTRY_CONTROLS) | entry::LOAD_IA32_PAT | entry::LOAD_IA32_EFER;
        base.set(f::VM_ENTRY_CONTROLS, en);
        assert_eq!(run(&base), Ok(()));
        let cases: [(Field, u64, u64); 8] = [
            (f::GUEST_CR0.field(), 0x8005_0032, 0),  // PG without PE
            (f::GUEST_CR4.field(), 0x2000, 0),       // IA-32e guest without PAE
            (f::GUEST_RFLAGS.field(), 0, 0),         // bit 1 clear
            (f::GUEST_RIP.field(), 0x8000_0000_0000, 0),
            (f::GUEST_ACTIVITY_STATE.field(), 1, 0), // HLT is not offered
            (f::GUEST_INTERRUPTIBILITY_INFO.field(), 3, 0),
            (f::GUEST_IA32_EFER.field(), 0x100, 0),  // LMA clear for an IA-32e guest
            (f::VMCS_LINK_POINTER.field(), 0x1000, QUAL_LINK_POINTER),
        ];
        for (field, value, qual) in cases {
            let mut v = base.clone();
            v.write(field, value).unwrap();
            assert!(matches!(run(&v), Err(EntryFailure::GuestState(Failed { field: ff, .. }, q)) if ff == field && q == qual),
                "{field:?}: {:?}", run(&v));
        }
        // A link pointer to a region of the right revision is accepted.
        let mut v = base.clone();
        v.set(f::VMCS_LINK_POINTER, 0x1000);
        let rev = caps().basic as u32;
        assert_eq!(check(&v, &caps(), &ENV, |a| (a == 0x1000).then_some(rev)), Ok(()));
    }

    #[test]
    fn address_space_size_follows_l1() {
        let v = selftest_vmcs12(&caps());
        let env32 = EntryEnv { maxphyaddr: 39, l1_lma: false };
        assert!(matches!(check(&v, &caps(), &env32, |_| None), Err(EntryFailure::HostState(_))));
    }
}
