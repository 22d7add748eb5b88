// SPDX-License-Identifier: GPL-2.0
//! A VM: its fd (anon inode, as KVM's), memory slots with pinned pages, and its vCPUs.

use core::ffi::c_void;

use kernel::new_mutex;
use kernel::prelude::*;
use kernel::new_spinlock;
use core::sync::atomic::{AtomicU64, Ordering};

use kernel::sync::{Arc, Mutex, MutexGuard, SpinLock};
use kernel::types::ForeignOwnable;
use kernel::uaccess::{UserPtr, UserSlice};

use crate::apic::Mailbox;
use crate::ept::Ept;
use crate::shim;
use crate::uapi::{self, cap, KvmEnableCap, KvmUserspaceMemoryRegion};
use crate::pinned::PinnedPages;
use crate::vmx_core::memslot::{self, Change, Request, Slot};
use crate::vmx_core::vm_clock::{self, ClockData};
use crate::ioeventfd::{EventFd, Ioeventfds};
use crate::irq_routing::IrqRoutes;
use crate::irqfd::Irqfd;
use crate::vmx_core::ioeventfd;
use crate::vmx_core::irq_routing;

/// Most vCPUs one VM may have, and one more than the highest vCPU id.
pub(crate) const MAX_VCPUS: u32 = 1024;

/// A slot and its pinned memory (unpinned when the slot is dropped: after every vCPU has left
/// the memory generation that mapped it, see Vm::set_memory_region).
pub(crate) struct MemSlot {
    pub(crate) slot: Slot,
    pub(crate) pages: PinnedPages,
}

/// Mutable VM state.
pub(crate) struct VmState {
    pub(crate) slots: KVec<MemSlot>,
    /// The VM's EPT, changed in place with the slots.
    ept: Ept,
    vcpu_ids: KVec<u32>,
    /// `KVM_CAP_SPLIT_IRQCHIP` was enabled: vCPUs get an in-kernel local APIC.
    pub(crate) split_irqchip: bool,
    /// `KVM_CAP_MAX_VCPU_ID` as enabled (0: not set, MAX_VCPUS applies).
    max_vcpu_ids: u32,
    /// The bootstrap processor's vCPU id (KVM_SET_BOOT_CPU_ID; 0 by default): its APIC base
    /// has the BSP flag, it runs at once while the others wait for INIT/SIPI.
    bsp_vcpu_id: u32,
    /// Quirks disabled with `KVM_CAP_DISABLE_QUIRKS2` (KVM_X86_QUIRK_* bits).
    pub(crate) disabled_quirks: u64,
    /// `KVM_CAP_EXCEPTION_PAYLOAD` is on: KVM_GET/SET_VCPU_EVENTS tell pending and injected
    /// exceptions apart, with payloads.
    exception_payload: bool,
    /// `KVM_CAP_X86_TRIPLE_FAULT_EVENT` is on: KVM_GET/SET_VCPU_EVENTS carry a pending
    /// triple fault.
    triple_fault_event: bool,
    /// `KVM_CAP_MSR_PLATFORM_INFO`: guests may read MSR_PLATFORM_INFO (on by default).
    platform_info_readable: bool,
    /// `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2` flags: KVM_GET_DIRTY_LOG leaves pages as they are,
    /// KVM_CLEAR_DIRTY_LOG write-protects them again.
    manual_dirty_log: u64,
    /// The VM clock's offset from the host's CLOCK_BOOTTIME (rust/core/src/vm_clock.rs).
    clock_offset: u64,
    /// `KVM_SET_IDENTITY_MAP_ADDR`'s address. KVM uses the page for real mode without
    /// unrestricted guest; nvmx always has unrestricted guest, so it is only kept.
    identity_map_addr: u64,
}

impl VmState {
    /// Slot `id` (address space 0) if it exists and logs dirty pages.
    fn logged_slot(&self, id: u32) -> Option<&MemSlot> {
        self.slots
            .iter()
            .find(|s| u32::from(s.slot.id) == id && s.slot.flags & memslot::MEM_LOG_DIRTY_PAGES != 0)
    }
}

/// A VM, shared by its fd and its vCPUs.
#[pin_data]
pub(crate) struct Vm {
    /// KVM_IRQFD's irqfds. First, so that they are dropped first: their eventfd wake-ups
    /// use the VM until each is removed from its wait queue. The VM file's release drops
    /// them too, as KVM does.
    #[pin]
    pub(crate) irqfds: Mutex<KVec<Irqfd>>,
    /// nvmx's id of the VM (for nvmx-status), unique while the module is loaded.
    pub(crate) id: u32,
    /// The thread group that created the VM.
    pub(crate) pid: u32,
    #[pin]
    pub(crate) state: Mutex<VmState>,
    /// Bumped on every slot change (under `state`'s lock): vCPUs compare it with the one
    /// they entered with, and flush their TLB (INVEPT) when it changed.
    pub(crate) memory_generation: AtomicU64,
    /// The host TSC when the VM was created: every vCPU's TSC starts counting from 0 there,
    /// so the vCPUs of a VM are in sync (KVM synchronizes its vCPUs' TSCs likewise).
    pub(crate) tsc_origin: u64,
    /// The vCPUs' APIC mailboxes, for IPIs. A spinlock: senders are in IRQs-off regions.
    #[pin]
    pub(crate) mailboxes: SpinLock<KVec<Arc<Mailbox>>>,
    /// GSI routes (KVM_SET_GSI_ROUTING). A spinlock: the EOI check is in IRQs-off regions.
    #[pin]
    pub(crate) routes: SpinLock<IrqRoutes>,
    /// KVM_IOEVENTFD's registrations. A spinlock: guest writes are looked up in IRQs-off
    /// regions.
    #[pin]
    pub(crate) ioeventfds: SpinLock<Ioeventfds>,
}

/// The next VM's id.
static NEXT_VM_ID: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(1);

impl Vm {
    /// `KVM_CREATE_VM`: a new VM and its fd. Only machine type 0 exists.
    pub(crate) fn create(machine_type: usize) -> Result<isize> {
        if machine_type != 0 {
            return Err(EINVAL);
        }
        let ept = Ept::new()?;
        let vm = Arc::pin_init(
            pin_init!(Vm {
                id: NEXT_VM_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed),
                // Through the C helper (task_tgid_nr_ns), not the task_struct field.
                pid: current!().tgid_nr_ns(None) as u32,
                memory_generation: AtomicU64::new(0),
                tsc_origin: crate::vmx_ops::rdtsc(),
                state <- new_mutex!(VmState {
                    slots: KVec::new(),
                    ept,
                    vcpu_ids: KVec::new(),
                    split_irqchip: false,
                    max_vcpu_ids: 0,
                    bsp_vcpu_id: 0,
                    disabled_quirks: 0,
                    exception_payload: false,
                    triple_fault_event: false,
                    platform_info_readable: true,
                    manual_dirty_log: 0,
                    clock_offset: vm_clock::offset_at_creation(&shim::host_time()),
                    identity_map_addr: 0,
                }),
                irqfds <- new_mutex!(KVec::new()),
                mailboxes <- new_spinlock!(KVec::new()),
                routes <- new_spinlock!(IrqRoutes::new()),
                ioeventfds <- new_spinlock!(Ioeventfds::new()),
            }),
            GFP_KERNEL_ACCOUNT,
        )?;
        let raw = vm.into_foreign();
        let fd = shim::vm_fd(raw);
        if fd < 0 {
            // SAFETY: `raw` came from `into_foreign` above and was not handed to a file.
            drop(unsafe { Arc::<Vm>::from_foreign(raw) });
            return Err(Error::from_errno(fd));
        }
        Ok(fd as isize)
    }

    /// What KVM_GET/SET_VCPU_EVENTS carry: (`KVM_CAP_EXCEPTION_PAYLOAD`,
    /// `KVM_CAP_X86_TRIPLE_FAULT_EVENT`), each on or off.
    pub(crate) fn event_caps(&self) -> (bool, bool) {
        let st = self.state.lock();
        (st.exception_payload, st.triple_fault_event)
    }

    /// `KVM_ENABLE_CAP` on the VM, with KVM's rules: `KVM_CAP_SPLIT_IRQCHIP` (flags 0, at
    /// most KVM_MAX_IRQ_ROUTES routes, EEXIST if already on, EINVAL once a vCPU exists) and
    /// `KVM_CAP_MAX_VCPU_ID` (at most the reported maximum, settable once: the same value
    /// again is accepted) and `KVM_CAP_DISABLE_QUIRKS2` (only quirks nvmx has; they stay
    /// disabled). Every other capability is EINVAL, as KVM says for one it cannot enable.
    pub(crate) fn enable_cap(&self, c: &KvmEnableCap) -> Result<isize> {
        if c.flags != 0 {
            return Err(EINVAL);
        }
        if c.cap as usize == cap::DISABLE_QUIRKS2 {
            if c.args[0] & !SUPPORTED_QUIRKS != 0 {
                return Err(EINVAL);
            }
            self.state.lock().disabled_quirks |= c.args[0];
            return Ok(0);
        }
        // KVM's rule: on for a non-zero argument, off for 0, at any time.
        if c.cap as usize == cap::EXCEPTION_PAYLOAD {
            self.state.lock().exception_payload = c.args[0] != 0;
            return Ok(0);
        }
        if c.cap as usize == cap::MSR_PLATFORM_INFO {
            self.state.lock().platform_info_readable = c.args[0] != 0;
            return Ok(0);
        }
        if c.cap as usize == cap::X86_TRIPLE_FAULT_EVENT {
            self.state.lock().triple_fault_event = c.args[0] != 0;
            return Ok(0);
        }
        if c.cap as usize == cap::MANUAL_DIRTY_LOG_PROTECT2 {
            if c.args[0] & !uapi::KVM_DIRTY_LOG_MANUAL_CAPS != 0 {
                return Err(EINVAL);
            }
            let mut st = self.state.lock();
            st.manual_dirty_log = c.args[0];
            st.ept.initially_dirty = c.args[0] & uapi::KVM_DIRTY_LOG_INITIALLY_SET != 0;
            return Ok(0);
        }
        if c.cap as usize == cap::MAX_VCPU_ID {
            let n = u32::try_from(c.args[0]).map_err(|_| EINVAL)?;
            let mut st = self.state.lock();
            // KVM's rules: at most KVM_CAP_MAX_VCPU_ID, not below the BSP's id
            // (KVM_SET_BOOT_CPU_ID), once (the same value again is accepted).
            if n > MAX_VCPUS || st.bsp_vcpu_id > n || (st.max_vcpu_ids != 0 && st.max_vcpu_ids != n) {
                return Err(EINVAL);
            }
            st.max_vcpu_ids = n;
            return Ok(0);
        }
        if c.cap as usize != cap::SPLIT_IRQCHIP {
            return Err(EINVAL);
        }
        if c.args[0] > uapi::KVM_MAX_IRQ_ROUTES {
            return Err(EINVAL);
        }
        let mut st = self.state.lock();
        if st.split_irqchip {
            return Err(EEXIST);
        }
        if !st.vcpu_ids.is_empty() {
            return Err(EINVAL);
        }
        st.split_irqchip = true;
        // At most KVM_MAX_IRQ_ROUTES (checked above).
        self.routes.lock().set_pins(c.args[0] as u32);
        Ok(0)
    }

    /// `KVM_SET_TSS_ADDR`: KVM's bound (the three pages must lie below 4 GiB), EINVAL beyond
    /// it. KVM uses the pages for real mode without unrestricted guest only; with it, as on
    /// nvmx always, the call does nothing else.
    pub(crate) fn set_tss_addr(&self, addr: usize) -> Result<isize> {
        if addr as u64 > u64::from(0u32.wrapping_sub(3 * 4096)) {
            return Err(EINVAL);
        }
        Ok(0)
    }

    /// `KVM_SET_BOOT_CPU_ID`, KVM's rules: EBUSY once a vCPU exists; EINVAL for an id
    /// above KVM_CAP_MAX_VCPU_ID (or above the VM's own KVM_CAP_MAX_VCPU_ID once set; KVM
    /// compares with `>`, so the limit itself is accepted though no vCPU can have it).
    pub(crate) fn set_boot_cpu_id(&self, arg: usize) -> Result<isize> {
        let mut st = self.state.lock();
        if !st.vcpu_ids.is_empty() {
            return Err(EBUSY);
        }
        let id = u32::try_from(arg).map_err(|_| EINVAL)?;
        if id > MAX_VCPUS || (st.max_vcpu_ids != 0 && id > st.max_vcpu_ids) {
            return Err(EINVAL);
        }
        st.bsp_vcpu_id = id;
        Ok(0)
    }

    /// Whether guests may read MSR_PLATFORM_INFO (KVM_CAP_MSR_PLATFORM_INFO).
    pub(crate) fn platform_info_readable(&self) -> bool {
        self.state.lock().platform_info_readable
    }

    /// The bootstrap processor's vCPU id.
    pub(crate) fn bsp_vcpu_id(&self) -> u32 {
        self.state.lock().bsp_vcpu_id
    }

    /// `KVM_SET_IDENTITY_MAP_ADDR`: only before the first vCPU (EINVAL after, as KVM).
    pub(crate) fn set_identity_map_addr(&self, arg: usize) -> Result<isize> {
        let mut st = self.state.lock();
        if !st.vcpu_ids.is_empty() {
            return Err(EINVAL);
        }
        st.identity_map_addr = read_user::<u64>(arg)?;
        Ok(0)
    }

    /// `KVM_GET_CLOCK`.
    pub(crate) fn get_clock(&self) -> ClockData {
        let offset = self.state.lock().clock_offset;
        vm_clock::get(offset, &shim::host_time())
    }

    /// `KVM_SET_CLOCK`: EINVAL for a flag KVM does not know.
    pub(crate) fn set_clock(&self, data: &ClockData) -> Result<isize> {
        let mut st = self.state.lock();
        st.clock_offset = vm_clock::set(data, &shim::host_time()).ok_or(EINVAL)?;
        Ok(0)
    }

    /// `KVM_SET_GSI_ROUTING`: the VM's routes replaced by the table at `arg`, with KVM's
    /// rules: an in-kernel irqchip, at most KVM_MAX_IRQ_ROUTES entries, no flags (EINVAL);
    /// each entry as rust/core/src/irq_routing.rs checks it. A refused table changes nothing.
    pub(crate) fn set_gsi_routing(&self, arg: usize) -> Result<isize> {
        let [nr, flags] = read_user::<[u32; 2]>(arg)?;
        if !self.has_lapic() || nr > irq_routing::MAX_ROUTES || flags != 0 {
            return Err(EINVAL);
        }
        let size = core::mem::size_of::<uapi::KvmIrqRoutingEntry>();
        let entries = arg.checked_add(8).ok_or(EFAULT)?;
        let mut r = UserSlice::new(UserPtr::from_addr(entries), nr as usize * size).reader();
        let mut table = KVec::with_capacity(nr as usize, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..nr {
            let e: uapi::KvmIrqRoutingEntry = r.read()?;
            let route = irq_routing::route(&e.entry()).map_err(|_| EINVAL)?;
            table.push(route, GFP_KERNEL_ACCOUNT)?;
        }
        table.sort_unstable_by_key(|r| r.gsi);
        irq_routing::check_table(&table).map_err(|_| EINVAL)?;
        let old = self.routes.lock().replace(table);
        drop(old);
        Ok(0)
    }

    /// `KVM_IOEVENTFD`: register (or, with KVM_IOEVENTFD_FLAG_DEASSIGN, remove) an eventfd
    /// that guest writes signal, with KVM's rules (rust/core/src/ioeventfd.rs): EINVAL for
    /// a bad length, range or flag; the eventfd's EBADF/EINVAL; EEXIST for a registration
    /// that collides with one there; ENOSPC beyond 1000 on a bus; ENOENT for a deassign
    /// that names none.
    pub(crate) fn ioeventfd(&self, r: &uapi::KvmIoeventfd) -> Result<isize> {
        let req = ioeventfd::Request { datamatch: r.datamatch, addr: r.addr, len: r.len, flags: r.flags };
        if r.flags & ioeventfd::FLAG_DEASSIGN != 0 {
            let fd = EventFd::get(r.fd)?;
            // The registration is dropped after the lock (the guard ends with the statement).
            let removed = self.ioeventfds.lock().remove(&req, &fd);
            return removed.map(|_| 0);
        }
        let p = ioeventfd::assign(&req).ok_or(EINVAL)?;
        let mut fd = EventFd::get(r.fd)?;
        loop {
            let len = {
                let mut list = self.ioeventfds.lock();
                match list.add(p, fd) {
                    Ok(()) => return Ok(0),
                    Err((Some(e), _fd)) => return Err(e),
                    Err((None, back)) => fd = back,
                }
                list.len()
            };
            let mut bigger = KVec::with_capacity(len.saturating_mul(2).max(4), GFP_KERNEL_ACCOUNT)?;
            self.ioeventfds.lock().grow(&mut bigger);
            // `bigger` (now the old list, empty) is freed here, outside the lock.
        }
    }

    /// A guest write the run loop is about to send to userspace: true if it signalled an
    /// ioeventfd instead (the instruction is then done). IRQs may be off.
    pub(crate) fn ioeventfd_write(&self, bus: ioeventfd::Bus, addr: u64, len: u32, value: u64) -> bool {
        self.ioeventfds.lock().write(bus, addr, len, value)
    }

    /// `KVM_IRQ_LINE`: GSI `irq` raised (`level` non-zero) delivers its route's MSI; a GSI
    /// without a route, or lowered, does nothing. ENXIO without an in-kernel irqchip (KVM).
    pub(crate) fn irq_line(&self, irq: u32, level: u32) -> Result<isize> {
        if !self.has_lapic() {
            return Err(ENXIO);
        }
        if level != 0 {
            self.inject_gsi(irq);
        }
        Ok(0)
    }

    /// GSI `gsi` fired (KVM_IRQ_LINE raised, an irqfd signalled): deliver its route's MSI,
    /// if it has one. Spinlocks only: callable from an eventfd's wake-up.
    pub(crate) fn inject_gsi(&self, gsi: u32) {
        let msi = self.routes.lock().msi(gsi);
        if let Some(m) = msi {
            crate::apic::deliver_msi(&self.mailboxes.lock(), m);
        }
    }

    /// `KVM_IRQFD`, with KVM's rules: EINVAL for an unknown flag; deassign removes the
    /// irqfds of that eventfd and GSI (none is no error) and no wake-up of theirs runs after
    /// it returns. Assign: EINVAL without the in-kernel irqchip (x86 KVM's
    /// kvm_arch_irqfd_allowed) and for KVM_IRQFD_FLAG_RESAMPLE (KVM needs the in-kernel I/O
    /// APIC for it), the eventfd's EBADF/EINVAL, EBUSY for an eventfd that already has an
    /// irqfd.
    pub(crate) fn irqfd(&self, fd: i32, gsi: u32, flags: u32) -> Result<isize> {
        const DEASSIGN: u32 = 1;
        const RESAMPLE: u32 = 2;
        if flags & !(DEASSIGN | RESAMPLE) != 0 {
            return Err(EINVAL);
        }
        if flags & DEASSIGN != 0 {
            let e = EventFd::get(fd)?;
            // Each is removed from its eventfd's wait queue as it is dropped.
            self.irqfds.lock().retain(|q| !q.is(e.as_ptr(), gsi));
            return Ok(0);
        }
        if !self.has_lapic() || flags & RESAMPLE != 0 {
            return Err(EINVAL);
        }
        let mut list = self.irqfds.lock();
        list.reserve(1, GFP_KERNEL_ACCOUNT)?;
        // SAFETY: `nvmx_irqfd_fire` takes a `Vm`, and the VM drops its irqfds before anything
        // else of it (the field order), so `self` outlives the irqfd.
        let (q, pending) = unsafe { Irqfd::new((self as *const Vm).cast(), fd, gsi) }?;
        // Cannot fail: room was reserved above.
        let _ = list.push_within_capacity(q);
        drop(list);
        if pending {
            self.inject_gsi(gsi);
        }
        Ok(0)
    }

    /// Whether vCPUs of this VM have an in-kernel local APIC.
    pub(crate) fn has_lapic(&self) -> bool {
        self.state.lock().split_irqchip
    }

    /// Register a new vCPU's mailbox for IPIs. The list is under a spinlock, where
    /// allocating (which may sleep) is not allowed: a longer list is allocated before taking
    /// it, and swapped in under it (the old one is freed after the lock is dropped).
    pub(crate) fn add_mailbox(&self, mut m: Arc<Mailbox>) -> Result {
        loop {
            let len = {
                let mut boxes = self.mailboxes.lock();
                match boxes.push_within_capacity(m) {
                    Ok(()) => return Ok(()),
                    Err(e) => m = e.0,
                }
                boxes.len()
            };
            let mut fresh = KVec::with_capacity(len.saturating_mul(2).max(4), GFP_KERNEL_ACCOUNT)?;
            let mut boxes = self.mailboxes.lock();
            // Another vCPU may have grown the list meanwhile: take the bigger of the two.
            if fresh.capacity() > boxes.capacity() {
                for b in boxes.drain_all() {
                    // Cannot fail: `fresh` has room for everything `boxes` could hold.
                    let _ = fresh.push_within_capacity(b);
                }
                core::mem::swap(&mut *boxes, &mut fresh);
            }
            // `fresh` (now the old, empty list) is freed here, after the lock is released.
            drop(boxes);
        }
    }

    pub(crate) fn set_memory_region(&self, req: &Request) -> Result<isize> {
        let user_limit = shim::task_size_max();
        let mut st = self.state.lock();
        let current: KVec<Slot> = {
            let mut v = KVec::with_capacity(st.slots.len(), GFP_KERNEL)?;
            for s in st.slots.iter() {
                v.push(s.slot, GFP_KERNEL)?;
            }
            v
        };
        let change = memslot::plan(&current, req, user_limit).map_err(|e| Error::from_errno(-e))?;
        // Memory that no vCPU may use any more: unpinned only once none can (see below),
        // and EPT tables left empty, freed at the same point.
        let mut retired = None;
        let mut retired_tables = KVec::new();
        match change {
            Change::Create(slot) => {
                // Pinning may sleep and fault: fine here, under a sleeping lock.
                let pages = PinnedPages::pin(slot.uaddr, slot.npages)?;
                st.slots.reserve(1, GFP_KERNEL_ACCOUNT)?;
                st.ept.map_slot(&slot, &pages)?;
                st.slots.push(MemSlot { slot, pages }, GFP_KERNEL_ACCOUNT)?;
                // Not-present to present needs no flush (no TLB caches an absent entry).
                return Ok(0);
            }
            Change::Delete(id) => {
                if let Some(i) = st.slots.iter().position(|s| s.slot.id == id) {
                    let old = st.slots.remove(i).map_err(|_| EINVAL)?;
                    st.ept.unmap_slot(&old.slot);
                    retired_tables = st.ept.prune(&old.slot);
                    retired = Some(old);
                }
            }
            Change::Move(slot) => {
                if let Some(i) = st.slots.iter().position(|s| s.slot.id == slot.id) {
                    let VmState { slots, ept, .. } = &mut *st;
                    let old = slots[i].slot;
                    ept.unmap_slot(&old);
                    if let Err(e) = ept.map_slot(&slot, &slots[i].pages) {
                        // Keep the slot where it was (its tables exist: this cannot fail).
                        let _ = ept.map_slot(&old, &slots[i].pages);
                        return Err(e);
                    }
                    slots[i].slot = slot;
                    // Only now: the old range's tables were needed to map it back.
                    retired_tables = ept.prune(&old);
                }
            }
            Change::FlagsOnly(slot) => {
                let Some(i) = st.slots.iter().position(|s| s.slot.id == slot.id) else { return Ok(0) };
                let was = st.slots[i].slot.flags & memslot::MEM_LOG_DIRTY_PAGES != 0;
                let on = slot.flags & memslot::MEM_LOG_DIRTY_PAGES != 0;
                st.slots[i].slot = slot;
                if was == on {
                    return Ok(0);
                }
                st.ept.set_logging(&slot, on);
                if !on {
                    // Giving write access back needs no flush.
                    return Ok(0);
                }
                // Starting to log: translations cached with write access must go.
            }
            Change::Nothing => return Ok(0),
        }
        self.retire_translations(st);
        drop(retired);
        drop(retired_tables);
        Ok(0)
    }

    /// `KVM_GET_DIRTY_LOG`: the pages of slot `d.slot` written since the last call (or since
    /// logging started), one bit per page in a bitmap of whole u64s; they are
    /// write-protected again. ENOENT for a slot that does not exist or does not log, as KVM.
    pub(crate) fn get_dirty_log(&self, d: &uapi::KvmDirtyLog) -> Result<isize> {
        let (as_id, id) = (d.slot >> 16, d.slot & 0xffff);
        let st = self.state.lock();
        let s = st.logged_slot(id).filter(|_| as_id == 0).ok_or(ENOENT)?;
        let words = s.slot.npages.div_ceil(64) as usize;
        let mut bitmap = KVec::from_elem(0u64, words, GFP_KERNEL)?;
        let any = if st.manual_dirty_log != 0 {
            st.ept.read_dirty(&s.slot, &mut bitmap);
            false
        } else {
            st.ept.harvest_dirty(&s.slot, &mut bitmap)
        };
        if any {
            self.retire_translations(st);
        } else {
            drop(st);
        }
        let mut w = UserSlice::new(UserPtr::from_addr(d.bitmap_addr()), words * 8).writer();
        for word in bitmap.iter() {
            w.write(word)?;
        }
        Ok(0)
    }

    /// `KVM_CLEAR_DIRTY_LOG`, with KVM's rules: `first_page` a multiple of 64, the range
    /// inside the slot, `num_pages` a multiple of 64 unless the range ends with the slot
    /// (EINVAL); a slot that does not log (ENOENT). The pages whose bits are set are
    /// write-protected again, and no vCPU writes them through an old translation once the
    /// ioctl returns.
    pub(crate) fn clear_dirty_log(&self, d: &uapi::KvmClearDirtyLog) -> Result<isize> {
        let (as_id, id) = (d.slot >> 16, d.slot & 0xffff);
        if as_id != 0 || id >= memslot::USER_MEM_SLOTS || d.first_page & 63 != 0 {
            return Err(EINVAL);
        }
        let st = self.state.lock();
        let s = st.logged_slot(id).ok_or(ENOENT)?;
        let (first, count, npages) = (d.first_page, u64::from(d.num_pages), s.slot.npages);
        if first > npages || count > npages - first || (count < npages - first && count & 63 != 0) {
            return Err(EINVAL);
        }
        let words = count.div_ceil(64) as usize;
        let mut bitmap = KVec::from_elem(0u64, words, GFP_KERNEL)?;
        let mut r = UserSlice::new(UserPtr::from_addr(d.bitmap_addr()), words * 8).reader();
        for w in bitmap.iter_mut() {
            *w = r.read()?;
        }
        if st.ept.clear_dirty(&s.slot, first, count, &bitmap) {
            self.retire_translations(st);
        }
        Ok(0)
    }

    /// After the EPT lost mappings or write access (under the VM's lock, `st`, released
    /// here): a new memory generation, and the wait until no vCPU runs on an older one.
    fn retire_translations(&self, st: MutexGuard<'_, VmState>) {
        let generation = self.memory_generation.fetch_add(1, Ordering::SeqCst) + 1;
        drop(st);
        self.wait_for_new_memory(generation);
    }

    /// KVM's guarantee on slot changes: once the ioctl returns, no vCPU still runs on the
    /// old mapping. Kick every vCPU in the guest with an older EPT and wait until each has
    /// left (it rebuilds its EPT on the next entry). Leaving takes at most one guest
    /// stretch (the VMX-preemption timer bounds it), so this terminates.
    fn wait_for_new_memory(&self, generation: u64) {
        loop {
            let stale = {
                let boxes = self.mailboxes.lock();
                boxes.iter().fold(false, |any, m| m.kick_if_stale(generation) | any)
            };
            if !stale {
                return;
            }
            kernel::time::delay::fsleep(kernel::time::Delta::from_micros(20));
        }
    }

    /// The memory generation and the EPT pointer a vCPU enters with. The EPT lives as long
    /// as the VM (the vCPU holds the VM); the generation tells the vCPU when to flush, and
    /// whether it raced with a slot change (rust/run.rs re-checks it once it is running).
    pub(crate) fn current_ept(&self) -> (u64, u64) {
        let st = self.state.lock();
        (self.memory_generation.load(Ordering::SeqCst), st.ept.eptp)
    }

    /// Run `f` with the EPT pointer while no slot can change (guest-memory copies outside
    /// the IRQs-off region, such as completing INS).
    pub(crate) fn with_memory<R>(&self, f: impl FnOnce(u64) -> R) -> R {
        let st = self.state.lock();
        f(st.ept.eptp)
    }

    /// Reserve vCPU id `id` (EEXIST if taken, EINVAL beyond the limits).
    pub(crate) fn reserve_vcpu_id(&self, id: u32) -> Result {
        let mut st = self.state.lock();
        let max_id = if st.max_vcpu_ids != 0 { st.max_vcpu_ids } else { MAX_VCPUS };
        if id >= max_id || st.vcpu_ids.len() as u32 >= MAX_VCPUS {
            return Err(EINVAL);
        }
        if st.vcpu_ids.contains(&id) {
            return Err(EEXIST);
        }
        st.vcpu_ids.push(id, GFP_KERNEL_ACCOUNT)?;
        Ok(())
    }

    /// Give a reserved id back (vCPU creation failed after the reservation).
    pub(crate) fn release_vcpu_id(&self, id: u32) {
        let mut st = self.state.lock();
        st.vcpu_ids.retain(|&mut x| x != id);
    }
}

impl From<KvmUserspaceMemoryRegion> for Request {
    fn from(r: KvmUserspaceMemoryRegion) -> Self {
        Request {
            slot: r.slot,
            flags: r.flags,
            gpa: r.guest_phys_addr,
            size: r.memory_size,
            uaddr: r.userspace_addr,
        }
    }
}

/// `KVM_CHECK_EXTENSION`, on the system fd and the VM fd alike: what works, nothing else.
/// The KVM quirks nvmx has, which a VMM may disable: KVM_X86_QUIRK_STUFF_FEATURE_MSRS (a new
/// vCPU's IA32_VMX_* MSRs are the full nested offer; disabled, they start as zeros for the
/// VMM to set) and KVM_X86_QUIRK_LINT0_REENABLED (vCPU 0's LINT0 is ExtINT after RESET and
/// INIT; disabled, masked like every LVT). Both are decided when the vCPU is created.
pub(crate) const SUPPORTED_QUIRKS: u64 =
    crate::nested_msrs::QUIRK_STUFF_FEATURE_MSRS | crate::nested_msrs::QUIRK_LINT0_REENABLED;

/// Read a `T` from the user pointer `arg` (EFAULT if it cannot be read in full).
pub(crate) fn read_user<T: kernel::transmute::FromBytes>(arg: usize) -> Result<T> {
    UserSlice::new(UserPtr::from_addr(arg), core::mem::size_of::<T>()).reader().read::<T>()
}

/// An irqfd's eventfd was signalled: inject its GSI. Called from the eventfd's wake-up
/// (rust/shim.c) in task context, with its wait-queue lock held and IRQs off (spinlocks
/// only), or from a worker when the signal came from an interrupt.
///
/// # Safety
///
/// `owner` is the `Vm` the irqfd was made for (Vm::irqfd), alive until the irqfd is
/// dropped, which happens before the VM is.
#[no_mangle]
unsafe extern "C" fn nvmx_irqfd_fire(owner: *const c_void, gsi: u32) {
    // SAFETY: by this function's contract.
    let vm = unsafe { &*owner.cast::<Vm>() };
    vm.inject_gsi(gsi);
}

/// The VM file's `release`.
///
/// # Safety
///
/// `vm` is the file's private data as for `nvmx_vm_ioctl`, and this is its last use: the
/// file's reference is given back here, exactly once.
#[no_mangle]
unsafe extern "C" fn nvmx_vm_release(vm: *mut c_void) {
    // SAFETY: by this function's contract, the file's reference, given back once.
    let vm = unsafe { <Arc<Vm> as ForeignOwnable>::from_foreign(vm) };
    // KVM ends a VM's irqfds when its file is released (kvm_irqfd_release): vCPU files may
    // keep the VM itself alive longer.
    vm.irqfds.lock().clear();
    drop(vm);
}
