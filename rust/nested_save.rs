// SPDX-License-Identifier: GPL-2.0
//! `KVM_GET_NESTED_STATE` / `KVM_SET_NESTED_STATE`: a vCPU's nested-VMX state in KVM's
//! format (rust/core/src/kvm_nested_state.rs for the header and its checks, KVM's struct
//! vmcs12 for the VMCS12), so that a VMM saves a VM whose L1 is in VMX operation or runs
//! L2, and restores it — into nvmx or into kvm_intel — with L1 and L2 carrying on.

use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use crate::nested;
use crate::vcpu::Vcpu;
use crate::vm::read_user;
use crate::vmx_core::kvm_nested_state::{self as abi, Header, Restore, Saved};
use crate::vmx_core::nested_caps::VMCS12_REVISION;
use crate::vmx_core::nested_switch;
use crate::vmx_core::vmcs12::Vmcs12;
use crate::vmx_core::vmx_insn::L1Vmx;

/// `KVM_CAP_NESTED_STATE`: the most a state takes, with nested VMX offered (0 without).
pub(crate) fn max_size() -> u32 {
    if nested::available() { abi::MAX_SIZE } else { 0 }
}

/// `KVM_GET_NESTED_STATE`: E2BIG with the size needed written back if the caller's `size`
/// is smaller, as on KVM. While L2 runs, the VMCS12 first gets L2's current guest state
/// (KVM's sync_vmcs02_to_vmcs12), what the VMM restores L2 from.
pub(crate) fn get(vcpu: &Vcpu, arg: usize) -> Result<isize> {
    let user_size: u32 = read_user(arg.checked_add(4).ok_or(EFAULT)?)?;
    let mut st = vcpu.state.lock();
    let guest_mode = st.nested.guest_mode;
    let timer_on = st.nested.vmcs12.as_ref().is_some_and(|v| v.preemption_timer().is_some());
    let shadow = nested::shadow_vmcs12_pointer(&st);
    let saved = Saved {
        vmxon: st.nested.l1.vmxon,
        current: st.nested.l1.current,
        has_vmcs12: st.nested.l1.current.is_some() && st.nested.vmcs12.is_some(),
        has_shadow: shadow.is_some(),
        guest_mode,
        run_pending: st.nested.l1_at_entry.is_some(),
        // KVM's unit: L1's TSC shifted right by the timer's rate (IA32_VMX_MISC[4:0]).
        timer_deadline: st.nested.l1_timer_deadline.filter(|_| timer_on).map(|d| d.wrapping_add(st.tsc_offset) >> st.nested.l1_timer_rate()),
    };
    let h = abi::header_for(&saved);
    if user_size < h.size {
        UserSlice::new(UserPtr::from_addr(arg.wrapping_add(4)), 4).writer().write(&h.size)?;
        return Err(E2BIG);
    }
    let mut buf = KVec::from_elem(0u8, h.size as usize, GFP_KERNEL)?;
    let mut head = [0u8; abi::HEADER_BYTES];
    h.write(&mut head);
    buf[..abi::HEADER_BYTES].copy_from_slice(&head);
    if saved.has_vmcs12 {
        let arch = st.arch;
        if let Some(v) = st.nested.vmcs12.as_mut() {
            if guest_mode {
                nested_switch::save_l2(&arch, v);
            }
            v.to_region(&mut buf[abi::HEADER_BYTES..abi::HEADER_BYTES + abi::VMCS12_BYTES]);
        }
        if let Some(link) = shadow {
            let out = &mut buf[abi::HEADER_BYTES + abi::VMCS12_BYTES..];
            if !vcpu.vm.with_memory(|eptp| nested::read_shadow_vmcs12(eptp, link, out)) {
                return Err(EFAULT);
            }
        }
    }
    drop(st);
    UserSlice::new(UserPtr::from_addr(arg), buf.len()).writer().write_slice(&buf)?;
    Ok(0)
}

/// `KVM_SET_NESTED_STATE`: the header's checks (EINVAL, kvm_nested_state::check_header),
/// the VMCS12's revision (EINVAL) and, in guest mode, the shadow VMCS12 its VMCS shadowing
/// needs (EINVAL without it or with a wrong revision; it goes back into L1's memory at the
/// link pointer) and the VM-entry checks of its controls, host and guest state (EINVAL) —
/// all before anything changes. Then L1 leaves whatever VMX
/// operation it was in (KVM's vmx_leave_nested), enters the restored one with the VMCS12
/// current (cached, as after VMPTRLD; L1's memory is not written) and, in guest mode, L2 is
/// entered. Needs no exit to L1 and leaves L1's memory as the VMM restored it.
pub(crate) fn set(vcpu: &Vcpu, arg: usize) -> Result<isize> {
    let head: [u8; abi::HEADER_BYTES] = read_user(arg)?;
    let h = Header::parse(&head);
    let mut st = vcpu.state.lock();
    let vmx = st.features.vmx && nested::available();
    let restore = abi::check_header(&h, vmx, st.features.maxphyaddr).map_err(|_| EINVAL)?;
    let read_vmcs = |offset: usize| -> Result<KBox<Vmcs12>> {
        let mut region = KVec::from_elem(0u8, abi::VMCS12_BYTES, GFP_KERNEL)?;
        UserSlice::new(UserPtr::from_addr(arg.checked_add(offset).ok_or(EFAULT)?), region.len()).reader().read_slice(&mut region)?;
        Ok(KBox::new(Vmcs12::from_region(&region), GFP_KERNEL_ACCOUNT)?)
    };
    let (vmcs12, shadow) = match restore {
        Restore::Current { guest_mode, shadow_data, .. } => {
            let v = read_vmcs(abi::HEADER_BYTES)?;
            if v.revision & 0x7fff_ffff != VMCS12_REVISION {
                return Err(EINVAL);
            }
            // The shadow VMCS12 a guest-mode VMCS12 with VMCS shadowing needs.
            let shadow = if let Some(link) = v.shadow_vmcs_link().filter(|_| guest_mode) {
                if !shadow_data {
                    return Err(EINVAL);
                }
                let s = read_vmcs(abi::HEADER_BYTES + abi::VMCS12_BYTES)?;
                if s.revision != VMCS12_REVISION | 1 << 31 {
                    return Err(EINVAL);
                }
                Some((link, s))
            } else {
                None
            };
            (Some(v), shadow)
        }
        _ => (None, None),
    };
    vcpu.vm.with_memory(|eptp| {
        let mut vmcs12 = vmcs12;
        // The entry checks read the link pointer's region in L1's memory, as KVM's do; the
        // shadow VMCS12 is written there only once everything passed.
        if let (Restore::Current { guest_mode: true, .. }, Some(v)) = (restore, vmcs12.as_mut()) {
            if !nested::restored_entry_valid(&st, v, eptp) {
                return Err(EINVAL);
            }
        }
        if let Some((link, s)) = shadow.as_ref() {
            if !nested::write_shadow_vmcs12(eptp, *link, s) {
                return Err(EINVAL);
            }
        }
        nested::leave_vmx_operation(&mut st, eptp);
        match restore {
            Restore::Off => {}
            Restore::VmxOn { vmxon } => st.nested.l1 = L1Vmx { vmxon: Some(vmxon), current: None },
            Restore::Current { vmxon, vmcs12: current, guest_mode, run_pending, timer_deadline, .. } => {
                st.nested.l1 = L1Vmx { vmxon: Some(vmxon), current: Some(current) };
                st.nested.vmcs12 = vmcs12;
                if guest_mode {
                    nested::enter_restored(&mut st, run_pending, timer_deadline);
                }
            }
        }
        Ok(0)
    })
}
