// SPDX-License-Identifier: GPL-2.0
//! The nested-VMX state of a vCPU (the data; rust/nested.rs has the operations on it): L1's
//! VMX operation and capability MSRs, the cached VMCS12, whether L2 runs, the transition the
//! region carries out next, L1's state kept across an entry the CPU may still refuse, EPT02
//! and the shadow VMCS.

use kernel::prelude::*;

use crate::nested_ept::ShadowEpt;
use crate::vmx_core::arch_state::ArchState;
use crate::vmx_core::controls::secondary;
use crate::vmx_core::field_table as f;
use crate::vmx_core::nested_caps::L1VmxCaps;
use crate::vmx_core::nested_entry::{EntryEnv, EntryFailure};
use crate::vmx_core::nested_switch::ExitInfo;
use crate::vmx_core::vmcs12::Vmcs12;
use crate::vmx_core::vmx_insn::{L1Vmx, Offered};

/// An emulated VM entry that passed the checks, or an exit L1 gets: what the IRQs-off region
/// does between read-back of the current VMCS and loading the other one.
#[derive(Clone, Copy)]
pub(crate) enum Switch {
    /// VMLAUNCH (`launch`) / VMRESUME into L2; `insn_len` is the instruction's length (L1
    /// resumes after it if the CPU then refuses VMCS02 with VMfail).
    Enter { launch: bool, insn_len: u32 },
    /// An L2 exit for L1, with the exit-information fields as the CPU wrote them.
    Exit(ExitInfo),
    /// The CPU refused VMCS02 with VMfailValid(n): L1 gets the same VMfail.
    EntryVmFail(u32),
}

/// L1's state at an emulated VM entry, kept until the CPU has accepted VMCS02 (a VMfail
/// from the CPU sends L1 back to it).
#[derive(Clone, Copy)]
pub(crate) struct L1AtEntry {
    pub(crate) launch: bool,
    /// L1's state, RIP past its VMLAUNCH/VMRESUME.
    pub(crate) state: ArchState,
}

/// The nested-VMX state of a vCPU.
pub(crate) struct Nested {
    /// VMXON pointer and current-VMCS pointer.
    pub(crate) l1: L1Vmx,
    /// L1's IA32_VMX_* MSRs (KVM_SET_MSRS may take capabilities away before the first run).
    pub(crate) caps: L1VmxCaps,
    /// IA32_FEATURE_CONTROL as L1 sees it.
    pub(crate) feature_control: u64,
    /// The current VMCS12 while L1 has one (written back to L1's memory on VMCLEAR, VMPTRLD
    /// of another and VMXOFF).
    pub(crate) vmcs12: Option<KBox<Vmcs12>>,
    /// L2 is the vCPU's current state (VMCS02 runs).
    pub(crate) guest_mode: bool,
    /// The transition the region carries out next.
    pub(crate) switch: Option<Switch>,
    /// Until VMCS02's first entry succeeds.
    pub(crate) l1_at_entry: Option<L1AtEntry>,
    /// The last emulated VM entry that failed, for the VMM.
    pub(crate) last_failure: Option<EntryFailure>,
    /// The environment in which the current VMCS12's controls and host state last passed
    /// the entry checks (nested_entry::check_changed).
    pub(crate) entry_proved: Option<EntryEnv>,
    /// EPT02, once L1 has run L2 under its own EPT.
    pub(crate) shadow_ept: Option<KBox<ShadowEpt>>,
    /// VMCS shadowing of VMCS12 for L1's VMREAD/VMWRITE (rust/shadow_vmcs.rs).
    pub(crate) shadow: ShadowState,
    /// A VMX abort happened (SDM 28.7): L1 is to be shut down.
    pub(crate) vmx_abort: bool,
    /// While L2 runs with L1's VMX-preemption timer: the host TSC at which it reaches zero
    /// (the CPU's own timer, programmed for whichever of L0's and L1's ends first, runs it).
    pub(crate) l1_timer_deadline: Option<u64>,
}

impl Nested {
    pub(crate) fn new(stuff_msrs: bool) -> Self {
        let caps = match crate::HOST.as_ref() {
            Some(h) if stuff_msrs => h.l1_caps,
            _ => L1VmxCaps::none(),
        };
        Nested {
            l1: L1Vmx::default(),
            caps,
            feature_control: 0,
            vmcs12: None,
            guest_mode: false,
            switch: None,
            l1_at_entry: None,
            last_failure: None,
            entry_proved: None,
            shadow_ept: None,
            shadow: Default::default(),
            vmx_abort: false,
            l1_timer_deadline: None,
        }
    }

    /// L1 is out of VMX operation with nothing left of it: everything is as [`Nested::new`]
    /// makes it (no VMXON or current VMCS, no VMCS12, L2 neither running nor about to, no
    /// EPT02: a new VMXON starts afresh) but what belongs to the vCPU rather than to L1's VMX
    /// operation — the capability MSRs, IA32_FEATURE_CONTROL, the shadow VMCS and the last
    /// failed entry (for nvmx-status).
    pub(crate) fn forget_vmx_operation(&mut self) {
        *self = Nested {
            caps: self.caps,
            feature_control: self.feature_control,
            shadow: core::mem::take(&mut self.shadow),
            last_failure: self.last_failure,
            ..Nested::new(false)
        };
    }

    /// What the VMX instructions check against.
    pub(crate) fn offered(&self, maxphyaddr: u8) -> Offered {
        let ev = self.caps.ept_vpid;
        Offered {
            revision: self.caps.basic as u32 & 0x7fff_ffff,
            maxphyaddr,
            cr0_fixed0: self.caps.cr0.fixed0,
            cr0_fixed1: self.caps.cr0.fixed1,
            cr4_fixed0: self.caps.cr4.fixed0,
            cr4_fixed1: self.caps.cr4.fixed1,
            feature_control: self.feature_control,
            vmwrite_any_field: self.caps.misc & (1 << 29) != 0,
            shadow_vmcs: self.caps.secondary.allows(secondary::SHADOW_VMCS),
            invept_types: if ev & (1 << 20) != 0 { ((ev >> 24) & 6) as u8 } else { 0 },
            invvpid_types: if ev & (1 << 32) != 0 { ((ev >> 40) & 0xf) as u8 } else { 0 },
        }
    }

    /// Whether L1's VMX-preemption timer has reached zero while L2 runs (SDM 26.5.1: it
    /// counts down in VMX non-root operation; a VM exit when it reaches zero).
    pub(crate) fn l1_timer_expired(&self, now: u64) -> bool {
        self.guest_mode && self.l1_timer_deadline.is_some_and(|d| now >= d)
    }

    /// L1's timer rate: the timer counts down by 1 every 2^rate TSC ticks (IA32_VMX_MISC[4:0]).
    pub(crate) fn l1_timer_rate(&self) -> u32 {
        (self.caps.misc & 0x1f) as u32
    }

    /// Whether a VMX abort put L1 in shutdown since the last call.
    pub(crate) fn take_vmx_abort(&mut self) -> bool {
        core::mem::take(&mut self.vmx_abort)
    }

    /// L1's EPT pointer for L2 when VMCS12 enables EPT (checked at VM entry).
    pub(crate) fn eptp12(&self) -> Option<u64> {
        let v = self.vmcs12.as_ref()?;
        let sec = v.secondary_controls();
        (sec & secondary::ENABLE_EPT != 0).then(|| v.get(f::EPT_POINTER))
    }

    /// L1's EPT pointer while L2 runs under it (then L2's memory is EPT02's).
    pub(crate) fn l2_eptp12(&self) -> Option<u64> {
        self.eptp12().filter(|_| self.guest_mode)
    }

    /// L2 runs (or is about to) under L1's EPT.
    pub(crate) fn l2_under_ept(&self) -> bool {
        (self.guest_mode || matches!(self.switch, Some(Switch::Enter { .. }))) && self.eptp12().is_some()
    }
}

/// Where VMCS01's shadowing stands for a vCPU.
#[derive(Default)]
pub(crate) struct ShadowState {
    /// The vCPU's shadow VMCS (physical address), if the host has VMCS shadowing.
    pub(crate) region: Option<u64>,
    /// VMCS01 as written now has shadowing on (write_vmcs writes it off).
    pub(crate) active: bool,
    /// The region was VMCLEARed once (initialized); it is VMCLEARed after each use since.
    pub(crate) initialized: bool,
}

