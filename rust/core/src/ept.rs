// SPDX-License-Identifier: GPL-2.0
//! EPT paging-structure entries and the EPT pointer (SDM 29.3.2, 29.3.3, 25.6.11).

use super::bits::extract;

/// Read access (bit 0).
pub const READ: u64 = 1 << 0;
/// Write access (bit 1).
pub const WRITE: u64 = 1 << 1;
/// Execute access (bit 2).
pub const EXEC: u64 = 1 << 2;
/// Memory type write-back in a leaf's bits 5:3 (and in the EPTP's bits 2:0).
pub const MEMTYPE_WB: u64 = 6;
/// Physical-address bits of an entry (bits 51:12).
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// A non-leaf entry pointing at the next table: full access, the leaf decides.
pub const fn table(next_phys: u64) -> u64 {
    (next_phys & ADDR_MASK) | READ | WRITE | EXEC
}

/// A 4 KiB leaf mapping `phys` read/write/execute, write-back (PAT not ignored: the guest's
/// PAT still combines, as on bare metal).
pub const fn leaf(phys: u64) -> u64 {
    (phys & ADDR_MASK) | READ | WRITE | EXEC | (MEMTYPE_WB << 3)
}

/// Software bit (EPT entries ignore bits 62:52 of a leaf, SDM table 29-6): the page belongs
/// to a slot with dirty logging. Such a leaf is mapped without WRITE until the guest writes
/// it: that write's EPT violation gives WRITE back, and a leaf with LOGGED and WRITE is a
/// page dirtied since the last KVM_GET_DIRTY_LOG.
pub const LOGGED: u64 = 1 << 58;

/// A 4 KiB leaf for a dirty-logged page: read and execute, write-protected until written.
pub const fn leaf_logged(phys: u64) -> u64 {
    (leaf(phys) & !WRITE) | LOGGED
}

/// Software bit: the page belongs to a read-only slot (`KVM_MEM_READONLY`, a VMM's ROM). Such
/// a leaf never has WRITE: the guest's writes are EPT violations that go to the VMM as MMIO,
/// and nvmx does not write it on the guest's behalf either. Dirty logging leaves it alone.
pub const ROM: u64 = 1 << 59;

/// A 4 KiB leaf for a page of a read-only slot: read and execute only, for good.
pub const fn leaf_rom(phys: u64) -> u64 {
    (leaf(phys) & !WRITE) | ROM
}

/// The leaf for a page of a slot at `phys`: a read-only slot's is [`leaf_rom`] whether or not
/// the slot logs (its pages never become dirty); a dirty-logged slot's is write-protected
/// until written, or writable and already dirty with `initially_dirty`
/// (`KVM_DIRTY_LOG_INITIALLY_SET`); any other is a plain [`leaf`].
pub const fn slot_leaf(phys: u64, readonly: bool, logged: bool, initially_dirty: bool) -> u64 {
    match (readonly, logged, initially_dirty) {
        (true, _, _) => leaf_rom(phys),
        (false, false, _) => leaf(phys),
        (false, true, false) => leaf_logged(phys),
        (false, true, true) => leaf(phys) | LOGGED,
    }
}

/// `entry` after dirty logging of its slot starts (`on`) or stops: write-protected (unless
/// pages start dirty) and LOGGED, or writable and not LOGGED. A read-only slot's leaf stays.
pub const fn with_logging(entry: u64, on: bool, initially_dirty: bool) -> u64 {
    if entry & ROM != 0 {
        entry
    } else if on {
        (if initially_dirty { entry } else { entry & !WRITE }) | LOGGED
    } else {
        (entry | WRITE) & !LOGGED
    }
}

/// What a write EPT violation on `entry` means for dirty logging: `Some(new entry)` if the
/// page is dirty-logged and write-protected (give WRITE back: the page is now dirty),
/// `None` if the violation is not a logging one (not present: MMIO).
pub const fn log_write(entry: u64) -> Option<u64> {
    if entry & LOGGED != 0 && entry & READ != 0 && entry & WRITE == 0 {
        Some(entry | WRITE)
    } else {
        None
    }
}

/// The EPT pointer for a 4-level structure rooted at `pml4_phys`: WB, walk length - 1 = 3,
/// no accessed/dirty flags.
pub const fn eptp(pml4_phys: u64) -> u64 {
    (pml4_phys & ADDR_MASK) | MEMTYPE_WB | (3 << 3)
}

/// The index into the table of `level` (4 = PML4 ... 1 = PT) for guest-physical `gpa`.
pub const fn index(gpa: u64, level: u32) -> usize {
    let lo = 12 + 9 * (level - 1);
    extract(gpa, lo + 8, lo) as usize
}

/// Whether an entry is present (any access bit).
pub const fn present(entry: u64) -> bool {
    entry & (READ | WRITE | EXEC) != 0
}

/// Highest guest-physical address a 4-level EPT maps (48 bits).
pub const MAX_GPA: u64 = (1 << 48) - 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        assert_eq!(table(0x1234_5000), 0x1234_5007);
        assert_eq!(leaf(0x1234_5000), 0x1234_5037);
        assert_eq!(leaf(0xfff0_0000_1234_5fff), 0x0000_0000_1234_5037, "only bits 51:12");
        assert_eq!(eptp(0xabc000), 0xabc01e);
        assert!(present(leaf(0)) && !present(0));
    }

    #[test]
    fn dirty_logging_leaves() {
        let l = leaf_logged(0x5000);
        assert_eq!(l & (READ | WRITE | EXEC), READ | EXEC, "write-protected");
        assert_eq!(l & ADDR_MASK, 0x5000, "the software bit is outside the address");
        assert_eq!(log_write(l), Some(l | WRITE), "the first write makes it writable and dirty");
        assert_eq!(log_write(l | WRITE), None, "already writable: not a logging violation");
        assert_eq!(log_write(leaf(0x5000) & !WRITE), None, "not logged");
        assert_eq!(log_write(0), None, "not present: MMIO");
    }

    #[test]
    fn read_only_slot_leaves() {
        let rom = slot_leaf(0x7000, true, true, true);
        assert_eq!(rom & (READ | WRITE | EXEC), READ | EXEC, "never writable, even logged and initially dirty");
        assert_eq!(rom & LOGGED, 0, "not logged: a read-only page is never dirty");
        assert_eq!(rom & ADDR_MASK, 0x7000);
        assert_eq!(slot_leaf(0x7000, true, false, false), rom);
        assert_eq!(log_write(rom), None, "a write to it is the VMM's MMIO");
        assert_eq!(with_logging(rom, true, false), rom);
        assert_eq!(with_logging(rom, false, false), rom, "stopping logging does not make it writable");
    }

    #[test]
    fn slot_leaves_and_logging() {
        assert_eq!(slot_leaf(0x7000, false, false, false), leaf(0x7000));
        assert_eq!(slot_leaf(0x7000, false, true, false), leaf_logged(0x7000));
        assert_eq!(slot_leaf(0x7000, false, true, true), leaf(0x7000) | LOGGED);
        assert_eq!(with_logging(leaf(0x7000), true, false), leaf_logged(0x7000));
        assert_eq!(with_logging(leaf(0x7000), true, true), leaf(0x7000) | LOGGED);
        assert_eq!(with_logging(leaf_logged(0x7000), false, false), leaf(0x7000));
    }

    #[test]
    fn indices() {
        let gpa = (0x1a5u64 << 39) | (0x0c3 << 30) | (0x1ff << 21) | (0x007 << 12) | 0x123;
        assert_eq!(index(gpa, 4), 0x1a5);
        assert_eq!(index(gpa, 3), 0x0c3);
        assert_eq!(index(gpa, 2), 0x1ff);
        assert_eq!(index(gpa, 1), 0x007);
    }
}
