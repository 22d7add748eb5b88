// SPDX-License-Identifier: GPL-2.0
//! Bit-field extraction: the one place that shifts and masks, so that register types
//! name their fields by bit range instead of open-coding shifts. [`bitfield!`] declares such
//! a type from its SDM layout: a getter and a `with_` setter per field.

/// Bits `hi..=lo` of `value`, shifted down to bit 0.
#[inline]
pub const fn extract(value: u64, hi: u32, lo: u32) -> u64 {
    let width = hi - lo + 1;
    let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
    (value >> lo) & mask
}

/// Whether bit `bit` of `value` is set.
#[inline]
pub const fn test(value: u64, bit: u32) -> bool {
    extract(value, bit, bit) != 0
}

/// A mask with bit `bit` set.
#[inline]
pub const fn bit(bit: u32) -> u64 {
    1u64 << bit
}

/// `value` with bits `hi..=lo` replaced by `field` (cut to the width).
#[inline]
pub const fn insert(value: u64, hi: u32, lo: u32, field: u64) -> u64 {
    let width = hi - lo + 1;
    let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
    (value & !(mask << lo)) | ((field & mask) << lo)
}

/// A register or VMCS field of bit fields, declared from its layout:
///
/// ```text
/// bitfield! {
///     /// VM-entry interruption information (SDM table 25-17).
///     pub struct InterruptionInfo(u32) {
///         /// Vector of the interrupt or exception.
///         vector, with_vector: 7:0 as u8;
///         /// Valid.
///         valid, with_valid: 31;
///     }
/// }
/// ```
///
/// A field `hi:lo as T` gets `const fn get(self) -> T` and `const fn with(self, T) -> Self`
/// (the value cut to the field's width); a single bit gets the same with `bool`. The
/// arithmetic is written out here (not calls to [`extract`]/[`insert`]) so that the macro
/// means the same in the core crate and in the module, whatever path leads to this file.
macro_rules! bitfield {
    ($(#[$m:meta])* $vis:vis struct $name:ident($ty:ty) { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        $vis struct $name(pub $ty);

        impl $name {
            bitfield!(@fields $ty; $($body)*);
        }
    };
    (@fields $ty:ty;) => {};
    (@fields $ty:ty; $(#[$fm:meta])* $get:ident, $set:ident: $bit:literal; $($rest:tt)*) => {
        $(#[$fm])*
        #[inline]
        pub const fn $get(self) -> bool {
            (self.0 as u64 >> $bit) & 1 != 0
        }
        #[doc = concat!("This value with `", stringify!($get), "` set to `v`.")]
        #[inline]
        pub const fn $set(self, v: bool) -> Self {
            Self(((self.0 as u64 & !(1u64 << $bit)) | ((v as u64) << $bit)) as $ty)
        }
        bitfield!(@fields $ty; $($rest)*);
    };
    (@fields $ty:ty; $(#[$fm:meta])* $get:ident, $set:ident: $hi:literal : $lo:literal as $out:ty; $($rest:tt)*) => {
        $(#[$fm])*
        #[inline]
        pub const fn $get(self) -> $out {
            ((self.0 as u64 >> $lo) & (u64::MAX >> (63 - ($hi - $lo)))) as $out
        }
        #[doc = concat!("This value with `", stringify!($get), "` set to `v` (cut to the field).")]
        #[inline]
        pub const fn $set(self, v: $out) -> Self {
            let mask = u64::MAX >> (63 - ($hi - $lo));
            Self(((self.0 as u64 & !(mask << $lo)) | ((v as u64 & mask) << $lo)) as $ty)
        }
        bitfield!(@fields $ty; $($rest)*);
    };
}
pub(crate) use bitfield;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_ranges() {
        assert_eq!(extract(0xdead_beef, 15, 0), 0xbeef);
        assert_eq!(extract(0xdead_beef, 31, 16), 0xdead);
        assert_eq!(extract(u64::MAX, 63, 0), u64::MAX);
        assert_eq!(extract(1 << 63, 63, 63), 1);
        assert!(test(0b100, 2));
        assert!(!test(0b100, 1));
        assert_eq!(bit(5), 32);
        assert_eq!(insert(0xffff, 7, 4, 0x1a), 0xffaf);
        assert_eq!(insert(0, 63, 0, u64::MAX), u64::MAX);
    }

    bitfield! {
        /// A test layout.
        struct Sample(u32) {
            /// Bits 7:0.
            low, with_low: 7:0 as u8;
            /// Bits 10:8.
            kind, with_kind: 10:8 as u8;
            /// Bit 31.
            top, with_top: 31;
        }
    }

    #[test]
    fn bitfield_accessors() {
        let s = Sample::default().with_low(0xab).with_kind(3).with_top(true);
        assert_eq!(s.0, 0x8000_03ab);
        assert_eq!((s.low(), s.kind(), s.top()), (0xab, 3, true));
        // A value wider than the field is cut to it; other fields stay.
        assert_eq!(s.with_kind(0xf).0, 0x8000_07ab);
        assert_eq!(s.with_top(false).0, 0x3ab);
    }
}
