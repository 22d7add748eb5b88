// SPDX-License-Identifier: GPL-2.0
//! Nested EPT: L1's EPT ("EPT12", mapping L2-physical to L1-physical addresses) as
//! the CPU would walk it, so that nvmx can build the EPT the CPU really uses for L2 ("EPT02",
//! L2-physical to host-physical: EPT12 composed with L0's EPT) and answer an L2 access that
//! EPT12 does not allow with the EPT violation or misconfiguration L1 expects.
//!
//! EPT02 is a cache of translations, built on EPT violations, exactly as the CPU's own
//! paging-structure caches and TLBs are caches of EPT12: an entry that gains permissions
//! needs no invalidation (the violation makes nvmx walk again, SDM 29.4.3.1), one that loses
//! them needs INVEPT from L1 (SDM 29.4.3.2), which drops EPT02. The walk is a pure function
//! of EPT12's entries, read through a closure.

use super::bits::bitfield;
use super::ept::{ADDR_MASK, EXEC, READ, WRITE};

/// IA32_VMX_EPT_VPID_CAP bits (SDM A.10) nvmx reads here.
pub mod cap {
    /// Execute-only translations (bits 2:0 = 100b) allowed.
    pub const EXECUTE_ONLY: u64 = 1 << 0;
    /// Page-walk length 4.
    pub const WALK_4: u64 = 1 << 6;
    /// Uncacheable EPT paging structures.
    pub const MEMTYPE_UC: u64 = 1 << 8;
    /// Write-back EPT paging structures.
    pub const MEMTYPE_WB: u64 = 1 << 14;
    /// 2-MByte pages (PDE with bit 7).
    pub const PAGES_2M: u64 = 1 << 16;
    /// 1-GByte pages (PDPTE with bit 7).
    pub const PAGES_1G: u64 = 1 << 17;
    /// INVEPT supported.
    pub const INVEPT: u64 = 1 << 20;
    /// Accessed and dirty flags.
    pub const ACCESSED_DIRTY: u64 = 1 << 21;
    /// Single-context INVEPT.
    pub const INVEPT_SINGLE: u64 = 1 << 25;
    /// All-context INVEPT.
    pub const INVEPT_ALL: u64 = 1 << 26;
}

/// Bit 7 of an EPT entry: a PDPTE or PDE that maps a page (1 GiB / 2 MiB) instead of a table.
const PAGE_SIZE_BIT: u64 = 1 << 7;

/// Whether `eptp` is a valid EPT pointer for L1's VMCS12 (SDM 27.2.1.1, "enable EPT"):
/// an offered memory type (UC 0 or WB 6), a 4-level walk (bits 5:3 = 3), bit 6 (accessed
/// and dirty flags) only where offered, bits 11:7 reserved, the address within the
/// physical-address width.
pub fn eptp_valid(eptp: u64, caps: u64, maxphyaddr: u8) -> bool {
    let memtype_ok = match eptp & 7 {
        0 => caps & cap::MEMTYPE_UC != 0,
        6 => caps & cap::MEMTYPE_WB != 0,
        _ => false,
    };
    let walk_ok = (eptp >> 3) & 7 == 3 && caps & cap::WALK_4 != 0;
    let ad_ok = eptp & (1 << 6) == 0 || caps & cap::ACCESSED_DIRTY != 0;
    memtype_ok && walk_ok && ad_ok && eptp & 0xf80 == 0 && eptp >> maxphyaddr == 0
}

/// What a walk of EPT12 for one L2-physical address found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// A translation.
    Mapped {
        /// The L1-physical address of the 4 KiB page holding the L2 address.
        l1_page: u64,
        /// The access rights every entry on the way allows together (READ | WRITE | EXEC).
        rights: u64,
    },
    /// An entry on the way is not present (bits 2:0 = 0): an EPT violation whatever the
    /// access, with no rights (the AND over the entries includes the empty one).
    NotPresent,
    /// An entry is misconfigured (SDM 29.3.3.1): an EPT misconfiguration exit.
    Misconfig,
    /// An entry of EPT12 lies outside L1's memory: the walk cannot be done (nvmx reports
    /// it to userspace; the CPU would read garbage or abort).
    Unreadable {
        /// The L1-physical address of the entry.
        table: u64,
    },
}

/// Whether a present entry at `level` (4 = PML4E ... 1 = PTE) is misconfigured
/// (SDM 29.3.3.1): write without read, execute-only where not offered, reserved bits
/// (above the physical-address width; bits 7:3 of PML4Es and of tables; bit 7 of a PML4E;
/// large pages not offered, or with address bits below their size), an invalid leaf memory
/// type (2, 3, 7).
pub fn misconfigured(entry: u64, level: u32, caps: u64, maxphyaddr: u8) -> bool {
    let rwx = entry & 7;
    if rwx & (READ | WRITE) == WRITE || (rwx == EXEC && caps & cap::EXECUTE_ONLY == 0) {
        return true;
    }
    if (entry & ((1u64 << 52) - 1)) >> maxphyaddr != 0 {
        return true;
    }
    let large = entry & PAGE_SIZE_BIT != 0;
    let leaf = level == 1 || (large && level <= 3);
    match level {
        4 if large => return true,
        3 if large && caps & cap::PAGES_1G == 0 => return true,
        2 if large && caps & cap::PAGES_2M == 0 => return true,
        _ => {}
    }
    if leaf {
        if matches!((entry >> 3) & 7, 2 | 3 | 7) {
            return true;
        }
        // Address bits below the page's size are reserved (bits 29:12 of a 1 GiB page,
        // 20:12 of a 2 MiB page).
        let low = match level {
            3 => 0x3fff_f000,
            2 => 0x001f_f000,
            _ => 0,
        };
        entry & low != 0
    } else {
        // Bits 7:3 of a non-leaf entry are reserved.
        entry & 0xf8 != 0
    }
}

/// Walk EPT12 (`eptp12`) for L2-physical address `gpa`. `read(l1_phys)` reads one 8-byte
/// entry of L1's memory.
pub fn walk(eptp12: u64, gpa: u64, caps: u64, maxphyaddr: u8, mut read: impl FnMut(u64) -> Option<u64>) -> Walk {
    let mut table = eptp12 & ADDR_MASK;
    let mut rights = READ | WRITE | EXEC;
    for level in (1..=4).rev() {
        let index = (gpa >> (12 + 9 * (level - 1))) & 0x1ff;
        let at = table + 8 * index;
        let Some(entry) = read(at) else { return Walk::Unreadable { table: at } };
        if entry & 7 == 0 {
            return Walk::NotPresent;
        }
        if misconfigured(entry, level, caps, maxphyaddr) {
            return Walk::Misconfig;
        }
        rights &= entry & 7;
        let addr = entry & ADDR_MASK;
        if level == 1 || entry & PAGE_SIZE_BIT != 0 {
            // The 4 KiB page of `gpa` inside the leaf's page.
            let size_mask = (1u64 << (12 + 9 * (level - 1))) - 1;
            let l1_page = (addr & !size_mask) | (gpa & size_mask & !0xfff);
            return Walk::Mapped { l1_page, rights };
        }
        table = addr;
    }
    unreachable!("a 4-level walk ends at level 1")
}

bitfield! {
    /// Exit qualification of an EPT violation (SDM table 28-7).
    pub struct EptViolation(u64) {
        /// Bits 2:0, the access: the three bits below together.
        access, with_access: 2:0 as u64;
        /// The access was a data read.
        read, with_read: 0;
        /// The access was a data write.
        write, with_write: 1;
        /// The access was an instruction fetch.
        fetch, with_fetch: 2;
        /// Bits 5:3: the guest-physical address was readable, writable, executable (the
        /// EPT entries' rights, ANDed over the walk).
        rights, with_rights: 5:3 as u64;
        /// The guest linear-address field is valid.
        linear_valid, with_linear_valid: 7;
        /// The access was to the translation of a linear address (not to a paging
        /// structure).
        translated, with_translated: 8;
        /// NMI unblocking due to IRET.
        nmi_unblocking, with_nmi_unblocking: 12;
    }
}

/// Whether the access described by an EPT-violation qualification (its bits 2:0) is
/// allowed by `rights`.
pub const fn allows(rights: u64, qualification: u64) -> bool {
    let q = EptViolation(qualification);
    let need = (if q.read() { READ } else { 0 }) | (if q.write() { WRITE } else { 0 }) | (if q.fetch() { EXEC } else { 0 });
    rights & need == need
}

/// The qualification of the EPT violation L1 gets (SDM table 28-7): the access bits and the
/// linear-address / NMI-unblocking bits (7, 8, 12) as the CPU reported them for EPT02, and
/// bits 5:3 from EPT12's rights for the address (0 where an entry is not present).
pub const fn violation_qualification(hw: u64, rights: u64) -> u64 {
    let hw = EptViolation(hw);
    EptViolation(0)
        .with_read(hw.read())
        .with_write(hw.write())
        .with_fetch(hw.fetch())
        .with_rights(rights & 7)
        .with_linear_valid(hw.linear_valid())
        .with_translated(hw.translated())
        .with_nmi_unblocking(hw.nmi_unblocking())
        .0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ALL: u64 = cap::EXECUTE_ONLY | cap::WALK_4 | cap::MEMTYPE_WB | cap::PAGES_2M | cap::PAGES_1G;

    /// A little EPT12 in a map of L1-physical addresses.
    struct Mem(HashMap<u64, u64>);
    impl Mem {
        fn new() -> Self {
            Mem(HashMap::new())
        }
        fn set(&mut self, table: u64, index: u64, entry: u64) {
            self.0.insert(table + 8 * index, entry);
        }
        fn walk(&self, gpa: u64) -> Walk {
            walk(0x1000 | 0x1e, gpa, ALL, 39, |a| Some(self.0.get(&a).copied().unwrap_or(0)))
        }
    }

    #[test]
    fn eptp_rules() {
        assert!(eptp_valid(0x1234_5000 | 0x1e, ALL, 39), "WB, 4 levels");
        assert!(!eptp_valid(0x1234_5000 | 0x18, ALL, 39), "UC not offered");
        assert!(eptp_valid(0x1234_5000 | 0x18, ALL | cap::MEMTYPE_UC, 39), "UC offered");
        assert!(!eptp_valid(0x1234_5000 | 0x1d, ALL, 39), "memory type 5");
        assert!(!eptp_valid(0x1234_5000 | 0x26, ALL, 39), "5-level walk");
        assert!(!eptp_valid(0x1234_5000 | 0x5e, ALL, 39), "A/D not offered");
        assert!(eptp_valid(0x1234_5000 | 0x5e, ALL | cap::ACCESSED_DIRTY, 39), "A/D offered");
        assert!(!eptp_valid(0x1234_5000 | 0x11e, ALL, 39), "bit 8 reserved");
        assert!(!eptp_valid((1 << 39) | 0x1e, ALL, 39), "beyond MAXPHYADDR");
        assert!(!eptp_valid(0x1e, ALL & !cap::WALK_4, 39), "4-level walks not offered");
    }

    #[test]
    fn walks_4k_2m_1g() {
        let mut m = Mem::new();
        m.set(0x1000, 0, 0x2000 | 7);
        m.set(0x2000, 0, 0x3000 | 7);
        m.set(0x3000, 0, 0x4000 | 7);
        m.set(0x4000, 5, 0x9_9000 | 0x30 | READ | WRITE);
        assert_eq!(m.walk(0x5123), Walk::Mapped { l1_page: 0x9_9000, rights: READ | WRITE });
        assert_eq!(m.walk(0x6000), Walk::NotPresent);
        // A 2 MiB page at PD index 1, read/execute only.
        m.set(0x3000, 1, 0x4000_0000 | PAGE_SIZE_BIT | 0x30 | READ | EXEC);
        assert_eq!(m.walk(0x20_0000 + 0x1_2345), Walk::Mapped { l1_page: 0x4001_2000, rights: READ | EXEC });
        // A 1 GiB page at PDPT index 1; a PML4E without write takes write away.
        m.set(0x2000, 1, 0x8000_0000 | PAGE_SIZE_BIT | 0x30 | 7);
        assert_eq!(m.walk(0x4000_0000 + 0x123_4567), Walk::Mapped { l1_page: 0x8123_4000, rights: 7 });
        m.set(0x1000, 0, 0x2000 | READ | EXEC);
        assert_eq!(m.walk(0x4000_0000), Walk::Mapped { l1_page: 0x8000_0000, rights: READ | EXEC });
    }

    #[test]
    fn misconfigurations() {
        let t = 0x2000;
        assert!(misconfigured(t | WRITE, 4, ALL, 39), "write-only");
        assert!(misconfigured(t | WRITE | EXEC, 3, ALL, 39), "write+execute without read");
        assert!(!misconfigured(t | EXEC, 2, ALL, 39), "execute-only where offered");
        assert!(misconfigured(t | EXEC, 2, ALL & !cap::EXECUTE_ONLY, 39), "execute-only not offered");
        assert!(misconfigured((1 << 40) | t | 7, 1, ALL, 39), "address beyond MAXPHYADDR");
        assert!(!misconfigured((1 << 62) | t | 0x37, 1, ALL, 39), "bits 63:52 ignored");
        assert!(misconfigured(t | PAGE_SIZE_BIT | 7, 4, ALL, 39), "no large pages in the PML4");
        assert!(misconfigured(t | 0x8 | 7, 3, ALL, 39), "bits 7:3 of a table reserved");
        assert!(misconfigured(0x4000_0000 | PAGE_SIZE_BIT | 0x30 | 7, 3, ALL & !cap::PAGES_1G, 39), "1G not offered");
        assert!(misconfigured(0x20_0000 | PAGE_SIZE_BIT | 0x30 | 7, 2, ALL & !cap::PAGES_2M, 39), "2M not offered");
        assert!(misconfigured(0x4000_1000 | PAGE_SIZE_BIT | 0x30 | 7, 3, ALL, 39), "1G page address bits 29:12");
        assert!(misconfigured(0x20_1000 | PAGE_SIZE_BIT | 0x30 | 7, 2, ALL, 39), "2M page address bits 20:12");
        for mt in [2, 3, 7] {
            assert!(misconfigured(t | (mt << 3) | 7, 1, ALL, 39), "memory type {mt}");
        }
        for mt in [0, 1, 4, 5, 6] {
            assert!(!misconfigured(t | (mt << 3) | 7, 1, ALL, 39), "memory type {mt}");
        }
        let mut m = Mem::new();
        m.set(0x1000, 0, 0x2000 | WRITE);
        assert_eq!(m.walk(0), Walk::Misconfig);
    }

    #[test]
    fn unreadable_tables() {
        let w = walk(0x1000 | 0x1e, 0x4000_0000_0000, ALL, 39, |a| (a != 0x1000 + 8 * 0x80).then_some(0));
        assert_eq!(w, Walk::Unreadable { table: 0x1400 });
    }

    #[test]
    fn access_rights_and_qualification() {
        assert!(allows(READ, 1) && !allows(READ, 2) && !allows(READ, 4));
        assert!(allows(READ | WRITE, 3) && !allows(READ | EXEC, 3));
        assert!(allows(EXEC, 4) && allows(0, 0));
        // Write to a read/execute page, linear address valid (7, 8), NMI unblocking (12);
        // bits 9-11 and 13+ of the hardware's qualification are not passed on.
        let hw = 2 | (1 << 7) | (1 << 8) | (1 << 12) | (1 << 9) | (1 << 16) | (7 << 3);
        assert_eq!(violation_qualification(hw, READ | EXEC), 2 | (5 << 3) | (1 << 7) | (1 << 8) | (1 << 12));
        assert_eq!(violation_qualification(1, 0), 1);
    }
}
