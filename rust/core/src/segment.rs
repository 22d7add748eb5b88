// SPDX-License-Identifier: GPL-2.0
//! Segment registers as `struct kvm_segment` has them and as the VMCS stores their access
//! rights (SDM 25.4.1, table 25-2).

use super::bits::bitfield;

/// Bit 16 of the access rights: segment unusable.
pub const AR_UNUSABLE: u32 = 1 << 16;

bitfield! {
    /// A segment's access rights as the VMCS holds them (SDM 25.4.1, table 25-2).
    pub struct AccessRights(u32) {
        /// Segment type.
        type_, with_type: 3:0 as u8;
        /// Descriptor type (S): code or data.
        s, with_s: 4;
        /// Descriptor privilege level; SS's is the CPL.
        dpl, with_dpl: 6:5 as u8;
        /// Present.
        present, with_present: 7;
        /// Available for use by system software.
        avl, with_avl: 12;
        /// 64-bit mode active (CS only).
        long_mode, with_long_mode: 13;
        /// Default operation size (D/B): 32-bit.
        db, with_db: 14;
        /// Granularity.
        g, with_g: 15;
        /// Segment unusable.
        unusable, with_unusable: 16;
    }
}

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
        AccessRights(0)
            .with_type(self.type_)
            .with_s(self.s & 1 != 0)
            .with_dpl(self.dpl)
            .with_present(self.present & 1 != 0)
            .with_avl(self.avl & 1 != 0)
            .with_long_mode(self.l & 1 != 0)
            .with_db(self.db & 1 != 0)
            .with_g(self.g & 1 != 0)
            .0
    }

    /// Decode VMCS access rights. An unusable segment reads back as not present, as KVM
    /// reports it.
    pub const fn from_ar(ar: u32) -> Self {
        let ar = AccessRights(ar);
        Attributes {
            type_: ar.type_(),
            s: ar.s() as u8,
            dpl: ar.dpl(),
            present: (ar.present() && !ar.unusable()) as u8,
            avl: ar.avl() as u8,
            l: ar.long_mode() as u8,
            db: ar.db() as u8,
            g: ar.g() as u8,
            unusable: ar.unusable() as u8,
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
