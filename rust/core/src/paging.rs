// SPDX-License-Identifier: GPL-2.0
//! Guest linear → guest physical translation through the guest's own page tables (SDM vol.
//! 3A ch. 5): no paging, 32-bit paging (4 KiB and, with CR4.PSE, 4 MiB pages), PAE paging
//! and 4-level paging (2 MiB and 1 GiB pages). nvmx needs it to read the instruction that
//! caused an exit it emulates (MMIO); access rights are not checked because the CPU has just
//! fetched that instruction — a translation that fails now (tables changed meanwhile, or
//! memory outside every slot) makes the emulation fail, visibly.

use super::bits::{extract, test};

/// Reads guest-physical memory (8 bytes, naturally aligned).
pub trait GuestPhys {
    /// The 64-bit little-endian value at `gpa`, or `None` outside guest memory.
    fn read_u64(&self, gpa: u64) -> Option<u64>;
}

/// The control-register state that selects the paging mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagingRegs {
    /// CR0 (PG is bit 31).
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4 (PSE bit 4, PAE bit 5).
    pub cr4: u64,
    /// IA32_EFER (LMA bit 10).
    pub efer: u64,
}

const PRESENT: u32 = 0;
const PAGE_SIZE_BIT: u32 = 7;

/// Translate `linear`; `None` if a structure is not present or unreadable.
pub fn translate(regs: &PagingRegs, mem: &dyn GuestPhys, linear: u64) -> Option<u64> {
    if !test(regs.cr0, 31) {
        return Some(linear & 0xffff_ffff);
    }
    if !test(regs.cr4, 5) {
        return translate_32bit(regs, mem, linear as u32);
    }
    let addr_mask = 0x000f_ffff_ffff_f000u64;
    let (mut table, top) = if test(regs.efer, 10) {
        (regs.cr3 & addr_mask, 4)
    } else {
        // PAE: CR3[31:5] points at four PDPTEs (SDM 5.4.1).
        let pdpte = mem.read_u64((regs.cr3 & 0xffff_ffe0) + 8 * extract(linear, 31, 30))?;
        if !test(pdpte, PRESENT) {
            return None;
        }
        (pdpte & addr_mask, 2)
    };
    for level in (1..=top).rev() {
        let shift = 12 + 9 * (level - 1);
        let entry = mem.read_u64(table + 8 * extract(linear, shift + 8, shift))?;
        if !test(entry, PRESENT) {
            return None;
        }
        if level == 1 || (level <= 3 && test(entry, PAGE_SIZE_BIT)) {
            let page_mask = (1u64 << shift) - 1;
            return Some((entry & addr_mask & !page_mask) | (linear & page_mask));
        }
        table = entry & addr_mask;
    }
    None
}

fn read_u32(mem: &dyn GuestPhys, gpa: u64) -> Option<u32> {
    let q = mem.read_u64(gpa & !7)?;
    Some((q >> (8 * (gpa & 4))) as u32)
}

fn translate_32bit(regs: &PagingRegs, mem: &dyn GuestPhys, linear: u32) -> Option<u64> {
    let pde = read_u32(mem, (regs.cr3 & 0xffff_f000) + 4 * (linear >> 22) as u64)?;
    if pde & 1 == 0 {
        return None;
    }
    if test(regs.cr4, 4) && pde & (1 << PAGE_SIZE_BIT) != 0 {
        // 4 MiB page: bits 31:22, plus PSE-36 bits 20:13 as physical bits 39:32.
        let high = extract(pde as u64, 20, 13) << 32;
        return Some(high | (pde & 0xffc0_0000) as u64 | (linear & 0x003f_ffff) as u64);
    }
    let pte = read_u32(mem, (pde & 0xffff_f000) as u64 + 4 * ((linear >> 12) & 0x3ff) as u64)?;
    if pte & 1 == 0 {
        return None;
    }
    Some((pte & 0xffff_f000) as u64 | (linear & 0xfff) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Mem(HashMap<u64, u64>);

    impl GuestPhys for Mem {
        fn read_u64(&self, gpa: u64) -> Option<u64> {
            assert_eq!(gpa % 8, 0, "aligned reads only");
            self.0.get(&gpa).copied().or(if gpa < 0x100_0000 { Some(0) } else { None })
        }
    }

    #[test]
    fn no_paging_is_identity() {
        let m = Mem(HashMap::new());
        let r = PagingRegs::default();
        assert_eq!(translate(&r, &m, 0x1234_5678), Some(0x1234_5678));
    }

    #[test]
    fn four_level_4k_2m_1g() {
        let mut t = HashMap::new();
        // PML4 at CR3 = 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000; PT[1] -> 0x9000.
        t.insert(0x1000, 0x2003);
        t.insert(0x2000, 0x3003);
        t.insert(0x3000, 0x4003);
        t.insert(0x4000 + 8, 0x9003);
        t.insert(0x3000 + 8, 0x0080_0083); // PD[1]: 2 MiB page at 8 MiB
        t.insert(0x2000 + 8, 0x4000_0083); // PDPT[1]: 1 GiB page at 1 GiB
        let m = Mem(t);
        let r = PagingRegs { cr0: 1 << 31 | 1, cr3: 0x1000, cr4: 1 << 5, efer: 1 << 10 | 1 << 8 };
        assert_eq!(translate(&r, &m, 0x1abc), Some(0x9abc));
        assert_eq!(translate(&r, &m, 0x20_1234), Some(0x80_1234));
        assert_eq!(translate(&r, &m, 0x4000_5678), Some(0x4000_5678));
        assert_eq!(translate(&r, &m, 0x2abc), None, "PT[2] not present");
    }

    #[test]
    fn pae_and_32bit() {
        let mut t = HashMap::new();
        // PAE: CR3 = 0x1020 (32-byte aligned PDPT), PDPTE[0] -> 0x2000, PD[0] -> PT 0x3000.
        t.insert(0x1020, 0x2001);
        t.insert(0x2000, 0x3003);
        t.insert(0x3000 + 8 * 5, 0x7003);
        let m = Mem(t);
        let r = PagingRegs { cr0: 1 << 31 | 1, cr3: 0x1020, cr4: 1 << 5, efer: 0 };
        assert_eq!(translate(&r, &m, 0x5123), Some(0x7123));

        let mut t = HashMap::new();
        // 32-bit: CR3 = 0x1000, PDE[0] -> PT 0x2000, PTE[3] -> 0x8000; PDE[1]: 4 MiB page.
        t.insert(0x1000, (0x0040_0083u64 << 32) | 0x2003);
        t.insert(0x2000 + 8, 0x8003u64 << 32);
        let m = Mem(t);
        let r = PagingRegs { cr0: 1 << 31 | 1, cr3: 0x1000, cr4: 1 << 4, efer: 0 };
        assert_eq!(translate(&r, &m, 0x3456), Some(0x8456));
        assert_eq!(translate(&r, &m, 0x0041_2345), Some(0x0041_2345));
        let no_pse = PagingRegs { cr4: 0, ..r };
        assert_eq!(translate(&no_pse, &m, 0x0041_2345), None, "PDE read as a table: empty PTE");
    }
}
