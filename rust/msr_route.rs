// SPDX-License-Identifier: GPL-2.0
//! A vCPU's MSRs between two VMCS loads (nested switches: MSR-load/store lists) — where each
//! lives then and the guest's WRMSR rules — and L2's TSC offset.

use crate::nested_msrs;
use crate::vcpu_state::{VcpuState, SYSCALL_MSRS};
use crate::vmx_core::controls::cr0;
use crate::vmx_core::guest_msr::{self, Msr, Writer};
use crate::vmx_ops;

/// Where the guest's SYSCALL MSRs are while nvmx works on the vCPU's state outside a VMCS
/// (a nested switch, rust/nested.rs): in the CPU inside a region, in the vCPU state outside.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum MsrHome {
    Region,
    Process,
}

/// An MSR of the vCPU between two VMCS loads, as RDMSR would read it (None: it would #GP):
/// the VMCS-held ones from the vCPU state (read_back put them there), the SYSCALL ones where
/// `home` says; L2's TSC with L1's offset for it.
pub(crate) fn msr_between_vmcs(st: &VcpuState, index: u32, home: MsrHome) -> Option<u64> {
    if nested_msrs::is_nested_msr(index) {
        return nested_msrs::get_msr(st, index);
    }
    let m = Msr::from_index(index).filter(|&m| st.guest_may_read(m))?;
    Some(match m {
        Msr::Tsc if st.nested.guest_mode => vmx_ops::rdtsc().wrapping_add(vmcs02_tsc_offset(st)),
        m if home == MsrHome::Region && SYSCALL_MSRS.contains(&m) => vmx_ops::rdmsr(m.index()),
        m => st.msr(m),
    })
}

/// WRMSR of the vCPU between two VMCS loads, with the guest's checks (Err: it would #GP).
pub(crate) fn set_msr_between_vmcs(st: &mut VcpuState, index: u32, v: u64, home: MsrHome) -> core::result::Result<(), ()> {
    if nested_msrs::is_nested_msr(index) {
        return nested_msrs::set_msr(st, index, v, false);
    }
    let m = Msr::from_index(index).ok_or(())?;
    let current = msr_between_vmcs(st, index, home).ok_or(())?;
    let v = check_guest_wrmsr(st, m, v, current, st.arch.cr0).ok_or(())?;
    if home == MsrHome::Region && SYSCALL_MSRS.contains(&m) {
        // SAFETY: checked above; the region puts the host's value back when it ends.
        unsafe { vmx_ops::wrmsr(m.index(), v) };
    } else {
        st.set_msr_by(m, v, Writer::Guest);
    }
    Ok(())
}

/// A guest's WRMSR of `value` to `m` (whose value is `current`, with guest CR0 `cr0`): the
/// value to keep, or None for #GP — the one set of rules for the exit handler (state in the
/// VMCS) and for nested switches (state in the vCPU).
pub(crate) fn check_guest_wrmsr(st: &VcpuState, m: Msr, value: u64, current: u64, cr0: u64) -> Option<u64> {
    guest_msr::check_write(m, value, &st.msr_write_context(Writer::Guest, current, cr0 & cr0::PG != 0))
}

/// L2's TSC offset: L0's for L1 plus L1's for L2 when L1 uses TSC offsetting.
pub(crate) fn vmcs02_tsc_offset(st: &VcpuState) -> u64 {
    st.nested.vmcs12.as_ref().map_or(st.tsc_offset, |v| crate::vmx_core::nested_switch::l2_tsc_offset(st.tsc_offset, v))
}

