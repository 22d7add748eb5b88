// SPDX-License-Identifier: GPL-2.0
//! A VM's EPT: a 4-level write-back structure mapping every page of every slot, changed in
//! process context (allocations may sleep) when slots change.

use kernel::page::Page;
use kernel::prelude::*;

use crate::shim;
use crate::pinned::PinnedPages;
use crate::vmx_core::ept;
use crate::vmx_core::memslot::{Slot, MEM_LOG_DIRTY_PAGES, MEM_READONLY, PAGE_SIZE};

use core::sync::atomic::{AtomicU64, Ordering};

/// A VM's EPT, for the VM's whole life. Slots are mapped into it and unmapped from it in
/// place, under the VM's lock: adding a slot costs its own pages, not a rebuild of all of
/// them. Removing a mapping is followed by a new memory generation: vCPUs running on the old
/// one are kicked out and flush (INVEPT) before they enter again (rust/vm.rs). Tables that
/// an unmap left empty are detached ([`Ept::prune`]) and freed by the caller only after that
/// wait, so no vCPU walks a freed table (lock-free walks happen only inside IRQs-off
/// regions, which the wait outlasts, or under the VM's lock).
pub(crate) struct Ept {
    /// Every table; the first is the PML4.
    tables: KVec<Page>,
    /// The EPT pointer for the VMCS.
    pub(crate) eptp: u64,
    /// `KVM_DIRTY_LOG_INITIALLY_SET`: a page starts logging as dirty (mapped writable), so
    /// nothing is write-protected before the VMM's first KVM_CLEAR_DIRTY_LOG.
    pub(crate) initially_dirty: bool,
}

impl Ept {
    /// An empty EPT (nothing mapped: every access is an EPT violation).
    pub(crate) fn new() -> Result<Self> {
        let mut tables = KVec::new();
        tables.push(Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?, GFP_KERNEL_ACCOUNT)?;
        let root = shim::page_phys(&tables[0]);
        Ok(Self { tables, eptp: ept::eptp(root), initially_dirty: false })
    }

    fn root(&self) -> u64 {
        self.eptp & ept::ADDR_MASK
    }

    /// Map every page of `slot` to its pinned memory (write-protected for dirty logging if
    /// the slot logs, never writable if it is read-only). On failure (no memory for a table) the pages mapped so far are
    /// unmapped again.
    pub(crate) fn map_slot(&mut self, slot: &Slot, pages: &PinnedPages) -> Result {
        let root = self.root();
        let logged = slot.flags & MEM_LOG_DIRTY_PAGES != 0;
        let readonly = slot.flags & MEM_READONLY != 0;
        for i in 0..slot.npages {
            let gpa = (slot.base_gfn + i) * PAGE_SIZE;
            let mapped = pages
                .phys(i as usize)
                .ok_or(EINVAL)
                .and_then(|phys| Self::map(&mut self.tables, root, gpa, ept::slot_leaf(phys, readonly, logged, self.initially_dirty)));
            if let Err(e) = mapped {
                self.unmap_range(slot.base_gfn, i);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Start (`on`) or stop dirty logging on `slot`'s pages: write-protect them and mark them
    /// logged, or make them writable again. Starting needs a TLB flush afterwards (cached
    /// translations still allow writes); the caller bumps the memory generation.
    pub(crate) fn set_logging(&mut self, slot: &Slot, on: bool) {
        let initially_dirty = self.initially_dirty;
        for i in 0..slot.npages {
            if let Some(leaf) = self.leaf((slot.base_gfn + i) * PAGE_SIZE) {
                // SAFETY: a leaf of this EPT; vCPUs update leaves only atomically.
                let e = unsafe { AtomicU64::from_ptr(leaf) };
                let _ = e.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                    Some(ept::with_logging(v, on, initially_dirty))
                });
            }
        }
    }

    /// KVM_GET_DIRTY_LOG's harvest: set the bit of every page of `slot` written since the
    /// last harvest and write-protect it again. True if any was dirty: then the caller must
    /// flush TLBs (new memory generation) before the bitmap goes to userspace, so that every
    /// later write faults again (a write through a stale entry before the flush lands in a
    /// page reported dirty now, which userspace reads only afterwards).
    pub(crate) fn harvest_dirty(&self, slot: &Slot, bitmap: &mut [u64]) -> bool {
        let mut any = false;
        for i in 0..slot.npages {
            if let Some(leaf) = self.leaf((slot.base_gfn + i) * PAGE_SIZE) {
                // SAFETY: as in set_logging.
                let old = unsafe { AtomicU64::from_ptr(leaf) }.fetch_and(!ept::WRITE, Ordering::SeqCst);
                if old & ept::WRITE != 0 {
                    bitmap[(i / 64) as usize] |= 1 << (i % 64);
                    any = true;
                }
            }
        }
        any
    }

    /// KVM_GET_DIRTY_LOG with manual protection: the pages of `slot` written since their last
    /// KVM_CLEAR_DIRTY_LOG (or dirty from the start), left as they are.
    pub(crate) fn read_dirty(&self, slot: &Slot, bitmap: &mut [u64]) {
        for i in 0..slot.npages {
            if let Some(leaf) = self.leaf((slot.base_gfn + i) * PAGE_SIZE) {
                // SAFETY: as in set_logging.
                let e = unsafe { AtomicU64::from_ptr(leaf) }.load(Ordering::SeqCst);
                if e & ept::LOGGED != 0 && e & ept::WRITE != 0 {
                    bitmap[(i / 64) as usize] |= 1 << (i % 64);
                }
            }
        }
    }

    /// KVM_CLEAR_DIRTY_LOG: write-protect again the pages of `slot` from `first` whose bit
    /// is set in `bitmap` (`count` pages). True if any was dirty: the caller flushes, as
    /// after harvest_dirty.
    pub(crate) fn clear_dirty(&self, slot: &Slot, first: u64, count: u64, bitmap: &[u64]) -> bool {
        let mut any = false;
        for k in 0..count {
            if bitmap[(k / 64) as usize] & (1 << (k % 64)) == 0 {
                continue;
            }
            if let Some(leaf) = self.leaf((slot.base_gfn + first + k) * PAGE_SIZE) {
                // SAFETY: as in set_logging.
                let e = unsafe { AtomicU64::from_ptr(leaf) };
                if e.load(Ordering::SeqCst) & ept::LOGGED != 0 {
                    any |= e.fetch_and(!ept::WRITE, Ordering::SeqCst) & ept::WRITE != 0;
                }
            }
        }
        any
    }

    /// Detach the tables that cover `slot`'s range and map nothing any more (after an unmap,
    /// and after a move has mapped the slot's new range), bottom up: page tables, then page
    /// directories, then PDPTs; never the PML4. The caller frees them once no vCPU can
    /// still use a translation through them (after the memory-generation wait). Without
    /// memory for the list a table simply stays, as before.
    pub(crate) fn prune(&mut self, slot: &Slot) -> KVec<Page> {
        let mut retired = KVec::new();
        let start = slot.base_gfn.saturating_mul(PAGE_SIZE);
        let end = slot.base_gfn.saturating_add(slot.npages).saturating_mul(PAGE_SIZE).min(ept::MAX_GPA + 1);
        // `level`: the level of the entry that points to the table (2: a PD entry -> a page
        // table covering 2 MiB; 3: a PDPT entry -> a PD, 1 GiB; 4: a PML4 entry -> a PDPT).
        for level in 2..=4u32 {
            let span = 1u64 << (12 + 9 * (level - 1));
            let mut gpa = start & !(span - 1);
            while gpa < end {
                if let Some(entry) = parent_entry(self.eptp, gpa, level) {
                    // SAFETY: an entry of a table page of this EPT.
                    let v = unsafe { entry.read_volatile() };
                    let table = v & ept::ADDR_MASK;
                    if ept::present(v) && table_is_empty(table) && retired.reserve(1, GFP_KERNEL_ACCOUNT).is_ok() {
                        if let Some(i) = self.tables.iter().position(|p| shim::page_phys(p) == table) {
                            // SAFETY: as above; the table it named is now unreachable.
                            unsafe { entry.write_volatile(0) };
                            if let Ok(page) = self.tables.remove(i) {
                                // Cannot fail: reserved above.
                                let _ = retired.push_within_capacity(page);
                            }
                        }
                    }
                }
                gpa = gpa.saturating_add(span);
            }
        }
        retired
    }

    /// Unmap every page of `slot`.
    pub(crate) fn unmap_slot(&mut self, slot: &Slot) {
        self.unmap_range(slot.base_gfn, slot.npages);
    }

    fn unmap_range(&mut self, base_gfn: u64, npages: u64) {
        for i in 0..npages {
            if let Some(leaf) = self.leaf((base_gfn + i) * PAGE_SIZE) {
                // SAFETY: `leaf` points into a table page of this EPT.
                unsafe { leaf.write_volatile(0) };
            }
        }
    }

    /// The leaf entry for `gpa`, if its tables exist.
    fn leaf(&self, gpa: u64) -> Option<*mut u64> {
        leaf_entry(self.eptp, gpa)
    }

    /// Map one 4 KiB page with leaf `entry`, allocating the tables on the way.
    fn map(tables: &mut KVec<Page>, root: u64, gpa: u64, entry: u64) -> Result {
        if gpa > ept::MAX_GPA {
            return Err(EINVAL);
        }
        let leaf = leaf_alloc(root, gpa, || {
            let page = Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?;
            let next = shim::page_phys(&page);
            tables.push(page, GFP_KERNEL_ACCOUNT)?;
            Ok(next)
        })?;
        // SAFETY: a leaf entry in a table page of this EPT, which we own.
        unsafe { leaf.write(entry) };
        Ok(())
    }

    /// Pointer to entry `index` of the table at `table_phys` (a page of this EPT).
    fn entry(table_phys: u64, index: usize) -> *mut u64 {
        // SAFETY (of the callers' accesses): EPT tables are pages we allocated, in the direct
        // map; `index` < 512 by construction of `ept::index`.
        (shim::phys_to_virt(table_phys) as *mut u64).wrapping_add(index)
    }
}

/// The leaf entry for `gpa` in the 4-level EPT rooted at `root` (tables nvmx owns: L0's EPT
/// or an EPT02), creating missing tables with zeroed pages from `new_table` (their physical
/// addresses) on the way down.
pub(crate) fn leaf_alloc(root: u64, gpa: u64, mut new_table: impl FnMut() -> Result<u64>) -> Result<*mut u64> {
    let mut table = root;
    for level in (2..=4).rev() {
        let entry = Ept::entry(table, ept::index(gpa, level));
        // SAFETY: `entry` points into a table page the caller owns.
        let value = unsafe { entry.read() };
        table = if ept::present(value) {
            value & ept::ADDR_MASK
        } else {
            let next = new_table()?;
            // SAFETY: as above.
            unsafe { entry.write(ept::table(next)) };
            next
        };
    }
    Ok(Ept::entry(table, ept::index(gpa, 1)))
}

/// The host-physical address `gpa` maps to in the EPT whose pointer is `eptp` (an EPT nvmx
/// built: 4 levels of 4 KiB tables), or `None` if it maps nothing there. Lock-free: the
/// caller holds a reference to that EPT for as long as it uses the answer.
pub(crate) fn translate(eptp: u64, gpa: u64) -> Option<u64> {
    lookup(eptp, gpa).map(|(hpa, _)| hpa)
}

/// As `translate`, with the leaf's access rights (READ | WRITE | EXEC).
pub(crate) fn lookup(eptp: u64, gpa: u64) -> Option<(u64, u64)> {
    // SAFETY: a leaf of a live EPT (see above).
    let value = unsafe { leaf_entry(eptp, gpa)?.read_volatile() };
    let rights = value & (ept::READ | ept::WRITE | ept::EXEC);
    ept::present(value).then(|| ((value & ept::ADDR_MASK) | (gpa & (PAGE_SIZE - 1)), rights))
}

/// The entry at `level` (4: in the PML4, ... 2: in a page directory) on the walk for `gpa`,
/// if the tables down to it exist.
fn parent_entry(eptp: u64, gpa: u64, level: u32) -> Option<*mut u64> {
    let mut table = eptp & ept::ADDR_MASK;
    for l in (level + 1..=4).rev() {
        // SAFETY: a table page of this EPT, in the direct map.
        let value = unsafe { Ept::entry(table, ept::index(gpa, l)).read_volatile() };
        if !ept::present(value) {
            return None;
        }
        table = value & ept::ADDR_MASK;
    }
    Some(Ept::entry(table, ept::index(gpa, level)))
}

/// Whether the table page at `table` has no entry left.
fn table_is_empty(table: u64) -> bool {
    // SAFETY: a table page of this EPT (512 entries), in the direct map.
    (0..512).all(|i| unsafe { Ept::entry(table, i).read_volatile() } == 0)
}

/// The leaf entry for `gpa` in the EPT `eptp`, if the tables down to it exist (the leaf
/// itself may be empty). The caller walks inside an IRQs-off region or under the VM's lock,
/// which a table's retirement waits for (Ept::prune).
fn leaf_entry(eptp: u64, gpa: u64) -> Option<*mut u64> {
    if gpa > ept::MAX_GPA {
        return None;
    }
    let mut table = eptp & ept::ADDR_MASK;
    for level in (2..=4).rev() {
        // SAFETY: a table page of a live EPT, in the direct map.
        let value = unsafe { Ept::entry(table, ept::index(gpa, level)).read_volatile() };
        if !ept::present(value) {
            return None;
        }
        table = value & ept::ADDR_MASK;
    }
    Some(Ept::entry(table, ept::index(gpa, 1)))
}

/// A write EPT violation at `gpa` in the EPT `eptp`: if the page is dirty-logged and
/// write-protected, make it writable (it is now dirty) and return true — the guest just
/// retries the write (the violation invalidated the cached translation, SDM 29.4.3.1).
/// Also used when nvmx itself writes guest memory (INS), so those writes are logged too.
/// Lock-free and callable with IRQs off; the EPT outlives the caller's use of it.
pub(crate) fn log_write(eptp: u64, gpa: u64) -> bool {
    let Some(leaf) = leaf_entry(eptp, gpa) else { return false };
    // SAFETY: a leaf of a live EPT, updated atomically by everyone.
    let e = unsafe { AtomicU64::from_ptr(leaf) };
    let mut cur = e.load(Ordering::SeqCst);
    loop {
        let Some(new) = ept::log_write(cur) else { return cur & ept::LOGGED != 0 && cur & ept::WRITE != 0 };
        match e.compare_exchange(cur, new, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

/// The kernel address of the host page behind guest-physical page `gpa` in EPT `eptp`
/// (page-aligned), if a slot maps it.
pub(crate) fn host_page(eptp: u64, gpa: u64) -> Option<*mut u8> {
    translate(eptp, gpa & !0xfff).map(shim::phys_to_virt)
}

/// As [`translate`] of guest-physical page `gpa`, for nvmx to write on the guest's behalf:
/// the write is logged for dirty tracking, and a read-only slot's page is not given (KVM
/// refuses to write guest memory through a read-only slot too; the guest's own writes to it
/// are the VMM's MMIO).
pub(crate) fn translate_for_write(eptp: u64, gpa: u64) -> Option<u64> {
    let page = gpa & !0xfff;
    // SAFETY: a leaf of a live EPT (see translate).
    let entry = unsafe { leaf_entry(eptp, page)?.read_volatile() };
    if !ept::present(entry) || entry & ept::ROM != 0 {
        return None;
    }
    log_write(eptp, page);
    Some(entry & ept::ADDR_MASK)
}

/// As [`host_page`], for nvmx to write on the guest's behalf ([`translate_for_write`]).
pub(crate) fn writable_host_page(eptp: u64, gpa: u64) -> Option<*mut u8> {
    translate_for_write(eptp, gpa).map(shim::phys_to_virt)
}
