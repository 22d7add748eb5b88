// SPDX-License-Identifier: GPL-2.0
//! A VM's EPT: a 4-level write-back structure mapping every page of every slot, built in
//! process context (allocations may sleep) whenever the slots change. An `Ept` keeps the
//! pinned pages it maps alive, so a slot deleted while a vCPU still runs on the old EPT
//! cannot hand the guest freed memory.

use kernel::page::Page;
use kernel::prelude::*;
use kernel::sync::Arc;

use crate::shim;
use crate::vm::{MemSlot, PinnedPages};
use crate::vmx_core::ept;
use crate::vmx_core::memslot::PAGE_SIZE;

/// A built EPT.
pub(crate) struct Ept {
    /// Every table, freed with the EPT; the first is the PML4.
    _tables: KVec<Page>,
    /// The memory the leaves point at.
    _memory: KVec<Arc<PinnedPages>>,
    /// The EPT pointer for the VMCS.
    pub(crate) eptp: u64,
}

impl Ept {
    /// Map every page of `slots`.
    pub(crate) fn build(slots: &[MemSlot]) -> Result<Self> {
        let mut tables = KVec::new();
        tables.push(Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?, GFP_KERNEL)?;
        let root = shim::page_phys(&tables[0]);
        let mut memory = KVec::with_capacity(slots.len(), GFP_KERNEL)?;
        for s in slots {
            for i in 0..s.slot.npages {
                let gpa = (s.slot.base_gfn + i) * PAGE_SIZE;
                let phys = s.pages.phys(i as usize).ok_or(EINVAL)?;
                Self::map(&mut tables, root, gpa, phys)?;
            }
            memory.push(s.pages.clone(), GFP_KERNEL)?;
        }
        Ok(Self { _tables: tables, _memory: memory, eptp: ept::eptp(root) })
    }

    /// Map one 4 KiB page, allocating the tables on the way.
    fn map(tables: &mut KVec<Page>, root: u64, gpa: u64, phys: u64) -> Result {
        if gpa > ept::MAX_GPA {
            return Err(EINVAL);
        }
        let mut table = root;
        for level in (2..=4).rev() {
            let entry = Self::entry(table, ept::index(gpa, level));
            // SAFETY: `entry` points into a table page of this EPT, which we own.
            let value = unsafe { entry.read() };
            table = if ept::present(value) {
                value & ept::ADDR_MASK
            } else {
                let page = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
                let next = shim::page_phys(&page);
                tables.push(page, GFP_KERNEL)?;
                // SAFETY: as above.
                unsafe { entry.write(ept::table(next)) };
                next
            };
        }
        let leaf = Self::entry(table, ept::index(gpa, 1));
        // SAFETY: as above.
        unsafe { leaf.write(ept::leaf(phys)) };
        Ok(())
    }

    /// Pointer to entry `index` of the table at `table_phys` (a page of this EPT).
    fn entry(table_phys: u64, index: usize) -> *mut u64 {
        // SAFETY (of the callers' accesses): EPT tables are pages we allocated, in the direct
        // map; `index` < 512 by construction of `ept::index`.
        (shim::phys_to_virt(table_phys) as *mut u64).wrapping_add(index)
    }
}

/// The host-physical address `gpa` maps to in the EPT whose pointer is `eptp` (an EPT nvmx
/// built: 4 levels of 4 KiB tables), or `None` if it maps nothing there. Lock-free: the
/// caller holds a reference to that EPT for as long as it uses the answer.
pub(crate) fn translate(eptp: u64, gpa: u64) -> Option<u64> {
    if gpa > ept::MAX_GPA {
        return None;
    }
    let mut table = eptp & ept::ADDR_MASK;
    for level in (1..=4).rev() {
        // SAFETY: `table` is a table page of a live EPT (see above), in the direct map.
        let value = unsafe { Ept::entry(table, ept::index(gpa, level)).read() };
        if !ept::present(value) {
            return None;
        }
        table = value & ept::ADDR_MASK;
    }
    Some(table | (gpa & (PAGE_SIZE - 1)))
}
