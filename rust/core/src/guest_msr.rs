// SPDX-License-Identifier: GPL-2.0
//! The MSRs a guest has: which indices exist, which values a write may put there, and the
//! list `KVM_GET_MSR_INDEX_LIST` reports. The same rules serve the guest's RDMSR/WRMSR (a
//! refused access is #GP(0), SDM vol. 2B "RDMSR"/"WRMSR") and its VMM's
//! `KVM_GET_MSRS`/`KVM_SET_MSRS` ("host-initiated", which may also set what the guest cannot,
//! such as EFER.LMA or the TSC of a restored VM, as KVM allows).
//!
//! Where the value lives (the vCPU state, the VMCS while the guest runs) is the module's
//! business; this file only decides.

use super::bits::bit;
use super::cpuid::GuestFeatures;

/// An MSR nvmx gives its guests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msr {
    /// IA32_TIME_STAMP_COUNTER (0x10): the host TSC plus the vCPU's offset.
    Tsc,
    /// IA32_TSC_ADJUST (0x3b): what guest writes of the TSC added (SDM 17.17.3).
    TscAdjust,
    /// IA32_APIC_BASE (0x1b).
    ApicBase,
    /// IA32_SYSENTER_CS (0x174).
    SysenterCs,
    /// IA32_SYSENTER_ESP (0x175).
    SysenterEsp,
    /// IA32_SYSENTER_EIP (0x176).
    SysenterEip,
    /// IA32_MISC_ENABLE (0x1a0).
    MiscEnable,
    /// IA32_PAT (0x277).
    Pat,
    /// IA32_EFER (0xc000_0080).
    Efer,
    /// IA32_STAR (0xc000_0081).
    Star,
    /// IA32_LSTAR (0xc000_0082).
    Lstar,
    /// IA32_CSTAR (0xc000_0083).
    Cstar,
    /// IA32_FMASK (0xc000_0084).
    Fmask,
    /// IA32_FS_BASE (0xc000_0100).
    FsBase,
    /// IA32_GS_BASE (0xc000_0101).
    GsBase,
    /// IA32_KERNEL_GS_BASE (0xc000_0102).
    KernelGsBase,
    /// MSR_K7_HWCR (0xc001_0015): AMD's hardware configuration register, which KVM
    /// emulates on every vendor because Linux guests read it; storage only.
    Hwcr,
    /// IA32_BIOS_SIGN_ID (0x8b): the microcode revision in bits 63:32, which the VMM sets;
    /// Linux writes 0 to it before CPUID(1) to read it, and KVM ignores guest writes.
    UcodeRev,
    /// IA32_DEBUGCTL (0x1d9): none of its features (LBR, BTF, bus-lock detection, RTM
    /// debugging) is offered, so it reads 0 and keeps no state; KVM's write rules (not in
    /// `KVM_GET_MSR_INDEX_LIST`, as on KVM).
    DebugCtl,
    /// MSR_PLATFORM_INFO (0xce): the VMM's value (CPUID faulting offered in bit 31 after
    /// RESET, as KVM); the guest reads it while the VM allows (KVM_CAP_MSR_PLATFORM_INFO)
    /// and never writes it.
    PlatformInfo,
    /// MSR_MISC_FEATURES_ENABLES (0x140): CPUID faulting (bit 0), where MSR_PLATFORM_INFO
    /// offers it: CPUID at CPL > 0 is then #GP(0).
    MiscFeaturesEnables,
}

impl Msr {
    /// Every MSR, in `KVM_GET_MSR_INDEX_LIST` order (of those [`Msr::listed`]).
    pub const ALL: [Msr; 21] = [
        Msr::Tsc,
        Msr::TscAdjust,
        Msr::ApicBase,
        Msr::SysenterCs,
        Msr::SysenterEsp,
        Msr::SysenterEip,
        Msr::MiscEnable,
        Msr::Pat,
        Msr::Efer,
        Msr::Star,
        Msr::Lstar,
        Msr::Cstar,
        Msr::Fmask,
        Msr::FsBase,
        Msr::GsBase,
        Msr::KernelGsBase,
        Msr::Hwcr,
        Msr::UcodeRev,
        Msr::DebugCtl,
        Msr::PlatformInfo,
        Msr::MiscFeaturesEnables,
    ];

    /// Whether `KVM_GET_MSR_INDEX_LIST` reports it (KVM's list leaves IA32_DEBUGCTL out).
    pub const fn listed(self) -> bool {
        !matches!(self, Msr::DebugCtl)
    }

    /// The architectural index.
    pub const fn index(self) -> u32 {
        match self {
            Msr::Tsc => 0x10,
            Msr::TscAdjust => 0x3b,
            Msr::ApicBase => 0x1b,
            Msr::SysenterCs => 0x174,
            Msr::SysenterEsp => 0x175,
            Msr::SysenterEip => 0x176,
            Msr::MiscEnable => 0x1a0,
            Msr::Pat => 0x277,
            Msr::Efer => 0xc000_0080,
            Msr::Star => 0xc000_0081,
            Msr::Lstar => 0xc000_0082,
            Msr::Cstar => 0xc000_0083,
            Msr::Fmask => 0xc000_0084,
            Msr::FsBase => 0xc000_0100,
            Msr::GsBase => 0xc000_0101,
            Msr::KernelGsBase => 0xc000_0102,
            Msr::Hwcr => 0xc001_0015,
            Msr::UcodeRev => 0x8b,
            Msr::DebugCtl => 0x1d9,
            Msr::PlatformInfo => 0xce,
            Msr::MiscFeaturesEnables => 0x140,
        }
    }

    /// The MSR with architectural index `index`, if nvmx has it.
    pub fn from_index(index: u32) -> Option<Msr> {
        Msr::ALL.into_iter().find(|m| m.index() == index)
    }
}

/// EFER bits (SDM vol. 3A 2.2.1).
pub mod efer {
    /// SYSCALL enable.
    pub const SCE: u64 = 1 << 0;
    /// IA-32e mode enable.
    pub const LME: u64 = 1 << 8;
    /// IA-32e mode active.
    pub const LMA: u64 = 1 << 10;
    /// Execute-disable enable.
    pub const NXE: u64 = 1 << 11;
}

/// IA32_MISC_ENABLE as a guest sees it after RESET, KVM's value: the "BTS/PEBS unavailable"
/// bits 11 and 12, which are true here (no debug store is offered); fast strings (bit 0) off
/// until the guest's firmware or OS turns it on.
pub const MISC_ENABLE_RESET: u64 = bit(11) | bit(12);
/// IA32_DEBUGCTL's last-branch-record and single-step-on-branches bits (SDM vol. 3B 18.4.1).
const DEBUGCTL_LBR: u64 = bit(0);
const DEBUGCTL_BTF: u64 = bit(1);
/// IA32_BIOS_SIGN_ID after RESET, KVM's default microcode_version: revision 1.
pub const UCODE_REV_RESET: u64 = 1 << 32;
/// IA32_MISC_ENABLE bits the guest cannot change (KVM's MSR_IA32_MISC_ENABLE_PMU_RO_MASK:
/// BTS and PEBS unavailable); a WRMSR that changes them is #GP.
const MISC_ENABLE_READ_ONLY: u64 = bit(11) | bit(12);
/// IA32_MISC_ENABLE's EMON bit (7), which ignores the guest's writes (KVM keeps it).
const MISC_ENABLE_EMON: u64 = bit(7);

/// MSR_PLATFORM_INFO's "CPUID faulting supported" (bit 31): after RESET, as KVM sets it.
pub const PLATFORM_INFO_CPUID_FAULT: u64 = bit(31);
/// MSR_MISC_FEATURES_ENABLES' CPUID faulting enable (bit 0).
pub const MISC_FEATURES_CPUID_FAULT: u64 = bit(0);

/// IA32_APIC_BASE: BSP (8), x2APIC enable (10), xAPIC global enable (11), base (12+).
pub mod apic_base {
    /// This vCPU is the bootstrap processor.
    pub const BSP: u64 = 1 << 8;
    /// x2APIC mode.
    pub const EXTD: u64 = 1 << 10;
    /// APIC globally enabled.
    pub const ENABLE: u64 = 1 << 11;
}

/// Who writes: the guest (WRMSR) or its VMM (`KVM_SET_MSRS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// The guest's WRMSR: a refusal is #GP(0).
    Guest,
    /// The VMM: a refusal stops `KVM_SET_MSRS` at this entry.
    Host,
}

/// What the write of an MSR depends on besides the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteContext {
    /// The guest's features.
    pub features: GuestFeatures,
    /// Who writes.
    pub writer: Writer,
    /// The MSR's current value (EFER.LMA is kept on guest writes).
    pub current: u64,
    /// Whether the guest has paging on (EFER.LME cannot change then: SDM 10.8.5).
    pub paging: bool,
    /// MSR_PLATFORM_INFO's value (whether CPUID faulting may be enabled).
    pub platform_info: u64,
}

/// Whether `v` is a canonical 48-bit linear address (SDM vol. 1 3.3.7.1).
pub const fn is_canonical(v: u64) -> bool {
    ((v as i64) << 16 >> 16) as u64 == v
}

/// PAT: every byte one of the memory types 0, 1, 4, 5, 6, 7 (SDM 13.12.2; a reserved type
/// is #GP). KVM's `kvm_pat_valid` says the same.
pub const fn pat_valid(v: u64) -> bool {
    if v & 0xf8f8_f8f8_f8f8_f8f8 != 0 {
        return false;
    }
    (v | ((v & 0x0202_0202_0202_0202) << 1)) == v
}

/// The value to store for a write of `value` to `msr`, or `None` when the write is refused
/// (#GP(0) for the guest, a stop of `KVM_SET_MSRS` for the VMM). `Tsc` is not decided here:
/// every 64-bit value is a legal TSC.
pub fn check_write(msr: Msr, value: u64, cx: &WriteContext) -> Option<u64> {
    let host = cx.writer == Writer::Host;
    match msr {
        Msr::Tsc | Msr::TscAdjust => Some(value),
        Msr::Efer => {
            let f = &cx.features;
            // SCE is always allowed, as on KVM (efer_reserved_bits): CPUID's SYSCALL bit only
            // speaks for 64-bit mode.
            let mut allowed = efer::SCE;
            if f.long_mode {
                allowed |= efer::LME | efer::LMA;
            }
            if f.nx {
                allowed |= efer::NXE;
            }
            if value & !allowed != 0 {
                return None;
            }
            if host {
                return Some(value);
            }
            // The guest cannot write LMA (it follows CR0.PG and LME) and cannot toggle LME
            // while paging is on (SDM 10.8.5: #GP).
            if cx.paging && (value ^ cx.current) & efer::LME != 0 {
                return None;
            }
            Some((value & !efer::LMA) | (cx.current & efer::LMA))
        }
        Msr::Pat => pat_valid(value).then_some(value),
        Msr::Lstar | Msr::Cstar | Msr::FsBase | Msr::GsBase | Msr::KernelGsBase
        | Msr::SysenterEsp | Msr::SysenterEip => is_canonical(value).then_some(value),
        // STAR: both halves are selectors and the low word is SYSCALL's EIP; all 64 bits are
        // writable. FMASK: the upper 32 bits are reserved.
        Msr::Star => Some(value),
        // KVM: the VMM sets the revision; a guest's write is ignored, not #GP.
        Msr::UcodeRev if host => Some(value),
        Msr::UcodeRev => Some(cx.current),
        // KVM's vmx_is_valid_debugctl with nothing supported: BTF and LBR are ignored (not
        // implemented, the write succeeds), any other bit is refused; for the VMM too.
        Msr::DebugCtl => (value & !(DEBUGCTL_LBR | DEBUGCTL_BTF) == 0).then_some(0),
        Msr::Fmask => (value >> 32 == 0).then_some(value),
        // KVM's rules: only the VMM writes it, any value.
        Msr::PlatformInfo => host.then_some(value),
        // KVM's rules, for the VMM too: CPUID faulting alone, and only where offered.
        Msr::MiscFeaturesEnables => {
            let offered = cx.platform_info & PLATFORM_INFO_CPUID_FAULT != 0;
            (value & !MISC_FEATURES_CPUID_FAULT == 0 && (value == 0 || offered)).then_some(value)
        }
        Msr::SysenterCs => Some(value & 0xffff_ffff),
        // KVM's rule: flush-filter disable (6), IGNNE emulation (8) and TLB cache disable (3)
        // are ignored; McStatusWrEn (18) and TscFreqSel (24) are kept; anything else fails.
        Msr::Hwcr => {
            let v = value & !((1 << 3) | (1 << 6) | (1 << 8));
            (v & !((1 << 18) | (1 << 24)) == 0).then_some(v)
        }
        // KVM's rules: the VMM writes any value (QEMU sets fast strings at every reset);
        // the guest may not change the read-only bits, its EMON writes are ignored, and the
        // other bits are storage (KVM does not act on thermal control, limit-CPUID or XD
        // disable either; MONITOR/MWAIT is not offered, so its enable bit is storage too,
        // as under KVM's default KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT).
        Msr::MiscEnable if host => Some(value),
        Msr::MiscEnable => {
            if (value ^ cx.current) & MISC_ENABLE_READ_ONLY != 0 {
                return None;
            }
            Some((value & !MISC_ENABLE_EMON) | (cx.current & MISC_ENABLE_EMON))
        }
        Msr::ApicBase => {
            // SDM 11.4.4 / 11.12.5: reserved bits beyond MAXPHYADDR and in 0..=7 and 9; x2APIC
            // needs CPUID support; x2APIC without the global enable is invalid, and the guest
            // may not go from x2APIC straight back to xAPIC (only through disabled).
            let phys_mask = (1u64 << cx.features.maxphyaddr) - 1;
            let mut reserved = !phys_mask | 0x2ff;
            if !cx.features.x2apic {
                reserved |= apic_base::EXTD;
            }
            if value & reserved != 0 {
                return None;
            }
            let en_extd = apic_base::ENABLE | apic_base::EXTD;
            if value & en_extd == apic_base::EXTD {
                return None;
            }
            if !host
                && cx.current & en_extd == en_extd
                && value & en_extd == apic_base::ENABLE
            {
                return None;
            }
            // BSP is read-only for the guest.
            Some(if host { value } else { (value & !apic_base::BSP) | (cx.current & apic_base::BSP) })
        }
    }
}

/// Whether CPUID is #GP(0) at `cpl` (KVM's kvm_is_cpuid_allowed; SDM: CPUID faulting
/// applies outside ring 0).
pub const fn cpuid_faults(misc_features: u64, cpl: u8) -> bool {
    misc_features & MISC_FEATURES_CPUID_FAULT != 0 && cpl > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_info_and_cpuid_faulting_are_kvms() {
        assert_eq!(check_write(Msr::PlatformInfo, 0xff00, &host(0)), Some(0xff00), "the VMM sets any value");
        assert_eq!(check_write(Msr::PlatformInfo, 0, &guest(0, false)), None, "never the guest");
        let offered = guest(0, false);
        let not_offered = WriteContext { platform_info: 0, ..offered };
        assert_eq!(check_write(Msr::MiscFeaturesEnables, 1, &offered), Some(1));
        assert_eq!(check_write(Msr::MiscFeaturesEnables, 1, &not_offered), None);
        assert_eq!(check_write(Msr::MiscFeaturesEnables, 1, &WriteContext { writer: Writer::Host, ..not_offered }), None, "the VMM too");
        assert_eq!(check_write(Msr::MiscFeaturesEnables, 0, &not_offered), Some(0));
        assert_eq!(check_write(Msr::MiscFeaturesEnables, 2, &offered), None, "ring-3 MWAIT is not offered");
        assert!(cpuid_faults(1, 3) && !cpuid_faults(1, 0) && !cpuid_faults(0, 3));
    }

    fn features() -> GuestFeatures {
        GuestFeatures { long_mode: true, nx: true, maxphyaddr: 39, ..GuestFeatures::default() }
    }

    fn guest(current: u64, paging: bool) -> WriteContext {
        WriteContext { features: features(), writer: Writer::Guest, current, paging, platform_info: PLATFORM_INFO_CPUID_FAULT }
    }

    fn host(current: u64) -> WriteContext {
        WriteContext { features: features(), writer: Writer::Host, current, paging: false, platform_info: PLATFORM_INFO_CPUID_FAULT }
    }

    #[test]
    fn indices_round_trip_and_are_unique() {
        for m in Msr::ALL {
            assert_eq!(Msr::from_index(m.index()), Some(m));
        }
        for (i, a) in Msr::ALL.iter().enumerate() {
            for b in &Msr::ALL[i + 1..] {
                assert_ne!(a.index(), b.index());
            }
        }
        assert_eq!(Msr::from_index(0x3a), None, "IA32_FEATURE_CONTROL: not offered");
        assert_eq!(Msr::from_index(0x480), None, "VMX MSRs: no nested yet");
        assert_eq!(Msr::from_index(0xc000_0103), None, "TSC_AUX: no RDTSCP");
    }

    #[test]
    fn efer_reserved_bits_follow_cpuid() {
        let all = efer::SCE | efer::LME | efer::NXE;
        assert_eq!(check_write(Msr::Efer, all, &guest(0, false)), Some(all));
        assert_eq!(check_write(Msr::Efer, 1 << 1, &guest(0, false)), None, "reserved bit 1");
        assert_eq!(check_write(Msr::Efer, 1 << 12, &guest(0, false)), None, "SVME: not Intel");
        let mut no_nx = guest(0, false);
        no_nx.features.nx = false;
        assert_eq!(check_write(Msr::Efer, efer::NXE, &no_nx), None);
        let none = WriteContext { features: GuestFeatures::default(), ..guest(0, false) };
        assert_eq!(check_write(Msr::Efer, efer::SCE, &none), Some(efer::SCE), "SCE: always");
        assert_eq!(check_write(Msr::Efer, efer::LMA, &WriteContext { writer: Writer::Host, ..none }), None);
        let mut no_lm = guest(0, false);
        no_lm.features.long_mode = false;
        assert_eq!(check_write(Msr::Efer, efer::LME, &no_lm), None);
    }

    #[test]
    fn efer_lma_and_lme_rules() {
        let long = efer::LME | efer::LMA;
        // The guest cannot set or clear LMA by WRMSR: it keeps the current value.
        assert_eq!(check_write(Msr::Efer, efer::LMA, &guest(0, false)), Some(0));
        assert_eq!(check_write(Msr::Efer, efer::LME | efer::NXE, &guest(long, true)), Some(long | efer::NXE));
        // LME cannot change while paging is on.
        assert_eq!(check_write(Msr::Efer, 0, &guest(long, true)), None);
        assert_eq!(check_write(Msr::Efer, efer::LME, &guest(0, true)), None);
        assert_eq!(check_write(Msr::Efer, efer::LME, &guest(0, false)), Some(efer::LME));
        // The VMM restores whatever is legal, LMA included.
        assert_eq!(check_write(Msr::Efer, long, &host(0)), Some(long));
    }

    #[test]
    fn pat_memory_types() {
        assert!(pat_valid(0x0007_0406_0007_0406), "power-up value");
        for ty in [0u64, 1, 4, 5, 6, 7] {
            assert!(pat_valid(ty << 8), "type {ty}");
        }
        for ty in [2u64, 3, 8, 0x10] {
            assert!(!pat_valid(ty << 56), "type {ty:#x}");
        }
        assert_eq!(check_write(Msr::Pat, 2, &guest(0, false)), None);
    }

    #[test]
    fn canonical_addresses() {
        assert!(is_canonical(0x0000_7fff_ffff_ffff) && is_canonical(0xffff_8000_0000_0000));
        assert!(!is_canonical(0x0000_8000_0000_0000) && !is_canonical(0xfff0_0000_0000_0000));
        for m in [Msr::Lstar, Msr::Cstar, Msr::FsBase, Msr::GsBase, Msr::KernelGsBase, Msr::SysenterEip, Msr::SysenterEsp] {
            assert_eq!(check_write(m, 1 << 47, &guest(0, false)), None, "{m:?}");
            assert_eq!(check_write(m, 1 << 47, &host(0)), None, "{m:?} from the VMM");
            assert_eq!(check_write(m, 0xffff_ffff_8000_0000, &guest(0, false)), Some(0xffff_ffff_8000_0000));
        }
        assert_eq!(check_write(Msr::Fmask, 1 << 32, &guest(0, false)), None);
        assert_eq!(check_write(Msr::SysenterCs, u64::MAX, &guest(0, false)), Some(0xffff_ffff));
    }

    #[test]
    fn hwcr_as_kvm() {
        for bit in 0..64 {
            let v = 1u64 << bit;
            let want = match bit {
                3 | 6 | 8 => Some(0),
                18 | 24 => Some(v),
                _ => None,
            };
            assert_eq!(check_write(Msr::Hwcr, v, &guest(0, false)), want, "bit {bit}");
        }
    }

    #[test]
    fn misc_enable_is_kvms() {
        let cur = MISC_ENABLE_RESET;
        assert_eq!(cur, 0x1800, "KVM's reset value");
        // The guest: BTS/PEBS unavailable (11, 12) are read-only (#GP), EMON (7) ignores
        // writes, the rest is storage.
        assert_eq!(check_write(Msr::MiscEnable, cur | 1, &guest(cur, false)), Some(cur | 1), "fast strings on");
        assert_eq!(check_write(Msr::MiscEnable, 1, &guest(cur, false)), None, "BTS/PEBS unavailable are read-only");
        assert_eq!(check_write(Msr::MiscEnable, cur | (1 << 7), &guest(cur, false)), Some(cur), "EMON ignored");
        assert_eq!(check_write(Msr::MiscEnable, cur | (1 << 22), &guest(cur, false)), Some(cur | (1 << 22)), "limit CPUID");
        assert_eq!(check_write(Msr::MiscEnable, cur | (1 << 18), &guest(cur, false)), Some(cur | (1 << 18)), "MWAIT");
        // The VMM (QEMU writes 1 at every reset): anything.
        assert_eq!(check_write(Msr::MiscEnable, 1, &host(cur)), Some(1));
        assert_eq!(check_write(Msr::MiscEnable, u64::MAX, &host(cur)), Some(u64::MAX));
    }

    #[test]
    fn apic_base_rules() {
        let xapic = 0xfee0_0000 | apic_base::ENABLE | apic_base::BSP;
        assert_eq!(check_write(Msr::ApicBase, xapic, &host(0)), Some(xapic));
        assert_eq!(check_write(Msr::ApicBase, xapic | (1 << 39), &host(0)), None, "beyond MAXPHYADDR");
        assert_eq!(check_write(Msr::ApicBase, xapic | 1, &host(0)), None, "reserved low bit");
        assert_eq!(check_write(Msr::ApicBase, xapic | apic_base::EXTD, &guest(xapic, false)), None, "no x2APIC");
        // The guest cannot change BSP.
        assert_eq!(check_write(Msr::ApicBase, 0xfee0_0000 | apic_base::ENABLE, &guest(xapic, false)), Some(xapic));
        let mut x2 = guest(0xfee0_0000 | apic_base::ENABLE | apic_base::EXTD, false);
        x2.features.x2apic = true;
        assert_eq!(check_write(Msr::ApicBase, 0xfee0_0000 | apic_base::EXTD, &x2), None, "EXTD without EN");
        assert_eq!(check_write(Msr::ApicBase, 0xfee0_0000 | apic_base::ENABLE, &x2), None, "x2APIC -> xAPIC");
        assert_eq!(check_write(Msr::ApicBase, 0xfee0_0000, &x2), Some(0xfee0_0000), "x2APIC -> disabled");
    }

    #[test]
    fn ucode_rev_is_the_vmms() {
        let mut cx = guest(0, false);
        cx.current = 0x1234 << 32;
        assert_eq!(check_write(Msr::UcodeRev, 0, &cx), Some(0x1234 << 32), "the guest's write is ignored");
        cx.writer = Writer::Host;
        assert_eq!(check_write(Msr::UcodeRev, 0x42 << 32, &cx), Some(0x42 << 32));
        assert_eq!(Msr::from_index(0x8b), Some(Msr::UcodeRev));
    }

    #[test]
    fn debugctl_ignores_btf_and_lbr_and_refuses_the_rest() {
        for cx in [guest(0, false), host(0)] {
            assert_eq!(check_write(Msr::DebugCtl, 0, &cx), Some(0));
            assert_eq!(check_write(Msr::DebugCtl, DEBUGCTL_BTF, &cx), Some(0), "BTF ignored");
            assert_eq!(check_write(Msr::DebugCtl, DEBUGCTL_LBR | DEBUGCTL_BTF, &cx), Some(0), "LBR ignored");
            assert_eq!(check_write(Msr::DebugCtl, 1 << 6, &cx), None, "trace messages");
            assert_eq!(check_write(Msr::DebugCtl, 1 << 63, &cx), None);
        }
        assert_eq!(Msr::from_index(0x1d9), Some(Msr::DebugCtl));
        assert!(!Msr::DebugCtl.listed() && Msr::Tsc.listed());
    }
}

/// The TSC bookkeeping of a write (SDM 17.17.3, KVM's rules): `(new offset, new adjust)`
/// from the current offset, adjust, host TSC `host_tsc` and the written value. A guest write
/// of the TSC moves TSC_ADJUST by the same amount; a guest write of TSC_ADJUST moves the
/// TSC; the VMM's write of the TSC sets it without touching TSC_ADJUST (a restore), and its
/// write of TSC_ADJUST sets that alone.
pub fn tsc_write(msr: Msr, writer: Writer, offset: u64, adjust: u64, host_tsc: u64, value: u64) -> (u64, u64) {
    let tsc = host_tsc.wrapping_add(offset);
    match (msr, writer) {
        (Msr::Tsc, Writer::Guest) => {
            let delta = value.wrapping_sub(tsc);
            (offset.wrapping_add(delta), adjust.wrapping_add(delta))
        }
        (Msr::Tsc, Writer::Host) => (value.wrapping_sub(host_tsc), adjust),
        (Msr::TscAdjust, Writer::Guest) => (offset.wrapping_add(value.wrapping_sub(adjust)), value),
        (_, _) => (offset, value),
    }
}

#[cfg(test)]
mod tsc_tests {
    use super::*;

    #[test]
    fn tsc_and_adjust_move_together_as_the_sdm_says() {
        let host = 1_000_000;
        // Guest writes the TSC: both move.
        let (o, a) = tsc_write(Msr::Tsc, Writer::Guest, 0u64.wrapping_sub(host), 0, host, 4000);
        assert_eq!((host.wrapping_add(o), a), (4000, 4000));
        // Guest writes TSC_ADJUST: the TSC follows.
        let (o, a) = tsc_write(Msr::TscAdjust, Writer::Guest, o, a, host, 8000);
        assert_eq!((host.wrapping_add(o), a), (8000, 8000));
        // The VMM sets the TSC: TSC_ADJUST stays.
        let (o, a) = tsc_write(Msr::Tsc, Writer::Host, o, a, host, 64_000);
        assert_eq!((host.wrapping_add(o), a), (64_000, 8000));
        // The guest writes TSC_ADJUST again: the VMM's offset survives.
        let (o, a) = tsc_write(Msr::TscAdjust, Writer::Guest, o, a, host, 12_000);
        assert_eq!((host.wrapping_add(o), a), (68_000, 12_000));
        // The VMM writes TSC_ADJUST: only it changes.
        let (o2, a2) = tsc_write(Msr::TscAdjust, Writer::Host, o, a, host, 5);
        assert_eq!((o2, a2), (o, 5));
    }
}
