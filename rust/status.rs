// SPDX-License-Identifier: GPL-2.0
//! What `nvmx-status` reads: the host-wide list of open vCPUs with their nested
//! state — VT-x exposed, L1 in VMX operation, L2 running, the last nested VM entry that
//! failed and why. A vCPU in KVM_RUN holds its own lock for the whole call, so the list is
//! kept apart from the vCPUs: each publishes its state into it after KVM_RUN and CPUID
//! changes (process context; only when something changed), and takes its entry out when its
//! fd is released.

use kernel::prelude::*;
use kernel::sync::global_lock;

use crate::uapi::{entry_kind, NvmxEntryFailure, NvmxVcpuStats, NvmxVcpuStatus};
use crate::vmx_core::nested_entry::EntryFailure;

/// A vCPU's entry: its uapi status and the effective UID that created it, which decides who
/// may see it.
#[derive(Clone, Copy)]
struct Entry {
    owner: u32,
    status: NvmxVcpuStatus,
}

/// The open vCPUs, and what the closed ones counted.
struct Registry {
    open: KVec<Entry>,
    closed: ClosedTotals,
}

/// The nested counters of the vCPUs closed since load (`struct nvmx_host_status`).
#[derive(Clone, Copy, Default)]
pub(crate) struct ClosedTotals {
    pub(crate) l2_exits: u64,
    pub(crate) l2_exits_reflected: u64,
}

global_lock! {
    // SAFETY: initialized in module init (`init`) before any vCPU exists.
    unsafe(uninit) static VCPUS: Mutex<Registry> =
        Registry { open: KVec::new(), closed: ClosedTotals { l2_exits: 0, l2_exits_reflected: 0 } };
}

/// Module init: the lock is usable from here on.
pub(crate) fn init() {
    // SAFETY: called once, from module init, before the device is registered.
    unsafe { VCPUS.init() };
}

/// `NVMX_VCPU_*` flags: CPUID.1:ECX.VMX offered, L1 in VMX operation, L2 running.
pub(crate) use crate::uapi::vcpu_flags as flags;

/// A vCPU's published status: its flags and last entry failure.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Published {
    pub(crate) flags: u32,
    pub(crate) failure: Option<EntryFailure>,
}

/// `s` as a NUL-terminated C string in `dst` (cut to fit).
fn copy_str(dst: &mut [core::ffi::c_char], s: &str) {
    let room = dst.len().saturating_sub(1);
    for (d, &b) in dst.iter_mut().take(room).zip(s.as_bytes()) {
        *d = b as core::ffi::c_char;
    }
}

/// The uapi form of an entry failure (kind 0: none).
pub(crate) fn failure_uapi(f: Option<EntryFailure>) -> NvmxEntryFailure {
    let mut out = NvmxEntryFailure::default();
    let Some(f) = f else { return out };
    let (kind, qualification) = match f {
        EntryFailure::Controls(_) => (entry_kind::CONTROLS, 0),
        EntryFailure::HostState(_) => (entry_kind::HOST_STATE, 0),
        EntryFailure::GuestState(_, q) => (entry_kind::GUEST_STATE, q),
    };
    let x = f.failed();
    out.kind = kind;
    out.field = x.field.encoding();
    out.value = x.value;
    out.qualification = qualification;
    copy_str(&mut out.section, x.section);
    copy_str(&mut out.rule, x.rule);
    out
}

/// A new vCPU (`key`: unique for the module's life) of VM `vm_id` created by process `pid`.
pub(crate) fn add(key: u64, vm_id: u32, vcpu_id: u32, pid: u32) -> Result {
    let owner = crate::shim::current_euid();
    let mut reg = VCPUS.lock();
    reg.open.push(
        Entry { owner, status: NvmxVcpuStatus { key, vm_id, vcpu_id, pid, ..NvmxVcpuStatus::default() } },
        GFP_KERNEL_ACCOUNT,
    )?;
    Ok(())
}

/// The vCPU's fd is gone; `stats` are its counters, added to the closed totals.
pub(crate) fn remove(key: u64, stats: &NvmxVcpuStats) {
    let mut reg = VCPUS.lock();
    if let Some(i) = reg.open.iter().position(|e| e.status.key == key) {
        let _ = reg.open.remove(i);
        reg.closed.l2_exits = reg.closed.l2_exits.wrapping_add(stats.l2_exits);
        reg.closed.l2_exits_reflected = reg.closed.l2_exits_reflected.wrapping_add(stats.l2_exits_reflected);
    }
}

/// The counters of the vCPUs closed since load.
pub(crate) fn closed_totals() -> ClosedTotals {
    VCPUS.lock().closed
}

/// Publish a vCPU's state.
pub(crate) fn publish(key: u64, p: Published) {
    let mut reg = VCPUS.lock();
    if let Some(e) = reg.open.iter_mut().find(|e| e.status.key == key) {
        e.status.flags = p.flags;
        e.status.last_failure = failure_uapi(p.failure);
    }
}

/// Whom the caller may see: every vCPU with CAP_SYS_ADMIN (nvmx-status run as root), else
/// only those its own effective UID created — other users' PIDs and L1 state are theirs.
fn visible_to_caller() -> impl Fn(&Entry) -> bool {
    let all = crate::shim::capable_sys_admin();
    let me = crate::shim::current_euid();
    move |e| all || e.owner == me
}

/// How many vCPUs the caller may see.
pub(crate) fn count() -> usize {
    let visible = visible_to_caller();
    VCPUS.lock().open.iter().filter(|e| visible(e)).count()
}

/// A copy of the vCPUs the caller may see (in creation order within each VM), taken under
/// the lock and handed out after it: the lock is taken by every KVM_RUN return and vCPU
/// open/close, so nothing that can fault or wait on user memory happens under it.
pub(crate) fn snapshot() -> Result<KVec<NvmxVcpuStatus>> {
    let visible = visible_to_caller();
    loop {
        let n = VCPUS.lock().open.len();
        let mut out = KVec::with_capacity(n, GFP_KERNEL)?;
        let reg = VCPUS.lock();
        let list = &reg.open;
        if list.len() > out.capacity() {
            continue; // more vCPUs meanwhile: allocate again
        }
        for e in list.iter().filter(|e| visible(e)) {
            // Cannot fail: the capacity covers the whole list.
            let _ = out.push_within_capacity(e.status);
        }
        return Ok(out);
    }
}
