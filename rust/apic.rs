// SPDX-License-Identifier: GPL-2.0
//! The in-kernel local APIC of a vCPU (`KVM_CAP_SPLIT_IRQCHIP`): the register model lives in
//! the core (rust/core/src/lapic.rs) inside the vCPU state; this file is the part other
//! vCPUs reach while that state is locked by a running vCPU — its mailbox.
//!
//! An IPI is posted, never delivered directly: the sender sets the vector's bit in the
//! target's mailbox, then makes sure the target notices — a reschedule IPI to the CPU it
//! runs on (any interrupt makes the guest exit: external-interrupt exiting), or a wake-up
//! if it waits in HLT. The target merges posted bits into its IRR before every entry. The
//! waiter checks for posted work under the mailbox lock and senders notify under it, so a
//! wake-up cannot be lost between the check and the sleep.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

use kernel::prelude::*;
use kernel::sync::{new_condvar, new_spinlock, Arc, CondVar, CondVarTimeoutResult, SpinLock};

use crate::shim;
use crate::vmx_core::lapic::{self, Delivery, Destination, Ipi, Lapic};

/// What other vCPUs may post to one vCPU, and how to wake it.
#[pin_data]
pub(crate) struct Mailbox {
    /// The vCPU's APIC ID and the logical-destination state (mirrored from its Lapic
    /// after each register write, for senders to match destinations without its lock).
    pub(crate) apic_id: AtomicU32,
    ldr: AtomicU32,
    dfr: AtomicU32,
    x2apic: AtomicBool,
    enabled: AtomicBool,
    posted: [AtomicU32; 8],
    nmi: AtomicBool,
    /// An INIT arrived; a SIPI's vector + 1 (0: none).
    init: AtomicBool,
    sipi: AtomicU32,
    /// The CPU the vCPU is in the guest on, or -1.
    running_cpu: AtomicI32,
    /// The VM memory generation of the EPT the vCPU runs with.
    generation: AtomicU64,
    #[pin]
    lock: SpinLock<()>,
    #[pin]
    wake: CondVar,
}

impl Mailbox {
    /// A mailbox for the vCPU with APIC ID `id`.
    pub(crate) fn new(id: u32) -> impl PinInit<Self> {
        pin_init!(Mailbox {
            apic_id: AtomicU32::new(id),
            ldr: AtomicU32::new(0),
            dfr: AtomicU32::new(u32::MAX),
            x2apic: AtomicBool::new(false),
            enabled: AtomicBool::new(false),
            posted: [const { AtomicU32::new(0) }; 8],
            nmi: AtomicBool::new(false),
            init: AtomicBool::new(false),
            sipi: AtomicU32::new(0),
            running_cpu: AtomicI32::new(-1),
            generation: AtomicU64::new(0),
            lock <- new_spinlock!(()),
            wake <- new_condvar!(),
        })
    }

    /// Mirror the destination-relevant registers of `apic` (after every write to it).
    pub(crate) fn mirror(&self, apic: &Lapic) {
        let (ldr, dfr) = apic.logical_regs();
        self.apic_id.store(apic.id, Ordering::Relaxed);
        self.ldr.store(ldr, Ordering::Relaxed);
        self.dfr.store(dfr, Ordering::Relaxed);
        self.x2apic.store(apic.x2apic, Ordering::Relaxed);
        self.enabled.store(apic.enabled(), Ordering::Relaxed);
    }

    /// Whether an interrupt from outside (an MSI, not an IPI of this vCPU) for `dest`
    /// reaches this vCPU.
    pub(crate) fn is_target(&self, dest: Destination) -> bool {
        self.matches(dest, false)
    }

    fn matches(&self, dest: Destination, from_self: bool) -> bool {
        match dest {
            Destination::Myself => from_self,
            Destination::All { include_self } => include_self || !from_self,
            Destination::Physical(id) => self.apic_id.load(Ordering::Relaxed) == id,
            Destination::Logical(d) => lapic::matches_logical(
                self.x2apic.load(Ordering::Relaxed),
                self.ldr.load(Ordering::Relaxed),
                self.dfr.load(Ordering::Relaxed),
                d,
            ),
        }
    }

    /// Post `delivery` and make the vCPU notice. Callable with IRQs off.
    fn post(&self, delivery: Delivery) {
        match delivery {
            Delivery::Fixed(v) => {
                self.posted[v as usize / 32].fetch_or(1 << (v % 32), Ordering::SeqCst);
            }
            Delivery::Nmi => self.nmi.store(true, Ordering::SeqCst),
            Delivery::Init => self.init.store(true, Ordering::SeqCst),
            Delivery::Sipi(v) => self.sipi.store(v as u32 + 1, Ordering::SeqCst),
        }
        let cpu = self.running_cpu.load(Ordering::SeqCst);
        if cpu >= 0 && cpu as u32 != shim::this_cpu() {
            shim::kick_cpu(cpu as u32);
        }
        let _guard = self.lock.lock();
        self.wake.notify_all();
    }

    /// Take what was posted: the 256-bit IRR to merge and whether an NMI is pending.
    pub(crate) fn take(&self) -> ([u32; 8], bool) {
        let mut bits = [0u32; 8];
        for (b, p) in bits.iter_mut().zip(&self.posted) {
            *b = p.swap(0, Ordering::SeqCst);
        }
        (bits, self.nmi.swap(false, Ordering::SeqCst))
    }

    /// Take a pending INIT and SIPI (its vector).
    pub(crate) fn take_init_sipi(&self) -> (bool, Option<u8>) {
        let init = self.init.swap(false, Ordering::SeqCst);
        let sipi = self.sipi.swap(0, Ordering::SeqCst);
        (init, sipi.checked_sub(1).map(|v| v as u8))
    }

    /// Take a posted NMI (KVM_SET_VCPU_EVENTS replaces what is pending).
    pub(crate) fn take_nmi(&self) -> bool {
        self.nmi.swap(false, Ordering::SeqCst)
    }

    /// Whether an NMI was posted and not taken yet.
    pub(crate) fn nmi_posted(&self) -> bool {
        self.nmi.load(Ordering::SeqCst)
    }

    /// Set or withdraw a waiting INIT (KVM_SET_VCPU_EVENTS' `latched_init`).
    pub(crate) fn set_init_pending(&self, init: bool) {
        self.init.store(init, Ordering::SeqCst);
    }

    /// Whether an INIT is waiting (a running vCPU must leave the guest to take it).
    pub(crate) fn init_pending(&self) -> bool {
        self.init.load(Ordering::SeqCst)
    }

    fn has_posted(&self) -> bool {
        self.nmi.load(Ordering::SeqCst)
            || self.init.load(Ordering::SeqCst)
            || self.sipi.load(Ordering::SeqCst) != 0
            || self.posted.iter().any(|p| p.load(Ordering::SeqCst) != 0)
    }

    /// The vCPU enters the guest on `cpu` with the EPT of memory `generation` (IRQs off) /
    /// has left it (`None`).
    pub(crate) fn set_running(&self, cpu: Option<(u32, u64)>) {
        if let Some((_, generation)) = cpu {
            self.generation.store(generation, Ordering::SeqCst);
        }
        self.running_cpu.store(cpu.map_or(-1, |(c, _)| c as i32), Ordering::SeqCst);
    }

    /// Whether the vCPU is in the guest with an EPT older than `generation`; if so, kick it
    /// out (it takes the new EPT on its next entry).
    pub(crate) fn kick_if_stale(&self, generation: u64) -> bool {
        let cpu = self.running_cpu.load(Ordering::SeqCst);
        if cpu < 0 || self.generation.load(Ordering::SeqCst) >= generation {
            return false;
        }
        shim::kick_cpu(cpu as u32);
        true
    }

    /// Sleep (HLT with nothing to deliver, or waiting for INIT/SIPI) until something is posted, `timeout_ms` passes
    /// (the APIC timer's deadline; `None`: no timer runs), or a signal arrives. Returns
    /// false on a signal.
    pub(crate) fn wait(&self, timeout_ms: Option<u64>) -> bool {
        let mut guard = self.lock.lock();
        if self.has_posted() {
            return true;
        }
        let jiffies = match timeout_ms {
            Some(ms) => kernel::time::msecs_to_jiffies(ms.clamp(1, u32::MAX as u64) as u32),
            None => kernel::time::Jiffies::MAX,
        };
        !matches!(self.wake.wait_interruptible_timeout(&mut guard, jiffies), CondVarTimeoutResult::Signal { .. })
    }
}

/// Send `ipi` from the vCPU whose mailbox is `from` to every matching vCPU of the VM
/// (`all`). Callable with IRQs off.
/// An MSI from the VMM (KVM_SIGNAL_MSI): posted to every matching APIC that takes it, or for
/// lowest-priority delivery to the first such in vCPU order. `None`: no APIC matched the
/// destination; otherwise how many took it.
pub(crate) fn deliver_msi(all: &[Arc<Mailbox>], msi: lapic::Msi) -> Option<usize> {
    let mut matched = false;
    let mut taken = 0;
    for m in all {
        if !m.matches(msi.ipi.dest, false) {
            continue;
        }
        matched = true;
        let accepts = !matches!(msi.ipi.delivery, Delivery::Fixed(_)) || m.enabled.load(Ordering::Relaxed);
        if accepts {
            m.post(msi.ipi.delivery);
            taken += 1;
            if msi.lowest_priority {
                break;
            }
        }
    }
    matched.then_some(taken)
}

pub(crate) fn send(all: &[Arc<Mailbox>], from: &Mailbox, ipi: Ipi) {
    for m in all {
        let is_self = core::ptr::eq(&**m, from);
        // A software-disabled APIC drops fixed interrupts (SDM 11.4.7.2; KVM's
        // apic_accept_irq); NMIs still arrive.
        let accepts = !matches!(ipi.delivery, Delivery::Fixed(_)) || m.enabled.load(Ordering::Relaxed);
        if accepts && m.matches(ipi.dest, is_self) {
            m.post(ipi.delivery);
        }
    }
}
