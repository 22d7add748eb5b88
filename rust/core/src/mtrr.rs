// SPDX-License-Identifier: GPL-2.0
//! The vCPU's MTRRs (SDM vol. 3A 13.11) as KVM has them (arch/x86/kvm/mtrr.c): storage with
//! KVM's validity rules, for the guest and its VMM alike. Guest memory is write-back in
//! nvmx's EPT whatever the guest programs here — KVM, too, no longer lets guest MTRRs
//! change EPT memory types — but firmware and guests program them, and a VMM such as QEMU
//! saves and restores them, so every access must behave.

/// IA32_MTRRCAP (read-only).
pub const MTRRCAP: u32 = 0xfe;
/// IA32_MTRR_DEF_TYPE.
pub const DEF_TYPE: u32 = 0x2ff;
/// IA32_MTRR_PHYSBASE0; PHYSMASKn follows each PHYSBASEn.
pub const PHYSBASE0: u32 = 0x200;
/// Variable-range MTRRs (KVM_NR_VAR_MTRR).
pub const VAR_COUNT: u32 = 8;
/// IA32_MTRR_FIX64K_00000.
pub const FIX64K_00000: u32 = 0x250;
/// IA32_MTRR_FIX16K_80000, _A0000.
pub const FIX16K_80000: u32 = 0x258;
/// IA32_MTRR_FIX4K_C0000 ... _F8000.
pub const FIX4K_C0000: u32 = 0x268;
/// IA32_MTRR_FIX4K_F8000, the last of the range KVM handles from PHYSBASE0.
pub const FIX4K_F8000: u32 = 0x26f;

/// IA32_MTRRCAP as KVM reports it: WC (10) and fixed ranges (8), VCNT variable ranges, no
/// SMRR.
pub const MTRRCAP_VALUE: u64 = 0x500 | VAR_COUNT as u64;

/// The MTRR state of a vCPU (all 0 at RESET: MTRRs off, SDM 13.11.2): the variable
/// ranges' base and mask, the 11 fixed-range MTRRs, IA32_MTRR_DEF_TYPE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mtrrs {
    regs: [u64; SLOTS],
}

const SLOTS: usize = 2 * VAR_COUNT as usize + 11 + 1;

/// Memory types 0 (UC), 1 (WC), 4 (WT), 5 (WP), 6 (WB); 2, 3 and 7 and above are reserved.
const fn valid_type(t: u64) -> bool {
    t < 8 && (1 << t) & 0x73 != 0
}

/// Whether `index` is handled here (IA32_MTRRCAP, IA32_MTRR_DEF_TYPE, and KVM's range from
/// PHYSBASE0 to FIX4K_F8000, whose indexes that are no MTRR are #GP).
pub const fn is_mtrr_msr(index: u32) -> bool {
    index == MTRRCAP || index == DEF_TYPE || (index >= PHYSBASE0 && index <= FIX4K_F8000)
}

/// Where MSR `index` is kept.
const fn slot(index: u32) -> Option<usize> {
    let fixed = 2 * VAR_COUNT as usize;
    Some(match index {
        i if i >= PHYSBASE0 && i < PHYSBASE0 + 2 * VAR_COUNT => (i - PHYSBASE0) as usize,
        FIX64K_00000 => fixed,
        i if i >= FIX16K_80000 && i <= FIX16K_80000 + 1 => fixed + 1 + (i - FIX16K_80000) as usize,
        i if i >= FIX4K_C0000 && i <= FIX4K_F8000 => fixed + 3 + (i - FIX4K_C0000) as usize,
        DEF_TYPE => SLOTS - 1,
        _ => return None,
    })
}

impl Mtrrs {
    /// RDMSR (guest or VMM); `None` is #GP.
    pub fn read(&self, index: u32) -> Option<u64> {
        if index == MTRRCAP {
            return Some(MTRRCAP_VALUE);
        }
        slot(index).map(|i| self.regs[i])
    }

    /// WRMSR (guest or VMM, the same rules); false is #GP. `maxphyaddr` bounds the
    /// variable ranges' base and mask.
    pub fn write(&mut self, index: u32, value: u64, maxphyaddr: u32) -> bool {
        let valid = match index {
            DEF_TYPE => value & !0xcff == 0 && valid_type(value & 0xff),
            i if (FIX64K_00000..=FIX4K_F8000).contains(&i) => (0..8).all(|b| valid_type((value >> (8 * b)) & 0xff)),
            i if (PHYSBASE0..PHYSBASE0 + 2 * VAR_COUNT).contains(&i) => {
                let beyond = if maxphyaddr >= 64 { 0 } else { !((1u64 << maxphyaddr) - 1) };
                if i % 2 == 0 {
                    valid_type(value & 0xff) && value & (beyond | 0xf00) == 0
                } else {
                    value & (beyond | 0x7ff) == 0
                }
            }
            _ => false,
        };
        match (valid, slot(index)) {
            (true, Some(i)) => {
                self.regs[i] = value;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvms_rules() {
        let mut m = Mtrrs::default();
        assert_eq!(m.read(MTRRCAP), Some(0x508));
        assert!(!m.write(MTRRCAP, 0, 39), "read-only");
        assert_eq!(m.read(DEF_TYPE), Some(0), "off at RESET");
        assert!(m.write(DEF_TYPE, 0xc06, 39));
        assert_eq!(m.read(DEF_TYPE), Some(0xc06));
        assert!(!m.write(DEF_TYPE, 0x1006, 39), "reserved bit 12");
        assert!(!m.write(DEF_TYPE, 0xc02, 39), "type 2 is reserved");
        assert!(m.write(FIX64K_00000, 0x0606_0606_0606_0606, 39));
        assert!(!m.write(FIX4K_F8000, 0x0606_0606_0606_0607, 39), "one reserved type");
        assert_eq!(m.read(FIX4K_F8000), Some(0));
        assert!(m.write(FIX16K_80000 + 1, 0x0101_0101_0101_0101, 39));
        // Variable ranges: types, reserved bits, the physical-address width.
        assert!(m.write(PHYSBASE0, 0x8000_0006, 39));
        assert!(!m.write(PHYSBASE0, 0x8000_0106, 39), "base bits 11:8");
        assert!(!m.write(PHYSBASE0 + 2, 1 << 39 | 6, 39), "beyond MAXPHYADDR");
        assert!(m.write(PHYSBASE0 + 1, 0x7f_8000_0800, 39), "mask with valid");
        assert!(!m.write(PHYSBASE0 + 1, 0x7f_8000_0801, 39), "mask bits 10:0");
        assert_eq!(m.read(PHYSBASE0 + 1), Some(0x7f_8000_0800));
        assert!(!m.write(PHYSBASE0 + 16, 0, 39), "only 8 variable ranges");
        assert_eq!(m.read(PHYSBASE0 + 16), None);
        assert!(is_mtrr_msr(0x210) && m.read(0x210).is_none(), "a gap in KVM's range is #GP");
        assert!(!is_mtrr_msr(0x277), "PAT is not here");
    }
}
