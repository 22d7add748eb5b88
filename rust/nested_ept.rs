// SPDX-License-Identifier: GPL-2.0
//! Nested EPT for one vCPU: EPT02, the EPT the CPU uses while L2 runs under L1's
//! EPT. It maps L2-physical pages to host pages as L1's EPT12 composed with L0's EPT says,
//! 4 KiB at a time, filled on EPT02's own EPT violations (rust/core/src/nested_ept.rs walks
//! EPT12; an access EPT12 does not allow is L1's EPT violation or misconfiguration).
//!
//! EPT02 is a translation cache: it is dropped when L1 invalidates (INVEPT), when L1 runs L2
//! with another EPT12, and when L0's own EPT loses mappings (a new memory generation:
//! slot removal, dirty-log harvest), since its leaves copy L0's. Its tables come from a
//! pool topped up in process context before each IRQs-off region; a fill that finds the
//! pool empty leaves the region to get more, and a cache at its size limit is dropped and
//! refilled rather than grown.

use kernel::page::Page;
use kernel::prelude::*;

use crate::vmx_core::nested_switch::ExitInfo;
use crate::shim;
use crate::vmx_core::ept;
use crate::vmx_core::exit::reason;
use crate::vmx_core::nested_ept::{allows, violation_qualification, walk, EptViolation, Walk};

/// EPT02's size limit in tables (2 MiB per vCPU): enough for 256 MiB of L2 memory touched in
/// scattered 2 MiB regions; beyond it the cache is dropped and refilled.
const MAX_TABLES: usize = 512;
/// One fill needs at most a PDPT, a PD and a PT.
const FILL_TABLES: usize = 3;

/// EPT02 of a vCPU.
pub(crate) struct ShadowEpt {
    /// Table pages: `pages[0]` is the PML4, `pages[..used]` are in use, the rest are zeroed
    /// spares.
    pages: KVec<Page>,
    used: usize,
    /// EPT02's pointer, for VMCS02.
    pub(crate) eptp: u64,
    /// The EPT12 pointer and L0 memory generation the cached translations come from.
    source: Option<(u64, u64)>,
    /// (CPU, generation) for which the CPU's EPT02-tagged TLB entries were last invalidated.
    pub(crate) flushed_for: Option<(u32, u64)>,
}

/// What an EPT02 violation comes to.
pub(crate) enum Fault {
    /// EPT02 now maps the page: L2 retries the access.
    Resume,
    /// EPT12 does not allow the access, or is misconfigured: L1 gets the exit.
    Reflect(ExitInfo),
    /// EPT02 needs tables from process context: leave the region, L2 retries afterwards.
    Refill,
    /// EPT12 maps the page to this L1-physical address outside L0's memory: MMIO of L1's.
    Mmio(u64),
    /// An EPT12 entry at this L1-physical address is outside L1's memory.
    Unreadable(u64),
}

fn zero(page: &Page) {
    // SAFETY: a page we own, in the direct map, 4 KiB long.
    unsafe { core::ptr::write_bytes(shim::phys_to_virt(shim::page_phys(page)), 0, 4096) };
}

impl ShadowEpt {
    pub(crate) fn new() -> Result<Self> {
        let mut pages = KVec::with_capacity(MAX_TABLES, GFP_KERNEL_ACCOUNT)?;
        pages.push(Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?, GFP_KERNEL_ACCOUNT)?;
        let eptp = ept::eptp(shim::page_phys(&pages[0]));
        Ok(Self { pages, used: 1, eptp, source: None, flushed_for: None })
    }

    fn spares_wanted(&self) -> usize {
        (self.used + FILL_TABLES).min(MAX_TABLES)
    }

    /// Process context: enough spare tables for the next fill.
    pub(crate) fn top_up(&mut self) -> Result {
        while self.pages.len() < self.spares_wanted() {
            // Capacity was reserved for MAX_TABLES: the push does not allocate.
            self.pages.push(Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?, GFP_KERNEL_ACCOUNT)?;
        }
        Ok(())
    }

    /// Whether a fill can run without allocating.
    pub(crate) fn ready(&self) -> bool {
        self.pages.len() >= self.spares_wanted()
    }

    /// Drop every translation: the tables in use are zeroed and become spares again. The
    /// CPU may still hold EPT02 translations: `flushed_for` is reset, so INVEPT follows
    /// before L2 runs.
    pub(crate) fn zap(&mut self) {
        for p in &self.pages[..self.used] {
            zero(p);
        }
        self.used = 1;
        self.flushed_for = None;
    }

    /// Before L2 runs on EPT02: translations from another EPT12 or another L0 memory
    /// generation are dropped.
    pub(crate) fn use_for(&mut self, eptp12: u64, generation: u64) {
        if self.source != Some((eptp12, generation)) {
            self.zap();
            self.source = Some((eptp12, generation));
        }
    }

    /// Map L2-physical page `gpa` to host page `hpa` with `rights` (R/W/X), write-back.
    /// False if no spare table is left (the caller leaves the region for top_up, or for the
    /// INVEPT after dropping a full cache).
    fn map(&mut self, gpa: u64, hpa: u64, rights: u64) -> bool {
        if self.pages.len() < self.used + FILL_TABLES {
            if self.pages.len() == MAX_TABLES {
                // At the limit: start over. The region is left all the same, so that the
                // next one invalidates the CPU's EPT02 translations before L2 runs.
                self.zap();
            }
            return false;
        }
        let (pages, used) = (&self.pages, &mut self.used);
        // FILL_TABLES spares are there (checked above): taking them cannot fail.
        let Ok(leaf) = crate::ept::leaf_alloc(self.eptp & ept::ADDR_MASK, gpa, || {
            let next = shim::page_phys(&pages[*used]);
            *used += 1;
            Ok(next)
        }) else {
            return false;
        };
        let value = (ept::leaf(hpa) & !(ept::READ | ept::WRITE | ept::EXEC)) | (rights & 7);
        // SAFETY: a leaf entry in a table page of this EPT02 (pages we own).
        unsafe { leaf.write(value) };
        true
    }

    /// An EPT violation of EPT02 at L2-physical `gpa` with qualification `q`, L1 running
    /// L2 with `eptp12` (checked at entry), L0's EPT being `eptp01`.
    pub(crate) fn violation(&mut self, cur: &crate::vmcs::LoadedVmcs<'_>, eptp01: u64, eptp12: u64, caps: u64, maxphyaddr: u8, gpa: u64, q: u64) -> Fault {
        // Qualification bits 2:0 (read, write, fetch) are the EPT rights the access needs.
        // The exit information is read only for a fault that goes to L1.
        match resolve(eptp01, eptp12, caps, maxphyaddr, gpa, EptViolation(q).access()) {
            Resolved::Unreadable(table) => Fault::Unreadable(table),
            // SDM 28.2.1: an EPT misconfiguration has no qualification.
            Resolved::Denied(None) => Fault::Reflect(ExitInfo {
                reason: reason::EPT_MISCONFIG.into(),
                qualification: 0,
                ..crate::vmcs::exit_info_from_vmcs(cur)
            }),
            Resolved::Denied(Some(rights)) => Fault::Reflect(ExitInfo {
                qualification: violation_qualification(q, rights),
                ..crate::vmcs::exit_info_from_vmcs(cur)
            }),
            Resolved::L1Mmio(l1_gpa) => Fault::Mmio(l1_gpa),
            Resolved::Host { hpa, rights } => {
                if self.map(gpa & !0xfff, hpa, rights) {
                    Fault::Resume
                } else {
                    Fault::Refill
                }
            }
        }
    }
}

/// Where an access to L2-physical `gpa` needing EPT rights `need` (READ / WRITE / EXEC) lands
/// when L2 runs under L1's EPT.
pub(crate) enum Resolved {
    /// The host page holding `gpa`, with the rights EPT12 and L0's EPT give together.
    Host { hpa: u64, rights: u64 },
    /// EPT12 does not allow the access: its rights for the address (0: not present), or
    /// `None`: an EPT12 entry on the way is misconfigured.
    Denied(Option<u64>),
    /// EPT12 maps it to this L1-physical address, which L0's EPT does not map for the access:
    /// L1's MMIO.
    L1Mmio(u64),
    /// An EPT12 entry at this L1-physical address is outside L1's memory.
    Unreadable(u64),
}

/// EPT12 (read through L0's EPT `eptp01`), then L0's EPT: the one composition both EPT02's
/// fills and nvmx's own accesses for L2 use. A write is logged for dirty tracking on L1's page.
pub(crate) fn resolve(eptp01: u64, eptp12: u64, caps: u64, maxphyaddr: u8, gpa: u64, need: u64) -> Resolved {
    let read = |a: u64| read_l1_u64(eptp01, a);
    let (l1_page, rights12) = match walk(eptp12, gpa, caps, maxphyaddr, read) {
        Walk::Unreadable { table } => return Resolved::Unreadable(table),
        Walk::Misconfig => return Resolved::Denied(None),
        Walk::NotPresent => return Resolved::Denied(Some(0)),
        Walk::Mapped { rights, .. } if !allows(rights, need) => return Resolved::Denied(Some(rights)),
        Walk::Mapped { l1_page, rights } => (l1_page, rights),
    };
    // L0's side: a first write to a dirty-logged page makes it writable (dirty).
    if need & ept::WRITE != 0 {
        crate::ept::log_write(eptp01, l1_page);
    }
    match crate::ept::lookup(eptp01, l1_page) {
        Some((hpa, rights01)) if allows(rights01, need) => Resolved::Host { hpa, rights: rights12 & rights01 },
        _ => Resolved::L1Mmio(l1_page | (gpa & 0xfff)),
    }
}

/// An 8-byte entry of L1's memory at L1-physical `gpa` (EPT12 tables).
pub(crate) fn read_l1_u64(eptp01: u64, gpa: u64) -> Option<u64> {
    let hpa = crate::ept::translate(eptp01, gpa & !7)?;
    // SAFETY: a pinned page of the VM the live EPT maps, in the direct map; aligned 8 bytes.
    Some(unsafe { (shim::phys_to_virt(hpa) as *const u64).read_volatile() })
}
