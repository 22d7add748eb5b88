// SPDX-License-Identifier: GPL-2.0
//! A vCPU as an object: its VMCS pages, VPID, mailbox, `struct kvm_run` and PIO pages and its
//! state (rust/vcpu_state.rs); the file that owns it is rust/vcpu_fd.rs.

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::page::Page;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

use crate::apic::Mailbox;
use crate::shim;
use crate::vcpu_state::VcpuState;
use crate::vm::Vm;

/// VPIDs in use, one bit each (VPID 0 is the host's and never handed out).
static VPIDS: [AtomicU64; 1024] = [const { AtomicU64::new(0) }; 1024];

/// A vCPU's VPID (SDM 29.1): its guest-linear TLB entries are tagged with it, so they
/// survive VM exits and need no flush while the vCPU stays on one CPU with one EPT.
pub(crate) struct Vpid(pub(crate) u16);

impl Vpid {
    /// A free VPID, or VPID 0 (VPID not used: every entry and exit flushes) when the CPU
    /// has no VPID or all 65535 are taken.
    pub(crate) fn alloc(supported: bool) -> Self {
        if supported {
            for (w, word) in VPIDS.iter().enumerate() {
                let mut cur = word.load(Ordering::Relaxed);
                loop {
                    let free = !cur & if w == 0 { !1 } else { u64::MAX };
                    if free == 0 {
                        break;
                    }
                    let bit = free.trailing_zeros();
                    match word.compare_exchange(cur, cur | (1 << bit), Ordering::AcqRel, Ordering::Relaxed) {
                        Ok(_) => return Vpid((w * 64 + bit as usize) as u16),
                        Err(now) => cur = now,
                    }
                }
            }
        }
        Vpid(0)
    }
}

impl Drop for Vpid {
    fn drop(&mut self) {
        if self.0 != 0 {
            VPIDS[self.0 as usize / 64].fetch_and(!(1 << (self.0 % 64)), Ordering::AcqRel);
        }
    }
}

/// Pages of the vCPU mmap: `struct kvm_run`, then the PIO data page (KVM_PIO_PAGE_OFFSET 1).
pub(crate) const MMAP_PAGES: usize = 2;

/// A vCPU, owned by its fd.
#[pin_data]
pub(crate) struct Vcpu {
    pub(crate) vm: Arc<Vm>,
    pub(crate) id: u32,
    /// `struct kvm_run`, shared with userspace through the mmap.
    pub(crate) run_page: Page,
    /// PIO data (`kvm_run.io.data_offset` points here).
    pub(crate) pio_page: Page,
    /// The VMCS region (VMCLEARed whenever nvmx leaves VMX operation).
    pub(crate) _vmcs: Page,
    pub(crate) vmcs_phys: u64,
    /// VMCS02: the VMCS the CPU runs L2 on (rust/nested.rs), VMCLEARed like the other.
    pub(crate) _vmcs02: Page,
    pub(crate) vmcs02_phys: u64,
    /// The shadow VMCS of L1's VMREAD/VMWRITE (rust/shadow_vmcs.rs), if the host shadows.
    pub(crate) _shadow_vmcs: Option<crate::shadow_vmcs::ShadowVmcs>,
    /// What other vCPUs post to this one's local APIC.
    pub(crate) mailbox: Arc<Mailbox>,
    pub(crate) vpid: Vpid,
    /// The vCPU's entry in the host-wide status list (rust/status.rs); unique for the
    /// module's life, so it also names the vCPU a CPU last entered (IBPB, rust/run.rs).
    pub(crate) status_key: u64,
    /// Serializes the vCPU's ioctls; a task waiting here can be killed (KVM's vcpu->mutex).
    /// `state` is then taken uncontended by the ioctls.
    pub(crate) ioctl_lock: shim::IoctlLock,
    #[pin]
    pub(crate) state: Mutex<VcpuState>,
}
