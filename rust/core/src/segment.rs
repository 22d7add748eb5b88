// SPDX-License-Identifier: GPL-2.0
//! Segment registers as `struct kvm_segment` has them and as the VMCS stores their access
//! rights (SDM 25.4.1, table 25-2).

use super::bits::{extract, test};

/// Bit 16 of the access rights: segment unusable.
pub const AR_UNUSABLE: u32 = 1 << 16;

/// A segment register's hidden attributes (the fields of `struct kvm_segment`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Type (4 bits).
    pub type_: u8,
    /// Descriptor type: 1 = code/data.
    pub s: u8,
    /// Privilege level.
    pub dpl: u8,
    /// Present.
    pub present: u8,
    /// Available for software.
    pub avl: u8,
    /// 64-bit code segment.
    pub l: u8,
    /// Default operation size.
    pub db: u8,
    /// Granularity.
    pub g: u8,
    /// Unusable (null selector loaded, or not present).
    pub unusable: u8,
}

impl Attributes {
    /// The VMCS access-rights encoding. An unusable segment is just "unusable" (bit 16), as
    /// KVM writes it: the other bits do not matter then.
    pub const fn to_ar(self) -> u32 {
        if self.unusable != 0 {
            return AR_UNUSABLE;
        }
        (self.type_ as u32 & 0xf)
            | (self.s as u32 & 1) << 4
            | (self.dpl as u32 & 3) << 5
            | (self.present as u32 & 1) << 7
            | (self.avl as u32 & 1) << 12
            | (self.l as u32 & 1) << 13
            | (self.db as u32 & 1) << 14
            | (self.g as u32 & 1) << 15
    }

    /// Decode VMCS access rights. An unusable segment reads back as not present, as KVM
    /// reports it.
    pub const fn from_ar(ar: u32) -> Self {
        let ar64 = ar as u64;
        let unusable = test(ar64, 16);
        Attributes {
            type_: extract(ar64, 3, 0) as u8,
            s: test(ar64, 4) as u8,
            dpl: extract(ar64, 6, 5) as u8,
            present: (test(ar64, 7) && !unusable) as u8,
            avl: test(ar64, 12) as u8,
            l: test(ar64, 13) as u8,
            db: test(ar64, 14) as u8,
            g: test(ar64, 15) as u8,
            unusable: unusable as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_64bit_code() {
        let cs = Attributes { type_: 0xb, s: 1, present: 1, l: 1, g: 1, ..Default::default() };
        assert_eq!(cs.to_ar(), 0xa09b);
        assert_eq!(Attributes::from_ar(0xa09b), cs);
    }

    #[test]
    fn real_mode_and_system_segments() {
        let data = Attributes { type_: 3, s: 1, present: 1, ..Default::default() };
        assert_eq!(data.to_ar(), 0x93);
        let tr = Attributes { type_: 0xb, present: 1, ..Default::default() };
        assert_eq!(tr.to_ar(), 0x8b);
        let dpl3 = Attributes { type_: 3, s: 1, dpl: 3, present: 1, db: 1, ..Default::default() };
        assert_eq!(dpl3.to_ar(), 0x40f3);
    }

    #[test]
    fn unusable() {
        let u = Attributes { type_: 3, s: 1, present: 1, unusable: 1, ..Default::default() };
        assert_eq!(u.to_ar(), AR_UNUSABLE);
        let back = Attributes::from_ar(AR_UNUSABLE | 0x93);
        assert_eq!((back.unusable, back.present), (1, 0));
    }
}
