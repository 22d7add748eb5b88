// SPDX-License-Identifier: GPL-2.0
//! nvmx's nested MSRs: IA32_FEATURE_CONTROL and the IA32_VMX_* capability MSRs of a vCPU
//! (RDMSR/WRMSR by the guest, KVM_GET/SET_MSRS by the VMM), and whether nested VMX is
//! offered at all.

use crate::vcpu_state::VcpuState;
use crate::vmx_core::msr;

/// IA32_FEATURE_CONTROL (SDM vol. 4 table 2-2) and its bits.
pub(crate) const MSR_FEATURE_CONTROL: u32 = 0x3a;
const FEAT_LOCKED: u64 = 1 << 0;
const FEAT_VMX_INSIDE_SMX: u64 = 1 << 1;
const FEAT_VMX_OUTSIDE_SMX: u64 = 1 << 2;
/// The bits a VMM may set (KVM's KVM_SUPPORTED_FEATURE_CONTROL: lock, VMX inside/outside
/// SMX, SGX launch control, SGX, LMCE).
const FEAT_SUPPORTED: u64 = FEAT_LOCKED | FEAT_VMX_INSIDE_SMX | FEAT_VMX_OUTSIDE_SMX | (1 << 17) | (1 << 18) | (1 << 20);
/// KVM_X86_QUIRK_STUFF_FEATURE_MSRS: the VMX capability MSRs start as the full offer.
pub(crate) const QUIRK_STUFF_FEATURE_MSRS: u64 = 1 << 8;
/// `KVM_X86_QUIRK_LINT0_REENABLED`: the BSP's LINT0 is ExtINT after RESET and INIT.
pub(crate) const QUIRK_LINT0_REENABLED: u64 = 1 << 0;

/// Whether the module offers nested VMX at all (`nested` parameter and a host that can).
pub(crate) fn available() -> bool {
    crate::HOST.as_ref().is_some_and(|h| h.nested)
}

/// Whether `index` is one of nvmx's nested MSRs (IA32_FEATURE_CONTROL, IA32_VMX_*).
pub(crate) fn is_nested_msr(index: u32) -> bool {
    available() && (index == MSR_FEATURE_CONTROL || (msr::IA32_VMX_BASIC..=msr::IA32_VMX_VMFUNC).contains(&index))
}

/// RDMSR / KVM_GET_MSRS of a nested MSR. The VMX capability MSRs exist only for a vCPU whose
/// CPUID has VMX (KVM's vmx_get_msr); IA32_FEATURE_CONTROL always.
pub(crate) fn get_msr(st: &VcpuState, index: u32) -> Option<u64> {
    if index == MSR_FEATURE_CONTROL {
        return Some(st.nested.feature_control);
    }
    if !st.features.vmx {
        return None;
    }
    st.nested.caps.read(index)
}

/// WRMSR / KVM_SET_MSRS of a nested MSR (`host`: from KVM_SET_MSRS). Err: #GP / entry refused.
pub(crate) fn set_msr(st: &mut VcpuState, index: u32, v: u64, host: bool) -> core::result::Result<(), ()> {
    if index == MSR_FEATURE_CONTROL {
        // KVM's vmx_feature_control_msr_valid: the guest may write only while unlocked and
        // only the bits its CPUID backs; the VMM any supported bit.
        let valid = if host {
            FEAT_SUPPORTED
        } else {
            if st.nested.feature_control & FEAT_LOCKED != 0 {
                return Err(());
            }
            FEAT_LOCKED | if st.features.vmx { FEAT_VMX_OUTSIDE_SMX } else { 0 }
        };
        if v & !valid != 0 {
            return Err(());
        }
        st.nested.feature_control = v;
        return Ok(());
    }
    // The capability MSRs are read-only for the guest; the VMM may restrict them while L1 is
    // not in VMX operation (KVM: -EBUSY after VMXON).
    if !host || !st.features.vmx || st.nested.l1.vmxon.is_some() {
        return Err(());
    }
    let offered = crate::HOST.as_ref().ok_or(())?.l1_caps;
    st.nested.caps.restore(&offered, index, v)
}

/// KVM_SET_CPUID2 changed the vCPU's CPUID (before the first run): firmware's part — a
/// locked IA32_FEATURE_CONTROL enabling VMX outside SMX — is done for a vCPU offered VMX
/// whose VMM has not set the MSR itself.
pub(crate) fn cpuid_changed(st: &mut VcpuState) {
    if st.features.vmx && available() && st.nested.feature_control == 0 {
        st.nested.feature_control = FEAT_LOCKED | FEAT_VMX_OUTSIDE_SMX;
    }
    // L1's CR4_FIXED1 follows its CPUID (and with it the HOST_CR4/GUEST_CR4 entry checks).
    if let Some(h) = crate::HOST.as_ref() {
        st.nested.caps.cr4.fixed1 = crate::vmx_core::guest_cr::l1_cr4_fixed1(h.l1_caps.cr4.fixed1, &st.features);
    }
}

