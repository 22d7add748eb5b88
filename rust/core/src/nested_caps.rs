// SPDX-License-Identifier: GPL-2.0
//! The VMX capabilities an L1 guest is offered (nested VMX): its IA32_VMX_* MSRs,
//! computed once from the host's (so that every vCPU of every VM sees the same), restricted
//! to what nvmx emulates, and the rules by which a VMM may restrict them further with
//! KVM_SET_MSRS before the first run (KVM's vmx_set_vmx_msr: a restored value may only
//! take capabilities away).
//!
//! The offer covers what kvm_intel needs to run as L1 (Documentation/nvmx.rst, "Nested VMX"): pin-based external-
//! interrupt and NMI exiting; HLT, CR3 load/store, unconditional I/O, MOV-DR, TSC
//! offsetting, MWAIT/MONITOR, INVLPG, RDPMC, interrupt-window, CR8 exiting, the TPR shadow
//! with virtualized APIC accesses and virtualize x2APIC mode; exits saving
//! debug controls, acknowledging interrupts, to a 64-bit host; entries loading debug
//! controls and to IA-32e mode; EPT with 4-level walks, WB and all-context INVEPT (nested EPT), unrestricted guest.

use super::controls::{entry, exit, pin, primary, secondary, ControlMsr, FixedBits};
use super::host::HostCaps;
use super::msr;
use super::nested_ept;

/// The VMCS revision identifier L1 is offered: KVM's, as L1's VMCS12 regions use KVM's
/// layout (rust/core/src/vmcs12.rs), so that an L1 moves between nvmx and kvm_intel with
/// its VMCS regions and its IA32_VMX_BASIC unchanged. Bit 31 clear: not a shadow VMCS.
pub const VMCS12_REVISION: u32 = super::kvm_vmcs12_layout::KVM_VMCS12_REVISION;

/// Pin-based controls that are 1 in the default1 class (SDM A.2): bits 1, 2, 4.
const PIN_DEFAULT1: u32 = 0x16;
/// Primary processor-based default1 controls: bits 1, 4-6, 8, 13-16, 26.
const PRIMARY_DEFAULT1: u32 = 0x0401_e172;
/// VM-exit default1 controls: bits 0-8, 10, 11, 13, 14, 16, 17.
const EXIT_DEFAULT1: u32 = 0x0003_6dff;
/// VM-entry default1 controls: bits 0-8, 12.
const ENTRY_DEFAULT1: u32 = 0x0000_11ff;

/// What nvmx emulates for L1, by control (intersected with the host's allowed-1 settings).
const PIN_OFFERED: u32 = pin::EXT_INTR_EXITING | pin::NMI_EXITING | pin::VIRTUAL_NMIS | pin::PREEMPTION_TIMER;
const PRIMARY_OFFERED: u32 = primary::INTR_WINDOW_EXITING
    | primary::USE_TSC_OFFSETTING
    | primary::HLT_EXITING
    | primary::INVLPG_EXITING
    | primary::MWAIT_EXITING
    | primary::RDPMC_EXITING
    | primary::RDTSC_EXITING
    | primary::CR3_LOAD_EXITING
    | primary::CR3_STORE_EXITING
    | primary::CR8_LOAD_EXITING
    | primary::CR8_STORE_EXITING
    | primary::TPR_SHADOW
    | primary::NMI_WINDOW_EXITING
    | primary::MOV_DR_EXITING
    | primary::UNCOND_IO_EXITING
    | primary::USE_IO_BITMAPS
    | primary::USE_MSR_BITMAPS
    | primary::MONITOR_EXITING
    | primary::PAUSE_EXITING
    | primary::SECONDARY_CONTROLS;
/// EPT is nested EPT (rust/nested_ept.rs): L2's memory through L1's EPT composed with L0's.
/// Unrestricted guest comes with it (the CPU runs L2's real mode under EPT02). The TPR
/// shadow, virtualized APIC accesses and virtualize x2APIC mode are nested_apic.rs's. VMCS
/// shadowing is emulated: L2's VMREAD/VMWRITE that L1's bitmaps let through act on the
/// shadow VMCS12 in L1's memory (rust/nested.rs), offered where the host has the control
/// (as KVM offers it).
const SECONDARY_OFFERED: u32 = secondary::VIRTUALIZE_APIC_ACCESSES
    | secondary::VIRTUALIZE_X2APIC
    | secondary::ENABLE_EPT
    | secondary::DESC_TABLE_EXITING
    | secondary::ENABLE_VPID
    | secondary::UNRESTRICTED_GUEST
    | secondary::WBINVD_EXITING
    | secondary::SHADOW_VMCS;
const EXIT_OFFERED: u32 = exit::SAVE_DEBUG_CONTROLS
    | exit::SAVE_PREEMPTION_TIMER
    | exit::HOST_ADDR_SPACE_SIZE
    | exit::ACK_INTR_ON_EXIT
    | exit::SAVE_IA32_PAT
    | exit::LOAD_IA32_PAT
    | exit::SAVE_IA32_EFER
    | exit::LOAD_IA32_EFER;
const ENTRY_OFFERED: u32 =
    entry::LOAD_DEBUG_CONTROLS | entry::IA32E_MODE_GUEST | entry::LOAD_IA32_PAT | entry::LOAD_IA32_EFER;

/// IA32_VMX_EPT_VPID_CAP bits offered where the host has them: execute-only pages, 4-level
/// walks, UC and WB paging structures, 2 MiB and 1 GiB pages (EPT02 maps them as 4 KiB
/// pages), INVEPT single- and all-context; INVVPID (32) with individual-address,
/// single-context, all-context and single-context-retaining-globals types (40-43). No
/// accessed/dirty flags (nvmx does not set them in L1's EPT).
const EPT_VPID_OFFERED: u64 = nested_ept::cap::EXECUTE_ONLY
    | nested_ept::cap::WALK_4
    | nested_ept::cap::MEMTYPE_UC
    | nested_ept::cap::MEMTYPE_WB
    | nested_ept::cap::PAGES_2M
    | nested_ept::cap::PAGES_1G
    | nested_ept::cap::INVEPT
    | nested_ept::cap::INVEPT_SINGLE
    | nested_ept::cap::INVEPT_ALL
    | (1 << 32)
    | (0xf << 40);

/// IA32_VMX_BASIC: 4 KiB regions (bits 44:32), write-back (53:50 = 6), INS/OUTS exit
/// information (54), TRUE controls (55).
const BASIC: u64 = VMCS12_REVISION as u64 | (4096 << 32) | (6 << 50) | (1 << 54) | (1 << 55);
/// IA32_VMX_BASIC bits a VMM may clear (KVM: the dual-monitor, INS/OUTS and TRUE-controls
/// feature bits); the rest must stay as offered.
const BASIC_FEATURES: u64 = (1 << 49) | (1 << 54) | (1 << 55);

/// IA32_VMX_MISC offered: EFER.LMA stored on exit (5), and nothing else — no activity state
/// but active, no CR3-target values, MSR lists of up to 512 (bits
/// 27:25 = 0).
const MISC: u64 = 1 << 5;
/// IA32_VMX_MISC bits a VMM may clear (KVM's feature bits: 5, 8:6, 14, 15, 28, 29, 30).
const MISC_FEATURES: u64 = (1 << 5) | (7 << 6) | (1 << 14) | (1 << 15) | (1 << 28) | (1 << 29) | (1 << 30);

/// L1's VMX capability MSRs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1VmxCaps {
    /// IA32_VMX_BASIC.
    pub basic: u64,
    /// Pin-based controls (the TRUE MSR; the legacy one adds default1 bits).
    pub pin: ControlMsr,
    /// Primary processor-based controls (TRUE).
    pub primary: ControlMsr,
    /// Secondary processor-based controls.
    pub secondary: ControlMsr,
    /// VM-exit controls (TRUE).
    pub exit: ControlMsr,
    /// VM-entry controls (TRUE).
    pub entry: ControlMsr,
    /// IA32_VMX_MISC.
    pub misc: u64,
    /// CR0 fixed bits in VMX operation.
    pub cr0: FixedBits,
    /// CR4 fixed bits in VMX operation.
    pub cr4: FixedBits,
    /// IA32_VMX_VMCS_ENUM (highest field index, shifted as the MSR has it).
    pub vmcs_enum: u64,
    /// IA32_VMX_EPT_VPID_CAP.
    pub ept_vpid: u64,
    /// IA32_VMX_VMFUNC (no VM functions are offered).
    pub vmfunc: u64,
}

fn offer_ctl(host: ControlMsr, offered: u32, default1: u32, true_msr: bool) -> ControlMsr {
    // Allowed-1: what nvmx emulates and the host can run, plus default1 (always 1 settings
    // are allowed). Allowed-0: in the TRUE MSR only the host's own must-be-one controls; the
    // legacy MSR also reports the default1 class as must-be-one (SDM A.2).
    let may = (offered & host.may_be_one) | default1 | host.must_be_one;
    let must = if true_msr { host.must_be_one & default1 } else { default1 };
    ControlMsr { must_be_one: must, may_be_one: may }
}

impl L1VmxCaps {
    /// All zeros: what a vCPU's VMX MSRs hold when the VMM disabled
    /// KVM_X86_QUIRK_STUFF_FEATURE_MSRS and has not restored them yet (KVM does the same).
    pub const fn none() -> Self {
        let z = ControlMsr { must_be_one: 0, may_be_one: 0 };
        L1VmxCaps {
            basic: 0,
            pin: z,
            primary: z,
            secondary: z,
            exit: z,
            entry: z,
            misc: 0,
            cr0: FixedBits { fixed0: 0, fixed1: 0 },
            cr4: FixedBits { fixed0: 0, fixed1: 0 },
            vmcs_enum: 0,
            ept_vpid: 0,
            vmfunc: 0,
        }
    }

    /// The offer for L1 on this host.
    pub fn offer(host: &HostCaps, vmcs_max_index: u32) -> Self {
        L1VmxCaps {
            basic: BASIC,
            pin: offer_ctl(host.pin, PIN_OFFERED, PIN_DEFAULT1, true),
            primary: offer_ctl(host.primary, PRIMARY_OFFERED, PRIMARY_DEFAULT1, true),
            secondary: ControlMsr { must_be_one: 0, may_be_one: SECONDARY_OFFERED & host.secondary.may_be_one },
            exit: offer_ctl(host.exit, EXIT_OFFERED, EXIT_DEFAULT1, true),
            entry: offer_ctl(host.entry, ENTRY_OFFERED, ENTRY_DEFAULT1, true),
            // The VMX-preemption timer (where the host has it, rust/run.rs runs L1's on the
            // CPU's) counts at the host's rate: bits 4:0 are the host's.
            misc: MISC
                | if host.pin.allows(pin::PREEMPTION_TIMER) { host.misc.preemption_timer_rate() as u64 } else { 0 },
            // With unrestricted guest offered, L2 may run with PE/PG clear, but VMXON in L1
            // still needs them: the MSR reports them fixed to 1, as hardware does.
            cr0: FixedBits { fixed0: 0x8000_0021, fixed1: host.cr0_fixed.fixed1 },
            // CR4: never a bit of state nvmx does not switch (each vCPU's is further limited
            // to its CPUID: guest_cr::l1_cr4_fixed1).
            cr4: FixedBits {
                fixed0: super::controls::cr4::VMXE,
                fixed1: host.cr4_fixed.fixed1 & !super::guest_cr::CR4_UNSWITCHED,
            },
            vmcs_enum: (vmcs_max_index as u64) << 1,
            ept_vpid: EPT_VPID_OFFERED & host.ept_vpid.0,
            vmfunc: 0,
        }
    }

    /// RDMSR of a VMX capability MSR (`None`: not a VMX MSR nvmx offers).
    pub fn read(&self, index: u32) -> Option<u64> {
        let legacy = |c: ControlMsr, default1: u32| ControlMsr { must_be_one: c.must_be_one | default1, ..c }.to_msr();
        Some(match index {
            msr::IA32_VMX_BASIC => self.basic,
            msr::IA32_VMX_PINBASED_CTLS => legacy(self.pin, PIN_DEFAULT1),
            msr::IA32_VMX_PROCBASED_CTLS => legacy(self.primary, PRIMARY_DEFAULT1),
            msr::IA32_VMX_EXIT_CTLS => legacy(self.exit, EXIT_DEFAULT1),
            msr::IA32_VMX_ENTRY_CTLS => legacy(self.entry, ENTRY_DEFAULT1),
            msr::IA32_VMX_TRUE_PINBASED_CTLS => self.pin.to_msr(),
            msr::IA32_VMX_TRUE_PROCBASED_CTLS => self.primary.to_msr(),
            msr::IA32_VMX_TRUE_EXIT_CTLS => self.exit.to_msr(),
            msr::IA32_VMX_TRUE_ENTRY_CTLS => self.entry.to_msr(),
            msr::IA32_VMX_PROCBASED_CTLS2 => self.secondary.to_msr(),
            msr::IA32_VMX_MISC => self.misc,
            msr::IA32_VMX_CR0_FIXED0 => self.cr0.fixed0,
            msr::IA32_VMX_CR0_FIXED1 => self.cr0.fixed1,
            msr::IA32_VMX_CR4_FIXED0 => self.cr4.fixed0,
            msr::IA32_VMX_CR4_FIXED1 => self.cr4.fixed1,
            msr::IA32_VMX_VMCS_ENUM => self.vmcs_enum,
            msr::IA32_VMX_EPT_VPID_CAP => self.ept_vpid,
            msr::IA32_VMX_VMFUNC => self.vmfunc,
            _ => return None,
        })
    }

    /// KVM_SET_MSRS of a VMX capability MSR by the VMM, against `offered` (the host-wide
    /// offer): the new value may take capabilities away, never add any (KVM's
    /// vmx_restore_control_msr, vmx_restore_vmx_basic, vmx_restore_vmx_misc,
    /// vmx_restore_fixed0_msr). The legacy control MSRs and the fixed1 MSRs are read-only
    /// (KVM derives them). Err: refused (the ioctl stops at this entry).
    pub fn restore(&mut self, offered: &L1VmxCaps, index: u32, v: u64) -> Result<(), ()> {
        let subset = |v: u64, of: u64, mask: u64| (v & mask) & !(of & mask) == 0;
        // Control MSRs: must-be-one (low) may only grow, may-be-one (high) only shrink.
        let ctl = |v: u64, of: ControlMsr| {
            let o = of.to_msr();
            (subset(o, v, 0xffff_ffff) && subset(v, o, !0xffff_ffff)).then(|| ControlMsr::from_msr(v))
        };
        match index {
            msr::IA32_VMX_BASIC => {
                if (v ^ offered.basic) & !BASIC_FEATURES != 0 || !subset(v, offered.basic, BASIC_FEATURES) {
                    return Err(());
                }
                self.basic = v;
            }
            msr::IA32_VMX_TRUE_PINBASED_CTLS => self.pin = ctl(v, offered.pin).ok_or(())?,
            msr::IA32_VMX_TRUE_PROCBASED_CTLS => self.primary = ctl(v, offered.primary).ok_or(())?,
            msr::IA32_VMX_TRUE_EXIT_CTLS => self.exit = ctl(v, offered.exit).ok_or(())?,
            msr::IA32_VMX_TRUE_ENTRY_CTLS => self.entry = ctl(v, offered.entry).ok_or(())?,
            msr::IA32_VMX_PROCBASED_CTLS2 => self.secondary = ctl(v, offered.secondary).ok_or(())?,
            msr::IA32_VMX_MISC => {
                if (v ^ offered.misc) & !MISC_FEATURES & !0x1f != 0 || !subset(v, offered.misc, MISC_FEATURES) {
                    return Err(());
                }
                // The preemption-timer rate (4:0) may only stay or grow... nvmx offers no
                // timer, so it must stay.
                if v & 0x1f != offered.misc & 0x1f {
                    return Err(());
                }
                self.misc = v;
            }
            // Fixed0: every must-be-1 bit stays must-be-1.
            msr::IA32_VMX_CR0_FIXED0 if v & offered.cr0.fixed0 == offered.cr0.fixed0 => self.cr0.fixed0 = v,
            msr::IA32_VMX_CR4_FIXED0 if v & offered.cr4.fixed0 == offered.cr4.fixed0 => self.cr4.fixed0 = v,
            // KVM lets userspace restore any VMCS_ENUM value (it is only reported).
            msr::IA32_VMX_VMCS_ENUM => self.vmcs_enum = v,
            msr::IA32_VMX_EPT_VPID_CAP if subset(v, offered.ept_vpid, u64::MAX) => self.ept_vpid = v,
            msr::IA32_VMX_VMFUNC if subset(v, offered.vmfunc, u64::MAX) => self.vmfunc = v,
            _ => return Err(()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::controls::cr4;
    use super::*;

    fn host() -> HostCaps {
        super::super::host::skylake_caps()
    }

    #[test]
    fn offers_what_kvm_intel_needs() {
        let c = L1VmxCaps::offer(&host(), 0x2e);
        assert!(c.pin.allows(pin::EXT_INTR_EXITING | pin::NMI_EXITING));
        assert!(c.primary.allows(
            primary::HLT_EXITING | primary::CR3_LOAD_EXITING | primary::CR3_STORE_EXITING
                | primary::UNCOND_IO_EXITING | primary::MOV_DR_EXITING | primary::USE_TSC_OFFSETTING
                | primary::MWAIT_EXITING | primary::MONITOR_EXITING | primary::INVLPG_EXITING
                | primary::RDPMC_EXITING | primary::INTR_WINDOW_EXITING | primary::CR8_LOAD_EXITING
                | primary::CR8_STORE_EXITING | primary::SECONDARY_CONTROLS | primary::TPR_SHADOW
        ));
        assert!(c.secondary.allows(secondary::VIRTUALIZE_APIC_ACCESSES | secondary::VIRTUALIZE_X2APIC));
        assert!(c.exit.allows(exit::SAVE_DEBUG_CONTROLS | exit::ACK_INTR_ON_EXIT | exit::HOST_ADDR_SPACE_SIZE));
        assert!(c.entry.allows(entry::LOAD_DEBUG_CONTROLS | entry::IA32E_MODE_GUEST));
        assert!(c.secondary.allows(secondary::ENABLE_VPID));
        // Nested EPT: EPT and unrestricted guest, 4-level WB walks, both INVEPT types, no A/D.
        assert!(c.secondary.allows(secondary::ENABLE_EPT) && c.secondary.allows(secondary::UNRESTRICTED_GUEST));
        for bit in [nested_ept::cap::WALK_4, nested_ept::cap::MEMTYPE_WB, nested_ept::cap::INVEPT,
                    nested_ept::cap::INVEPT_SINGLE, nested_ept::cap::INVEPT_ALL] {
            assert_ne!(c.ept_vpid & bit, 0, "{bit:#x}");
        }
        assert_eq!(c.ept_vpid & nested_ept::cap::ACCESSED_DIRTY, 0);
        assert_ne!(c.ept_vpid & (1 << 32), 0, "INVVPID");
        assert_eq!(c.read(msr::IA32_VMX_BASIC).unwrap() as u32, VMCS12_REVISION);
        assert_eq!(c.read(msr::IA32_VMX_BASIC).unwrap() >> 55 & 1, 1, "TRUE controls");
        assert_eq!(c.read(msr::IA32_VMX_CR4_FIXED0), Some(cr4::VMXE));
    }

    #[test]
    fn offers_nothing_nvmx_does_not_emulate() {
        let c = L1VmxCaps::offer(&host(), 0x2e);
        assert!(!c.pin.allows(pin::POSTED_INTR));
        assert!(!c.primary.allows(primary::MONITOR_TRAP_FLAG));
        for s in [secondary::ENABLE_VMFUNC, secondary::ENABLE_PML,
                  secondary::APIC_REGISTER_VIRT, secondary::VIRTUAL_INTR_DELIVERY,
                  secondary::ENABLE_RDTSCP, secondary::ENABLE_XSAVES] {
            assert!(!c.secondary.allows(s), "{s:#x}");
        }
        assert!(!c.exit.allows(exit::LOAD_PERF_GLOBAL_CTRL));
        assert_eq!(c.vmfunc, 0);
        assert_eq!(c.read(msr::IA32_VMX_BASIC).unwrap() >> 49 & 1, 0, "no dual-monitor");
    }

    #[test]
    fn legacy_controls_report_default1_as_must_be_one() {
        let c = L1VmxCaps::offer(&host(), 0x2e);
        let legacy = ControlMsr::from_msr(c.read(msr::IA32_VMX_PROCBASED_CTLS).unwrap());
        let truem = ControlMsr::from_msr(c.read(msr::IA32_VMX_TRUE_PROCBASED_CTLS).unwrap());
        assert_eq!(legacy.must_be_one, PRIMARY_DEFAULT1);
        assert_eq!(truem.must_be_one, 0x0401_e172 & PRIMARY_DEFAULT1, "the host's TRUE allowed-0");
        assert_eq!(legacy.may_be_one, truem.may_be_one);
        assert_eq!(c.read(0x491), Some(0));
        assert_eq!(c.read(0x3a), None, "FEATURE_CONTROL is not a capability MSR");
    }

    #[test]
    fn restore_only_takes_away() {
        let offered = L1VmxCaps::offer(&host(), 0x2e);
        let mut c = offered;
        let p = offered.primary.to_msr();
        // Clearing an allowed-1 bit and requiring a control: fine.
        assert_eq!(c.restore(&offered, msr::IA32_VMX_TRUE_PROCBASED_CTLS, p & !((primary::HLT_EXITING as u64) << 32)), Ok(()));
        assert_eq!(c.restore(&offered, msr::IA32_VMX_TRUE_PROCBASED_CTLS, p | primary::HLT_EXITING as u64), Ok(()));
        // Allowing what is not offered, or dropping a must-be-one: refused.
        assert_eq!(c.restore(&offered, msr::IA32_VMX_TRUE_PROCBASED_CTLS, p | ((primary::MONITOR_TRAP_FLAG as u64) << 32)), Err(()));
        let pinv = offered.pin.to_msr();
        assert_eq!(c.restore(&offered, msr::IA32_VMX_TRUE_PINBASED_CTLS, pinv & !0x16), Err(()));
        // BASIC: feature bits may be cleared; the revision and sizes may not change.
        assert_eq!(c.restore(&offered, msr::IA32_VMX_BASIC, offered.basic & !(1 << 55)), Ok(()));
        assert_eq!(c.restore(&offered, msr::IA32_VMX_BASIC, offered.basic ^ 1), Err(()));
        assert_eq!(c.restore(&offered, msr::IA32_VMX_BASIC, offered.basic | (1 << 49)), Err(()), "dual-monitor");
        // MISC: features may be cleared.
        assert_eq!(c.restore(&offered, msr::IA32_VMX_MISC, offered.misc & !(1 << 5)), Ok(()));
        assert_eq!(c.restore(&offered, msr::IA32_VMX_MISC, offered.misc | (1 << 29)), Err(()));
        // Fixed0: may require more, not less.
        assert_eq!(c.restore(&offered, msr::IA32_VMX_CR0_FIXED0, 0x8000_0021 | 2), Ok(()));
        assert_eq!(c.restore(&offered, msr::IA32_VMX_CR0_FIXED0, 0x21), Err(()));
        assert_eq!(c.restore(&offered, msr::IA32_VMX_CR4_FIXED1, 0), Err(()), "fixed1 is read-only");
        assert_eq!(c.restore(&offered, msr::IA32_VMX_PROCBASED_CTLS, 0), Err(()), "legacy is derived");
        // EPT/VPID and VMFUNC: subsets only. VMCS_ENUM: anything.
        assert_eq!(c.restore(&offered, msr::IA32_VMX_EPT_VPID_CAP, offered.ept_vpid & !(1 << 41)), Ok(()));
        assert_eq!(c.restore(&offered, msr::IA32_VMX_EPT_VPID_CAP, offered.ept_vpid | (1 << 21)), Err(()));
        assert_eq!(c.restore(&offered, msr::IA32_VMX_VMFUNC, 1), Err(()));
        assert_eq!(c.restore(&offered, msr::IA32_VMX_VMCS_ENUM, u64::MAX), Ok(()));
    }
}
