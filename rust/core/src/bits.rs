// SPDX-License-Identifier: GPL-2.0
//! Bit-field extraction: the one place that shifts and masks, so that register types
//! name their fields by bit range instead of open-coding shifts.

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
    }
}
