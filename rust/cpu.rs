// SPDX-License-Identifier: GPL-2.0
//! Per-CPU VMX operation: VMXON regions and the IRQs-off enter/leave sequence.
//!
//! Linux 7.3 keeps a CR4 shadow that does not know about a VMXE set by anyone but KVM, and an
//! IPI may rewrite CR4 from it. nvmx therefore sets CR4.VMXE and is in VMX operation only
//! inside regions where interrupts are off, and leaves (VMXOFF, CR4 restored) before they
//! are enabled again (Documentation/nvmx.rst, "Why IRQs-off regions only").

use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use kernel::page::Page;
use kernel::prelude::*;

use crate::shim;
use crate::vmx_core::host::{self, CpuRefusal, HostCaps};
use crate::vmx_ops::{self, VmFail};

/// The VMXON region of one CPU (SDM 25.11.5): a zeroed page whose first dword holds the VMCS
/// revision id.
struct VmxonRegion {
    /// Keeps the page alive; never mapped to anyone else.
    _page: Page,
    phys: u64,
}

impl VmxonRegion {
    fn new(revision_id: u32) -> Result<Self> {
        let page = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
        let rev = revision_id.to_le_bytes();
        // SAFETY: `rev` is valid for 4 bytes and the page has 4096; nobody else maps it.
        unsafe { page.write_raw(rev.as_ptr(), 0, rev.len())? };
        let phys = shim::page_phys(&page);
        Ok(Self { _page: page, phys })
    }
}

/// What happened on one CPU during a VMX round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CpuOutcome {
    /// The CPU was offline and did not take part.
    NotRun,
    /// VMXON and VMXOFF both succeeded; CR4 is as before.
    Ok,
    /// The CPU refused before VMXON (another hypervisor, CR0/CR4 fixed bits).
    Refused(CpuRefusal),
    /// VMXON failed (CR4 restored).
    VmxonFailed(VmFail),
    /// VMXOFF failed (CR4 restored as far as the CPU allows).
    VmxoffFailed(VmFail),
}

/// Shared between the caller and the IPI callbacks: inputs read-only, one result slot per
/// CPU written only by that CPU.
struct RoundTrip<'a> {
    caps: &'a HostCaps,
    regions: &'a [VmxonRegion],
    state: &'a [AtomicU32],
    detail: &'a [AtomicU64],
}

// Outcome encoding in `state` (written by the CPU, read after `on_each_cpu` returns).
const S_NOT_RUN: u32 = 0;
const S_OK: u32 = 1;
const S_OTHER_HYPERVISOR: u32 = 2;
const S_CR0: u32 = 3;
const S_CR4: u32 = 4;
const S_VMXON_INVALID: u32 = 5;
const S_VMXON_VALID: u32 = 6;
const S_VMXOFF_INVALID: u32 = 7;
const S_VMXOFF_VALID: u32 = 8;

/// Runs on each CPU in IPI context (IRQs off): CR4.VMXE, VMXON, VMXOFF, CR4 restored.
///
/// # Safety
///
/// `info` points to a `RoundTrip` that outlives the call (`on_each_cpu` waits for every
/// CPU), and the caller runs it with IRQs off.
unsafe extern "C" fn round_trip_on_cpu(info: *mut c_void) {
    // SAFETY: `info` is the `RoundTrip` that `VmxCpus::round_trip` keeps alive until
    // `on_each_cpu` has returned on every CPU.
    let rt = unsafe { &*(info as *const RoundTrip<'_>) };
    let cpu = shim::this_cpu() as usize;
    let (Some(region), Some(state), Some(detail)) =
        (rt.regions.get(cpu), rt.state.get(cpu), rt.detail.get(cpu))
    else {
        return;
    };
    let (s, d) = match vmx_round_trip(rt.caps, region.phys) {
        CpuOutcome::Ok => (S_OK, 0),
        CpuOutcome::Refused(CpuRefusal::OtherHypervisor) => (S_OTHER_HYPERVISOR, 0),
        CpuOutcome::Refused(CpuRefusal::Cr0(bits)) => (S_CR0, bits),
        CpuOutcome::Refused(CpuRefusal::Cr4(bits)) => (S_CR4, bits),
        CpuOutcome::VmxonFailed(VmFail::Invalid) => (S_VMXON_INVALID, 0),
        CpuOutcome::VmxonFailed(VmFail::Valid) => (S_VMXON_VALID, 0),
        CpuOutcome::VmxoffFailed(VmFail::Invalid) => (S_VMXOFF_INVALID, 0),
        CpuOutcome::VmxoffFailed(VmFail::Valid) => (S_VMXOFF_VALID, 0),
        CpuOutcome::NotRun => (S_NOT_RUN, 0),
    };
    detail.store(d, Ordering::Relaxed);
    state.store(s, Ordering::Relaxed);
}

/// Enter and leave VMX operation on this CPU. Must run with interrupts disabled.
fn vmx_round_trip(caps: &HostCaps, vmxon_phys: u64) -> CpuOutcome {
    let cr4_before = vmx_ops::read_cr4();
    let cr4_vmx = match host::cpu_entry_cr4(caps, vmx_ops::read_cr0(), cr4_before) {
        Ok(v) => v,
        Err(r) => return CpuOutcome::Refused(r),
    };
    // SAFETY: IRQs are off (IPI context) until CR4 is restored below; only VMXE changes.
    unsafe { vmx_ops::write_cr4(cr4_vmx) };
    // SAFETY: VMXE is set, IRQs are off, the region is this CPU's own page with the revision id.
    let outcome = match unsafe { vmx_ops::vmxon(vmxon_phys) } {
        // SAFETY: VMXON just succeeded in this IRQs-off region.
        Ok(()) => match unsafe { vmx_ops::vmxoff() } {
            Ok(()) => CpuOutcome::Ok,
            Err(e) => CpuOutcome::VmxoffFailed(e),
        },
        Err(e) => CpuOutcome::VmxonFailed(e),
    };
    // SAFETY: still IRQs-off; this restores the value the kernel's shadow holds.
    unsafe { vmx_ops::write_cr4(cr4_before) };
    outcome
}

/// nvmx's per-CPU VMX resources, owned by the module for its whole life.
pub(crate) struct VmxCpus {
    regions: KVec<VmxonRegion>,
    /// CPUs that completed VMXON/VMXOFF at load.
    pub(crate) vmx_cpus: u32,
}

impl VmxCpus {
    /// Allocate a VMXON region for every possible CPU (never inside an IRQs-off region), then
    /// verify VMX operation on every online CPU. Fails with EBUSY if another hypervisor owns
    /// VMX on any CPU, leaving every CPU as it was.
    pub(crate) fn bring_up(caps: &HostCaps) -> Result<Self> {
        let nr = kernel::cpu::nr_cpu_ids() as usize;
        let mut regions = KVec::with_capacity(nr, GFP_KERNEL)?;
        for _ in 0..nr {
            regions.push(VmxonRegion::new(caps.basic.revision_id())?, GFP_KERNEL)?;
        }
        let mut this = Self { regions, vmx_cpus: 0 };
        let outcomes = this.round_trip(caps)?;

        let mut first_error: Option<Error> = None;
        for (cpu, outcome) in outcomes.iter().enumerate() {
            match outcome {
                CpuOutcome::NotRun => {}
                CpuOutcome::Ok => {
                    pr_info!("cpu{cpu}: VMXON ok, VMXOFF ok, CR4 restored\n");
                    this.vmx_cpus += 1;
                }
                CpuOutcome::Refused(r) => {
                    pr_err!("cpu{cpu}: {}\n", format_args!("{r}"));
                    first_error.get_or_insert(Error::from_errno(-r.errno()));
                }
                CpuOutcome::VmxonFailed(e) => {
                    pr_err!("cpu{cpu}: VMXON failed ({e:?})\n");
                    first_error.get_or_insert(EIO);
                }
                CpuOutcome::VmxoffFailed(e) => {
                    pr_err!("cpu{cpu}: VMXOFF failed ({e:?})\n");
                    first_error.get_or_insert(EIO);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(this)
    }

    /// Physical addresses of the VMXON regions, by CPU id.
    pub(crate) fn vmxon_phys(&self) -> Result<KVec<u64>> {
        let mut v = KVec::with_capacity(self.regions.len(), GFP_KERNEL)?;
        for r in self.regions.iter() {
            v.push(r.phys, GFP_KERNEL)?;
        }
        Ok(v)
    }

    /// One VMXON/VMXOFF round trip on every online CPU; the outcome per CPU id.
    fn round_trip(&self, caps: &HostCaps) -> Result<KVec<CpuOutcome>> {
        let nr = self.regions.len();
        let mut state = KVec::with_capacity(nr, GFP_KERNEL)?;
        let mut detail = KVec::with_capacity(nr, GFP_KERNEL)?;
        for _ in 0..nr {
            state.push(AtomicU32::new(S_NOT_RUN), GFP_KERNEL)?;
            detail.push(AtomicU64::new(0), GFP_KERNEL)?;
        }
        let rt = RoundTrip { caps, regions: &self.regions, state: &state, detail: &detail };
        {
            let _hotplug = shim::CpusReadGuard::lock();
            // SAFETY: `round_trip_on_cpu` runs with IRQs off and does not sleep; `rt` outlives
            // the call, which waits for every CPU.
            unsafe {
                shim::on_each_cpu(round_trip_on_cpu, &rt as *const RoundTrip<'_> as *mut c_void)
            };
        }
        let mut out = KVec::with_capacity(nr, GFP_KERNEL)?;
        for (s, d) in state.iter().zip(detail.iter()) {
            let d = d.load(Ordering::Relaxed);
            out.push(
                match s.load(Ordering::Relaxed) {
                    S_OK => CpuOutcome::Ok,
                    S_OTHER_HYPERVISOR => CpuOutcome::Refused(CpuRefusal::OtherHypervisor),
                    S_CR0 => CpuOutcome::Refused(CpuRefusal::Cr0(d)),
                    S_CR4 => CpuOutcome::Refused(CpuRefusal::Cr4(d)),
                    S_VMXON_INVALID => CpuOutcome::VmxonFailed(VmFail::Invalid),
                    S_VMXON_VALID => CpuOutcome::VmxonFailed(VmFail::Valid),
                    S_VMXOFF_INVALID => CpuOutcome::VmxoffFailed(VmFail::Invalid),
                    S_VMXOFF_VALID => CpuOutcome::VmxoffFailed(VmFail::Valid),
                    _ => CpuOutcome::NotRun,
                },
                GFP_KERNEL,
            )?;
        }
        Ok(out)
    }

}
