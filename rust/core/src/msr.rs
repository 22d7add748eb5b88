// SPDX-License-Identifier: GPL-2.0
//! Model-specific registers nvmx reads (Intel SDM vol. 4, table 2-2; VMX ones: vol. 3D app. A).

/// IA32_FEATURE_CONTROL: lock and VMX enable bits, written by firmware (SDM 24.7).
pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
/// IA32_VMX_BASIC: revision id, VMCS size and memory type, TRUE-controls support (A.1).
pub const IA32_VMX_BASIC: u32 = 0x480;
/// IA32_VMX_PINBASED_CTLS (A.3.1).
pub const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
/// IA32_VMX_PROCBASED_CTLS (A.3.2).
pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
/// IA32_VMX_EXIT_CTLS (A.4).
pub const IA32_VMX_EXIT_CTLS: u32 = 0x483;
/// IA32_VMX_ENTRY_CTLS (A.5).
pub const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
/// IA32_VMX_MISC (A.6).
pub const IA32_VMX_MISC: u32 = 0x485;
/// IA32_VMX_CR0_FIXED0 (A.7).
pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
/// IA32_VMX_CR0_FIXED1 (A.7).
pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
/// IA32_VMX_CR4_FIXED0 (A.8).
pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
/// IA32_VMX_CR4_FIXED1 (A.8).
pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;
/// IA32_VMX_VMCS_ENUM: highest field index (A.9).
pub const IA32_VMX_VMCS_ENUM: u32 = 0x48a;
/// IA32_VMX_PROCBASED_CTLS2: secondary processor-based controls (A.3.3).
pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
/// IA32_VMX_EPT_VPID_CAP (A.10).
pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
/// IA32_VMX_TRUE_PINBASED_CTLS (A.3.1).
pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
/// IA32_VMX_TRUE_PROCBASED_CTLS (A.3.2).
pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
/// IA32_VMX_TRUE_EXIT_CTLS (A.4).
pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
/// IA32_VMX_TRUE_ENTRY_CTLS (A.5).
pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
/// IA32_VMX_VMFUNC (A.11).
pub const IA32_VMX_VMFUNC: u32 = 0x491;

/// The IA32_VMX_* MSRs a VMM saves and restores (`KVM_GET_MSR_INDEX_LIST`, KVM's
/// emulated_msrs): those `KVM_SET_MSRS` accepts. The legacy control MSRs and the fixed1
/// MSRs are derived (from the true controls and from CPUID) and not listed; they are still
/// readable, and in the feature-MSR list.
pub const VMX_SAVED: [u32; 12] = [
    IA32_VMX_BASIC,
    IA32_VMX_TRUE_PINBASED_CTLS,
    IA32_VMX_TRUE_PROCBASED_CTLS,
    IA32_VMX_TRUE_EXIT_CTLS,
    IA32_VMX_TRUE_ENTRY_CTLS,
    IA32_VMX_MISC,
    IA32_VMX_CR0_FIXED0,
    IA32_VMX_CR4_FIXED0,
    IA32_VMX_VMCS_ENUM,
    IA32_VMX_PROCBASED_CTLS2,
    IA32_VMX_EPT_VPID_CAP,
    IA32_VMX_VMFUNC,
];

/// IA32_FEATURE_CONTROL bits (SDM vol. 4, table 2-2).
pub mod feature_control {
    /// Bit 0: lock. While clear, VMXON causes #GP (SDM 24.7).
    pub const LOCKED: u32 = 0;
    /// Bit 1: VMX enabled inside SMX operation.
    pub const VMX_INSIDE_SMX: u32 = 1;
    /// Bit 2: VMX enabled outside SMX operation.
    pub const VMX_OUTSIDE_SMX: u32 = 2;
}
