// SPDX-License-Identifier: GPL-2.0
//! VMX capability MSRs that constrain what a VMCS may contain (Intel SDM vol. 3D, app. A).

use super::bits::{bit, bitfield, extract};

/// A VMX control capability MSR: the low dword holds the allowed 0-settings (a set bit means
/// the control must be 1), the high dword the allowed 1-settings (a clear bit means the
/// control must be 0). SDM A.3–A.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ControlMsr {
    /// Controls that must be 1 (allowed 0-settings, bits 31:0).
    pub must_be_one: u32,
    /// Controls that may be 1 (allowed 1-settings, bits 63:32).
    pub may_be_one: u32,
}

impl ControlMsr {
    /// Decode the raw MSR value.
    pub const fn from_msr(raw: u64) -> Self {
        Self { must_be_one: extract(raw, 31, 0) as u32, may_be_one: extract(raw, 63, 32) as u32 }
    }

    /// The raw MSR value this decodes from.
    pub const fn to_msr(self) -> u64 {
        ((self.may_be_one as u64) << 32) | self.must_be_one as u64
    }

    /// Whether the control mask `ctl` may be set to 1.
    pub const fn allows(self, ctl: u32) -> bool {
        self.may_be_one & ctl == ctl
    }

    /// Whether `value` is a valid setting of the whole control field: every must-be-one
    /// control set and no control set that must be zero (the VM-entry check of SDM 27.2.1.1).
    pub const fn is_valid(self, value: u32) -> bool {
        value & self.must_be_one == self.must_be_one && value & !self.may_be_one == 0
    }

    /// Build a control value with every `required` control, the `optional` ones the CPU
    /// allows, and the CPU's must-be-one controls. Fails with the required controls the
    /// CPU cannot set (KVM's `adjust_vmx_controls`).
    pub const fn adjust(self, required: u32, optional: u32) -> Result<u32, u32> {
        let value = ((required | optional) & self.may_be_one) | self.must_be_one;
        let missing = required & !value;
        if missing != 0 {
            Err(missing)
        } else {
            Ok(value)
        }
    }
}

/// Pin-based VM-execution controls (SDM table 25-5).
pub mod pin {
    /// External-interrupt exiting.
    pub const EXT_INTR_EXITING: u32 = 1 << 0;
    /// NMI exiting.
    pub const NMI_EXITING: u32 = 1 << 3;
    /// Virtual NMIs.
    pub const VIRTUAL_NMIS: u32 = 1 << 5;
    /// Activate VMX-preemption timer.
    pub const PREEMPTION_TIMER: u32 = 1 << 6;
    /// Process posted interrupts.
    pub const POSTED_INTR: u32 = 1 << 7;
}

/// Primary processor-based VM-execution controls (SDM table 25-6).
pub mod primary {
    /// Interrupt-window exiting.
    pub const INTR_WINDOW_EXITING: u32 = 1 << 2;
    /// Use TSC offsetting.
    pub const USE_TSC_OFFSETTING: u32 = 1 << 3;
    /// HLT exiting.
    pub const HLT_EXITING: u32 = 1 << 7;
    /// INVLPG exiting.
    pub const INVLPG_EXITING: u32 = 1 << 9;
    /// MWAIT exiting.
    pub const MWAIT_EXITING: u32 = 1 << 10;
    /// RDPMC exiting.
    pub const RDPMC_EXITING: u32 = 1 << 11;
    /// RDTSC exiting.
    pub const RDTSC_EXITING: u32 = 1 << 12;
    /// CR3-load exiting.
    pub const CR3_LOAD_EXITING: u32 = 1 << 15;
    /// CR3-store exiting.
    pub const CR3_STORE_EXITING: u32 = 1 << 16;
    /// CR8-load exiting.
    pub const CR8_LOAD_EXITING: u32 = 1 << 19;
    /// CR8-store exiting.
    pub const CR8_STORE_EXITING: u32 = 1 << 20;
    /// Use TPR shadow.
    pub const TPR_SHADOW: u32 = 1 << 21;
    /// NMI-window exiting.
    pub const NMI_WINDOW_EXITING: u32 = 1 << 22;
    /// MOV-DR exiting.
    pub const MOV_DR_EXITING: u32 = 1 << 23;
    /// Unconditional I/O exiting.
    pub const UNCOND_IO_EXITING: u32 = 1 << 24;
    /// Use I/O bitmaps.
    pub const USE_IO_BITMAPS: u32 = 1 << 25;
    /// Monitor trap flag.
    pub const MONITOR_TRAP_FLAG: u32 = 1 << 27;
    /// Use MSR bitmaps.
    pub const USE_MSR_BITMAPS: u32 = 1 << 28;
    /// MONITOR exiting.
    pub const MONITOR_EXITING: u32 = 1 << 29;
    /// PAUSE exiting.
    pub const PAUSE_EXITING: u32 = 1 << 30;
    /// Activate secondary controls.
    pub const SECONDARY_CONTROLS: u32 = 1 << 31;
}

/// Secondary processor-based VM-execution controls (SDM table 25-7).
pub mod secondary {
    /// Virtualize APIC accesses.
    pub const VIRTUALIZE_APIC_ACCESSES: u32 = 1 << 0;
    /// Enable EPT.
    pub const ENABLE_EPT: u32 = 1 << 1;
    /// Descriptor-table exiting.
    pub const DESC_TABLE_EXITING: u32 = 1 << 2;
    /// Enable RDTSCP.
    pub const ENABLE_RDTSCP: u32 = 1 << 3;
    /// Virtualize x2APIC mode.
    pub const VIRTUALIZE_X2APIC: u32 = 1 << 4;
    /// Enable VPID.
    pub const ENABLE_VPID: u32 = 1 << 5;
    /// WBINVD exiting.
    pub const WBINVD_EXITING: u32 = 1 << 6;
    /// Unrestricted guest.
    pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
    /// APIC-register virtualization.
    pub const APIC_REGISTER_VIRT: u32 = 1 << 8;
    /// Virtual-interrupt delivery.
    pub const VIRTUAL_INTR_DELIVERY: u32 = 1 << 9;
    /// PAUSE-loop exiting.
    pub const PAUSE_LOOP_EXITING: u32 = 1 << 10;
    /// Enable INVPCID.
    pub const ENABLE_INVPCID: u32 = 1 << 12;
    /// Enable VM functions.
    pub const ENABLE_VMFUNC: u32 = 1 << 13;
    /// VMCS shadowing.
    pub const SHADOW_VMCS: u32 = 1 << 14;
    /// Enable PML.
    pub const ENABLE_PML: u32 = 1 << 17;
    /// Enable XSAVES/XRSTORS.
    pub const ENABLE_XSAVES: u32 = 1 << 20;
}

/// Primary VM-exit controls (SDM table 25-13).
pub mod exit {
    /// Save debug controls.
    pub const SAVE_DEBUG_CONTROLS: u32 = 1 << 2;
    /// Host address-space size (64-bit host).
    pub const HOST_ADDR_SPACE_SIZE: u32 = 1 << 9;
    /// Load IA32_PERF_GLOBAL_CTRL.
    pub const LOAD_PERF_GLOBAL_CTRL: u32 = 1 << 12;
    /// Acknowledge interrupt on exit.
    pub const ACK_INTR_ON_EXIT: u32 = 1 << 15;
    /// Save IA32_PAT.
    pub const SAVE_IA32_PAT: u32 = 1 << 18;
    /// Load IA32_PAT.
    pub const LOAD_IA32_PAT: u32 = 1 << 19;
    /// Save IA32_EFER.
    pub const SAVE_IA32_EFER: u32 = 1 << 20;
    /// Load IA32_EFER.
    pub const LOAD_IA32_EFER: u32 = 1 << 21;
    /// Save VMX-preemption timer value.
    pub const SAVE_PREEMPTION_TIMER: u32 = 1 << 22;
}

/// VM-entry controls (SDM table 25-15).
pub mod entry {
    /// Load debug controls.
    pub const LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
    /// IA-32e mode guest.
    pub const IA32E_MODE_GUEST: u32 = 1 << 9;
    /// Entry to SMM.
    pub const ENTRY_TO_SMM: u32 = 1 << 10;
    /// Deactivate dual-monitor treatment.
    pub const DEACTIVATE_DUAL_MONITOR: u32 = 1 << 11;
    /// Load IA32_PERF_GLOBAL_CTRL.
    pub const LOAD_PERF_GLOBAL_CTRL: u32 = 1 << 13;
    /// Load IA32_PAT.
    pub const LOAD_IA32_PAT: u32 = 1 << 14;
    /// Load IA32_EFER.
    pub const LOAD_IA32_EFER: u32 = 1 << 15;
}

bitfield! {
    /// IA32_VMX_EPT_VPID_CAP (SDM A.10).
    pub struct EptVpidCap(u64) {
        /// Bit 0: execute-only EPT translations.
        execute_only, with_execute_only: 0;
        /// Bit 6: page-walk length of 4.
        walk_length_4, with_walk_length_4: 6;
        /// Bit 7: page-walk length of 5.
        walk_length_5, with_walk_length_5: 7;
        /// Bit 8: EPT paging-structure memory type uncacheable.
        memtype_uc, with_memtype_uc: 8;
        /// Bit 14: EPT paging-structure memory type write-back.
        memtype_wb, with_memtype_wb: 14;
        /// Bit 16: 2 MiB EPT pages.
        pages_2m, with_pages_2m: 16;
        /// Bit 17: 1 GiB EPT pages.
        pages_1g, with_pages_1g: 17;
        /// Bit 20: INVEPT.
        invept, with_invept: 20;
        /// Bit 21: accessed and dirty flags for EPT.
        accessed_dirty, with_accessed_dirty: 21;
        /// Bit 25: single-context INVEPT.
        invept_single_context, with_invept_single_context: 25;
        /// Bit 26: all-context INVEPT.
        invept_all_context, with_invept_all_context: 26;
        /// Bit 32: INVVPID.
        invvpid, with_invvpid: 32;
        /// Bit 40: individual-address INVVPID.
        invvpid_individual_address, with_invvpid_individual_address: 40;
        /// Bit 41: single-context INVVPID.
        invvpid_single_context, with_invvpid_single_context: 41;
        /// Bit 42: all-context INVVPID.
        invvpid_all_context, with_invvpid_all_context: 42;
        /// Bit 43: single-context-retaining-globals INVVPID.
        invvpid_single_context_retaining_globals, with_invvpid_single_context_retaining_globals: 43;
    }
}

bitfield! {
    /// IA32_VMX_MISC (SDM A.6).
    pub struct VmxMisc(u64) {
        /// Bits 4:0: the preemption timer counts down by 1 every 2^X TSC ticks.
        preemption_timer_rate, with_preemption_timer_rate: 4:0 as u32;
        /// Bit 5: VM exits store EFER.LMA into the "IA-32e mode guest" entry control.
        stores_lma, with_stores_lma: 5;
        /// Bits 8:6: supported activity states (bit 6 HLT, 7 shutdown, 8 wait-for-SIPI).
        activity_states, with_activity_states: 8:6 as u32;
        /// Bit 14: Intel Processor Trace can be used in VMX operation.
        pt_in_vmx, with_pt_in_vmx: 14;
        /// Bits 24:16: number of CR3-target values.
        cr3_targets, with_cr3_targets: 24:16 as u32;
        /// Bits 27:25: N, where 512 * (N + 1) is the recommended maximum MSR-list length.
        msr_list_scale, with_msr_list_scale: 27:25 as u32;
        /// Bit 29: VMWRITE may write any supported field, including VM-exit information fields.
        vmwrite_any_field, with_vmwrite_any_field: 29;
        /// Bits 63:32: MSEG revision identifier.
        mseg_revision, with_mseg_revision: 63:32 as u32;
    }
}

impl VmxMisc {
    /// The recommended maximum MSR-list length, 512 * (N + 1) (bits 27:25).
    pub const fn max_msr_list_len(self) -> u32 {
        512 * (self.msr_list_scale() + 1)
    }
}

/// A pair of IA32_VMX_CRx_FIXED0/FIXED1 MSRs (SDM A.7, A.8): bits set in FIXED0 must be 1 in
/// the control register during VMX operation, bits clear in FIXED1 must be 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FixedBits {
    /// IA32_VMX_CRx_FIXED0.
    pub fixed0: u64,
    /// IA32_VMX_CRx_FIXED1.
    pub fixed1: u64,
}

impl FixedBits {
    /// The bits of `value` that break the rule: must-be-1 bits that are 0 and must-be-0 bits
    /// that are 1. Zero when `value` is allowed.
    pub const fn violations(self, value: u64) -> u64 {
        (self.fixed0 & !value) | (value & !self.fixed1)
    }

    /// Whether `value` is allowed in VMX operation.
    pub const fn allows(self, value: u64) -> bool {
        self.violations(value) == 0
    }
}

/// CR0 bits named in VMX rules (SDM 2.5).
pub mod cr0 {
    use super::bit;
    /// Protection enable.
    pub const PE: u64 = bit(0);
    /// Numeric error.
    pub const NE: u64 = bit(5);
    /// Paging.
    pub const PG: u64 = bit(31);
}

/// CR4 bits named in VMX rules (SDM 2.5).
pub mod cr4 {
    use super::bit;
    /// Debugging extensions (DR4/DR5 are #UD).
    pub const DE: u64 = bit(3);
    /// Physical-address extension: required in IA-32e mode.
    pub const PAE: u64 = bit(5);
    /// VMX enable: VMXON #UDs without it; it cannot be cleared in VMX operation.
    pub const VMXE: u64 = bit(13);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_msr_halves() {
        // SDM A.3.1: low dword allowed 0-settings, high dword allowed 1-settings.
        let c = ControlMsr::from_msr(0x0000_007f_0000_0016);
        assert_eq!(c.must_be_one, 0x16);
        assert_eq!(c.may_be_one, 0x7f);
        assert_eq!(c.to_msr(), 0x0000_007f_0000_0016);
        assert!(c.allows(pin::EXT_INTR_EXITING | pin::NMI_EXITING | pin::PREEMPTION_TIMER));
        assert!(!c.allows(pin::POSTED_INTR));
    }

    #[test]
    fn is_valid_checks_both_directions() {
        let c = ControlMsr { must_be_one: 0x16, may_be_one: 0x7f };
        assert!(c.is_valid(0x16));
        assert!(c.is_valid(0x7f));
        assert!(!c.is_valid(0x06), "a default1 bit cleared");
        assert!(!c.is_valid(0x96), "a bit set that must be 0");
    }

    #[test]
    fn adjust_like_kvm() {
        let c = ControlMsr { must_be_one: 0x16, may_be_one: 0x7f };
        assert_eq!(c.adjust(0x01, 0x40), Ok(0x57));
        assert_eq!(c.adjust(0x01, 0x80), Ok(0x17), "optional controls the CPU lacks are dropped");
        assert_eq!(c.adjust(0x81, 0), Err(0x80), "required controls the CPU lacks are named");
    }

    #[test]
    fn ept_vpid_cap_bits() {
        // A Skylake value: XO, 4-level, UC, WB, 2M, 1G, INVEPT (single, all), A/D, INVVPID (all 4).
        let cap = EptVpidCap(0x0000_0f01_0673_4141);
        assert!(cap.execute_only() && cap.walk_length_4() && cap.memtype_uc() && cap.memtype_wb());
        assert!(cap.pages_2m() && cap.pages_1g() && cap.invept() && cap.accessed_dirty());
        assert!(cap.invept_single_context() && cap.invept_all_context());
        assert!(cap.invvpid() && cap.invvpid_individual_address() && cap.invvpid_single_context());
        assert!(cap.invvpid_all_context() && cap.invvpid_single_context_retaining_globals());
        assert!(!cap.walk_length_5());
        assert!(!EptVpidCap(0).walk_length_4());
    }

    #[test]
    fn misc_fields() {
        let m = VmxMisc(0x0000_0000_2000_01e5 | (3 << 25) | (4 << 16));
        assert_eq!(m.preemption_timer_rate(), 5);
        assert!(m.stores_lma());
        assert_eq!(m.activity_states(), 0b111);
        assert_eq!(m.cr3_targets(), 4);
        assert_eq!(m.max_msr_list_len(), 2048);
        assert!(m.vmwrite_any_field());
        assert_eq!(VmxMisc(0).max_msr_list_len(), 512);
    }

    #[test]
    fn fixed_bits() {
        // Typical CR0 fixed bits without unrestricted guest: PE, NE, PG must be 1.
        let f = FixedBits { fixed0: 0x8000_0021, fixed1: 0xffff_ffff };
        assert!(f.allows(0x8005_0033));
        assert_eq!(f.violations(0x0005_0033), cr0::PG);
        assert_eq!(f.violations(0x1_8000_0021), 1 << 32, "bit 32 is outside FIXED1");
        let cr4f = FixedBits { fixed0: cr4::VMXE, fixed1: 0x3727ff };
        assert!(!cr4f.allows(0x20));
        assert!(cr4f.allows(0x20 | cr4::VMXE));
    }
}
