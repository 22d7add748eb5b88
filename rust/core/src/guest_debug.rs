// SPDX-License-Identifier: GPL-2.0
//! Debugging a guest from its VMM (`KVM_SET_GUEST_DEBUG`, Documentation/virt/kvm/api.rst
//! 4.48): single-stepping and software breakpoints reported as `KVM_EXIT_DEBUG`, and the
//! single step over an instruction the hypervisor completed itself (CPUID, MSRs, APIC and
//! MMIO accesses), which the CPU does not see as a step — KVM's "robust single-step"
//! (`KVM_CAP_X86_ROBUST_SINGLESTEP`, x86.c kvm_skip_emulated_instruction).

/// `KVM_GUESTDBG_ENABLE`.
pub const ENABLE: u32 = 1;
/// `KVM_GUESTDBG_SINGLESTEP`.
pub const SINGLESTEP: u32 = 2;
/// `KVM_GUESTDBG_USE_SW_BP`: INT3 exits to the VMM.
pub const USE_SW_BP: u32 = 0x1_0000;
/// `KVM_GUESTDBG_USE_HW_BP`: the VMM's own debug registers (not offered).
pub const USE_HW_BP: u32 = 0x2_0000;
/// `KVM_GUESTDBG_INJECT_DB`.
pub const INJECT_DB: u32 = 0x4_0000;
/// `KVM_GUESTDBG_INJECT_BP`.
pub const INJECT_BP: u32 = 0x8_0000;
/// `KVM_GUESTDBG_BLOCKIRQ`: no interrupts while stepping (not offered).
pub const BLOCKIRQ: u32 = 0x10_0000;
/// What nvmx does of these (`KVM_CAP_SET_GUEST_DEBUG2`).
pub const SUPPORTED: u32 = ENABLE | SINGLESTEP | USE_SW_BP | INJECT_DB | INJECT_BP;

/// DR6.BS: the #DB of a single step.
pub const DR6_BS: u64 = 1 << 14;
/// DR6's bits that read 1 when no event sets them (KVM's DR6_ACTIVE_LOW).
pub const DR6_ACTIVE_LOW: u64 = 0xffff_0ff0;
/// RFLAGS.TF.
pub const RFLAGS_TF: u64 = 1 << 8;

/// The debug control a `KVM_SET_GUEST_DEBUG` leaves (without ENABLE: none), or `None`
/// (EINVAL) for the flags KVM has and nvmx does not (its VMM would otherwise believe in
/// hardware breakpoints or blocked interrupts that do not happen). Bits no KVM knows are
/// ignored, as KVM ignores them.
pub const fn control(requested: u32) -> Option<u32> {
    if requested & (USE_HW_BP | BLOCKIRQ) != 0 {
        return None;
    }
    if requested & ENABLE == 0 {
        return Some(0);
    }
    Some(requested & SUPPORTED & !(INJECT_DB | INJECT_BP))
}

/// The guest's RFLAGS in the VMCS: with TF while the VMM single-steps it.
pub const fn hardware_rflags(rflags: u64, control: u32) -> u64 {
    if control & SINGLESTEP != 0 { rflags | RFLAGS_TF } else { rflags }
}

/// The guest's RFLAGS as the VMM reads it while single-stepping (KVM's kvm_get_rflags:
/// TF hidden).
pub const fn visible_rflags(rflags: u64, control: u32) -> u64 {
    if control & SINGLESTEP != 0 { rflags & !RFLAGS_TF } else { rflags }
}

/// The pending debug exceptions at VM entry: BS when TF is set under an STI or MOV-SS
/// shadow (`blocking`, interruptibility bits 1:0) — the single step the shadow delays
/// (SDM 27.3.1.5 requires BS exactly then, with IA32_DEBUGCTL.BTF 0 as nvmx keeps it).
pub const fn pending_debug_exceptions(rflags: u64, blocking: u32) -> u64 {
    if rflags & RFLAGS_TF != 0 && blocking & 3 != 0 { DR6_BS } else { 0 }
}

/// After nvmx completed an instruction for the guest with RFLAGS.TF set before it: what the
/// single step becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The VMM single-steps: KVM_EXIT_DEBUG with DR6.BS.
    ExitToVmm,
    /// The guest's own TF: a #DB (BS) in the guest, as the CPU would have raised.
    GuestDb,
}

/// What a single step after an instruction nvmx completed is (KVM's kvm_vcpu_do_singlestep).
pub const fn after_completed(control: u32) -> Step {
    if control & SINGLESTEP != 0 { Step::ExitToVmm } else { Step::GuestDb }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_is_kvms_where_nvmx_can() {
        assert_eq!(control(ENABLE | SINGLESTEP), Some(ENABLE | SINGLESTEP));
        assert_eq!(control(SINGLESTEP | USE_SW_BP), Some(0), "without ENABLE: off");
        assert_eq!(control(ENABLE | USE_SW_BP | INJECT_BP), Some(ENABLE | USE_SW_BP), "injection is not kept");
        assert_eq!(control(ENABLE | USE_HW_BP), None);
        assert_eq!(control(ENABLE | BLOCKIRQ), None);
        assert_eq!(control(ENABLE | 1 << 30), Some(ENABLE), "unknown bits ignored");
    }

    #[test]
    fn tf_is_the_vmms_while_it_steps() {
        assert_eq!(hardware_rflags(0x202, ENABLE | SINGLESTEP), 0x302);
        assert_eq!(hardware_rflags(0x202, ENABLE), 0x202);
        assert_eq!(visible_rflags(0x302, ENABLE | SINGLESTEP), 0x202);
        assert_eq!(visible_rflags(0x302, 0), 0x302, "the guest's own TF");
    }

    #[test]
    fn pending_bs_under_a_shadow() {
        assert_eq!(pending_debug_exceptions(0x302, 1), DR6_BS, "STI");
        assert_eq!(pending_debug_exceptions(0x302, 2), DR6_BS, "MOV SS");
        assert_eq!(pending_debug_exceptions(0x302, 0), 0);
        assert_eq!(pending_debug_exceptions(0x202, 1), 0);
        assert_eq!(pending_debug_exceptions(0x302, 8), 0, "NMI blocking is no shadow");
    }

    #[test]
    fn completed_instructions_step() {
        assert_eq!(after_completed(ENABLE | SINGLESTEP), Step::ExitToVmm);
        assert_eq!(after_completed(0), Step::GuestDb);
        assert_eq!(DR6_BS | DR6_ACTIVE_LOW, 0xffff_4ff0);
    }
}
