// SPDX-License-Identifier: GPL-2.0
//! APIC virtualization that L1 may give L2 (nested VMX; SDM vol. 3C ch. 30): the
//! TPR shadow, virtualized APIC accesses and virtualize x2APIC mode. Neither APIC-register
//! virtualization nor virtual-interrupt delivery is offered.
//!
//! The CPU runs the first two for L2 on VMCS02, pointed at L1's own pages (rust/nested.rs),
//! so MOV to/from CR8, TPR virtualization, the TPR threshold and APIC-access exits are the
//! CPU's. VMCS02 has no MSR bitmap — every RDMSR/WRMSR of L2 exits to nvmx — so virtualize
//! x2APIC mode is nvmx's: what the CPU would do for the x2APIC TPR MSR lives here.
//!
//! Reference reading: KVM's nested_vmx_check_apic_access_controls / nested_vmx_check_tpr_
//! shadow_controls and nested_vmx_prepare_msr_bitmap (arch/x86/kvm/vmx/nested.c).

use super::controls::{primary, secondary};
use super::field_table as f;
use super::vmcs12::Vmcs12;

/// Offset of VTPR, the virtual task-priority register, in the virtual-APIC page (SDM 30.1).
pub const VTPR: u64 = 0x80;
/// The x2APIC TPR MSR (offset 80H of the APIC, SDM 11.12.1.2).
pub const X2APIC_TPR_MSR: u32 = 0x808;

/// L1's VMCS12 APIC-virtualization controls in force for L2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApicVirt {
    /// "Use TPR shadow": L2's CR8 is VTPR; `Some(virtual-APIC page address)`.
    pub virtual_apic: Option<u64>,
    /// "Virtualize APIC accesses": `Some(APIC-access address)`.
    pub apic_access: Option<u64>,
    /// "Virtualize x2APIC mode" (only with the TPR shadow, entry-checked).
    pub x2apic: bool,
    /// TPR threshold bits 3:0.
    pub tpr_threshold: u8,
}

impl ApicVirt {
    /// What VMCS12 asks for.
    pub fn of(v: &Vmcs12) -> Self {
        let prim = v.get(f::CPU_BASED_VM_EXEC_CONTROL);
        let sec = v.secondary_controls();
        let tpr_shadow = prim & primary::TPR_SHADOW != 0;
        ApicVirt {
            virtual_apic: tpr_shadow.then(|| v.get(f::VIRTUAL_APIC_PAGE_ADDR)),
            apic_access: (sec & secondary::VIRTUALIZE_APIC_ACCESSES != 0).then(|| v.get(f::APIC_ACCESS_ADDR)),
            x2apic: tpr_shadow && sec & secondary::VIRTUALIZE_X2APIC != 0,
            tpr_threshold: (v.get(f::TPR_THRESHOLD) & 0xf) as u8,
        }
    }

    /// The guest-physical address of VTPR if RDMSR/WRMSR of `msr` by L2 (which L1's MSR
    /// bitmap lets through) reads or writes it rather than an APIC: virtualize x2APIC mode
    /// without APIC-register virtualization virtualizes the TPR alone; the other x2APIC
    /// registers behave as without VMX, i.e. they are L1's (SDM 30.5).
    pub fn msr_vtpr(&self, msr: u32) -> Option<u64> {
        match (self.x2apic, self.virtual_apic) {
            (true, Some(page)) if msr == X2APIC_TPR_MSR => Some(page + VTPR),
            _ => None,
        }
    }

    /// TPR virtualization after L2 wrote VTPR (SDM 30.1.2, without virtual-interrupt
    /// delivery): a TPR-below-threshold VM exit, trap-like, is due when VTPR[7:4] is below
    /// the TPR threshold's bits 3:0.
    pub fn below_threshold(&self, vtpr: u32) -> bool {
        ((vtpr >> 4) & 0xf) < u32::from(self.tpr_threshold)
    }
}

/// WRMSR to the virtualized x2APIC TPR (SDM 30.5): the 8 bytes to store at VTPR — EDX:EAX
/// — or `None` for #GP(0), which a value with bits 63:8 set raises.
pub const fn vtpr_msr_write(value: u64) -> Option<u64> {
    if value >> 8 != 0 {
        None
    } else {
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmcs(prim: u32, sec: u32) -> Vmcs12 {
        let mut v = Vmcs12::default();
        v.set(f::CPU_BASED_VM_EXEC_CONTROL, prim);
        v.set(f::SECONDARY_VM_EXEC_CONTROL, sec);
        v.set(f::VIRTUAL_APIC_PAGE_ADDR, 0x5000);
        v.set(f::APIC_ACCESS_ADDR, 0x6000);
        v.set(f::TPR_THRESHOLD, 0x4);
        v
    }

    #[test]
    fn controls_decoded_only_where_active() {
        let all = secondary::VIRTUALIZE_X2APIC | secondary::VIRTUALIZE_APIC_ACCESSES;
        // Secondary controls count only with "activate secondary controls".
        let a = ApicVirt::of(&vmcs(primary::TPR_SHADOW, all));
        assert_eq!(a, ApicVirt { virtual_apic: Some(0x5000), apic_access: None, x2apic: false, tpr_threshold: 4 });
        let a = ApicVirt::of(&vmcs(primary::TPR_SHADOW | primary::SECONDARY_CONTROLS, all));
        assert_eq!(a.apic_access, Some(0x6000));
        assert!(a.x2apic);
        // Virtualize x2APIC mode means nothing without the TPR shadow.
        let a = ApicVirt::of(&vmcs(primary::SECONDARY_CONTROLS, secondary::VIRTUALIZE_X2APIC));
        assert!(!a.x2apic && a.virtual_apic.is_none());
    }

    #[test]
    fn only_the_tpr_msr_is_virtualized() {
        let a = ApicVirt::of(&vmcs(primary::TPR_SHADOW | primary::SECONDARY_CONTROLS, secondary::VIRTUALIZE_X2APIC));
        assert_eq!(a.msr_vtpr(0x808), Some(0x5080));
        for other in [0x800, 0x802, 0x80b, 0x830, 0x83f, 0x1b] {
            assert_eq!(a.msr_vtpr(other), None, "{other:#x} is L1's APIC register");
        }
        let tpr_only = ApicVirt::of(&vmcs(primary::TPR_SHADOW, 0));
        assert_eq!(tpr_only.msr_vtpr(0x808), None, "without x2APIC virtualization the MSR is L1's");
    }

    #[test]
    fn tpr_threshold_compares_priority_classes() {
        let a = ApicVirt { tpr_threshold: 4, ..ApicVirt::default() };
        assert!(a.below_threshold(0x3f));
        assert!(!a.below_threshold(0x40));
        assert!(!a.below_threshold(0xf0));
        assert!(!ApicVirt::default().below_threshold(0), "threshold 0: never below");
    }

    #[test]
    fn vtpr_write_reserved_bits() {
        assert_eq!(vtpr_msr_write(0xf0), Some(0xf0));
        assert_eq!(vtpr_msr_write(0x100), None);
        assert_eq!(vtpr_msr_write(1 << 32), None);
    }
}
