// SPDX-License-Identifier: GPL-2.0
//! VMCS component encodings (Intel SDM vol. 3C 25.11.2, table 25-21; the fields: app. B).
//!
//! A 32-bit encoding carries the component's access type, index, type and width, so the
//! table in [`super::field_table`] needs only names and encodings: everything else is
//! decoded here.

use core::marker::PhantomData;

use super::bits::{extract, test};
use super::field_table::ALL_FIELDS;

/// The width of a VMCS component (encoding bits 14:13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 16-bit.
    Bits16,
    /// 64-bit (also accessible as its high 32 bits, see [`Access::High`]).
    Bits64,
    /// 32-bit.
    Bits32,
    /// Natural width: 64 bits on processors that support Intel 64.
    Natural,
}

impl Width {
    /// Size in bytes on a 64-bit processor.
    pub const fn bytes(self) -> usize {
        match self {
            Width::Bits16 => 2,
            Width::Bits32 => 4,
            Width::Bits64 | Width::Natural => 8,
        }
    }
}

/// The type of a VMCS component (encoding bits 11:10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Control fields.
    Control,
    /// VM-exit information fields: read-only unless IA32_VMX_MISC bit 29 is set.
    ExitInfo,
    /// Guest-state fields.
    GuestState,
    /// Host-state fields.
    HostState,
}

/// Access type (encoding bit 0): the whole field or the high 32 bits of a 64-bit field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Full access.
    Full,
    /// High 32 bits of a 64-bit field; only valid with [`Width::Bits64`].
    High,
}

/// The Rust type a component of some width reads and writes as. VMREAD of a 16- or 32-bit
/// component zero-extends it and VMWRITE of one ignores the bits above its width (SDM 31.3,
/// VMREAD/VMWRITE), so the conversions to and from the 64-bit operand are exact.
pub trait FieldValue: Copy {
    /// The component width this type stands for, in bytes.
    const BYTES: usize;
    /// The value of a VMREAD destination operand.
    fn from_operand(operand: u64) -> Self;
    /// The VMWRITE source operand for this value.
    fn to_operand(self) -> u64;
}

macro_rules! field_value {
    ($($ty:ty),*) => {$(
        impl FieldValue for $ty {
            const BYTES: usize = core::mem::size_of::<$ty>();
            #[inline(always)]
            fn from_operand(operand: u64) -> Self {
                operand as $ty
            }
            #[inline(always)]
            fn to_operand(self) -> u64 {
                self as u64
            }
        }
    )*};
}
field_value!(u16, u32, u64);

/// A component of the field table, typed by its width: a 32-bit field reads as `u32`.
/// Natural-width fields are `u64` (64 bits on processors that support Intel 64). The
/// generated table makes every constant with [`TypedField::new`], which refuses at compile
/// time a type that does not match the width bits of the encoding.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TypedField<T>(Field, PhantomData<T>);

impl<T> Clone for TypedField<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for TypedField<T> {}

impl<T: FieldValue> TypedField<T> {
    /// The component with full-access `encoding`, whose width must be `T`'s.
    pub const fn new(encoding: u32) -> Self {
        let field = Field(encoding);
        assert!(field.width().bytes() == T::BYTES, "a field's type differs from its width");
        TypedField(field, PhantomData)
    }
}

impl<T> TypedField<T> {
    /// The untyped component, for tables and for encodings that come from a guest.
    #[inline(always)]
    pub const fn field(self) -> Field {
        self.0
    }

    /// The raw encoding.
    #[inline(always)]
    pub const fn encoding(self) -> u32 {
        self.0 .0
    }
}

impl<T> From<TypedField<T>> for Field {
    #[inline(always)]
    fn from(f: TypedField<T>) -> Field {
        f.0
    }
}

impl<T> PartialEq<Field> for TypedField<T> {
    fn eq(&self, other: &Field) -> bool {
        self.0 == *other
    }
}

impl<T> PartialEq<TypedField<T>> for Field {
    fn eq(&self, other: &TypedField<T>) -> bool {
        *self == other.0
    }
}

/// A VMCS component encoding as used by VMREAD and VMWRITE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Field(pub u32);

impl Field {
    /// Decode an encoding taken from a VMREAD/VMWRITE register operand. Operands are 64 bits
    /// wide in 64-bit mode; the SDM (25.11.2) makes bits 63:15 (with bit 12) reserved, so an
    /// operand with any of them set names no field (VMfailValid 12, "unsupported component").
    pub const fn from_operand(operand: u64) -> Option<Field> {
        if extract(operand, 63, 15) != 0 || test(operand, 12) {
            return None;
        }
        let field = Field(operand as u32);
        // Bit 0 = 1 (high access) exists only for 64-bit fields.
        if matches!(field.access(), Access::High) && !matches!(field.width(), Width::Bits64) {
            return None;
        }
        Some(field)
    }

    /// The raw encoding.
    pub const fn encoding(self) -> u32 {
        self.0
    }

    /// Access type (bit 0).
    #[inline(always)]
    pub const fn access(self) -> Access {
        if test(self.0 as u64, 0) {
            Access::High
        } else {
            Access::Full
        }
    }

    /// Index (bits 9:1).
    #[inline(always)]
    pub const fn index(self) -> u32 {
        extract(self.0 as u64, 9, 1) as u32
    }

    /// Type (bits 11:10).
    #[inline(always)]
    pub const fn kind(self) -> Kind {
        match extract(self.0 as u64, 11, 10) {
            0 => Kind::Control,
            1 => Kind::ExitInfo,
            2 => Kind::GuestState,
            _ => Kind::HostState,
        }
    }

    /// Width (bits 14:13).
    #[inline(always)]
    pub const fn width(self) -> Width {
        match extract(self.0 as u64, 14, 13) {
            0 => Width::Bits16,
            1 => Width::Bits64,
            2 => Width::Bits32,
            _ => Width::Natural,
        }
    }

    /// The full-access encoding of this component (clears the access bit).
    #[inline(always)]
    pub const fn full(self) -> Field {
        Field(self.0 & !1)
    }

    /// Whether the table knows this component (in either access type).
    pub fn is_known(self) -> bool {
        self.position().is_some()
    }

    /// The component's name from the field table, if it has one.
    pub fn name(self) -> Option<&'static str> {
        self.position().map(|i| ALL_FIELDS[i].0)
    }

    /// The component's position in [`ALL_FIELDS`] (either access type), in constant time:
    /// every VMREAD/VMWRITE L1 executes and every field a nested entry or exit copies looks
    /// its component up, so this is on the nested fast path.
    #[inline(always)]
    pub const fn position(self) -> Option<usize> {
        let full = self.full();
        let Some(s) = slot(full) else { return None };
        let i = POSITION[s];
        if i != NO_POSITION && ALL_FIELDS[i as usize].1 .0 == full.0 {
            Some(i as usize)
        } else {
            None
        }
    }
}

/// [`POSITION`] is indexed by width, type and index (bits 14:13, 11:10, 9:1); the SDM's
/// indexes stay below 64 (checked when the table is built).
const INDEX_LIMIT: u32 = 64;
const NO_POSITION: u8 = u8::MAX;

#[inline(always)]
const fn slot(full: Field) -> Option<usize> {
    let index = full.index();
    if index >= INDEX_LIMIT {
        return None;
    }
    Some(((extract(full.0 as u64, 14, 13) << 2 | extract(full.0 as u64, 11, 10)) as usize) * INDEX_LIMIT as usize
        + index as usize)
}

/// Component position by [`slot`], built at compile time from the field table.
const POSITION: [u8; 16 * INDEX_LIMIT as usize] = {
    let mut t = [NO_POSITION; 16 * INDEX_LIMIT as usize];
    assert!(ALL_FIELDS.len() < NO_POSITION as usize);
    let mut i = 0;
    while i < ALL_FIELDS.len() {
        let f = ALL_FIELDS[i].1;
        let Some(s) = slot(f) else { panic!("a VMCS field index beyond the lookup table") };
        assert!(t[s] == NO_POSITION, "two fields in one lookup slot");
        t[s] = i as u8;
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::super::field_table::*;
    use super::*;

    /// The constant-time lookup finds every component at its own position, in both access
    /// types, and nothing for encodings that share a slot but name no component.
    #[test]
    fn position_lookup_matches_the_table() {
        for (i, &(name, f)) in ALL_FIELDS.iter().enumerate() {
            assert_eq!(f.position(), Some(i), "{name}");
            assert_eq!(f.name(), Some(name));
            if matches!(f.width(), Width::Bits64) {
                assert_eq!(Field(f.0 | 1).position(), Some(i), "{name} high");
            }
            // Reserved bit 12 and bits above 14 alias the slot: not the component.
            assert_eq!(Field(f.0 | 1 << 12).position(), None);
            assert_eq!(Field(f.0 | 1 << 15).position(), None);
        }
        let known = ALL_FIELDS.len();
        let found = (0..0x8000u32).filter(|&e| e & 1 == 0 && Field(e).position().is_some()).count();
        assert_eq!(found, known);
        assert_eq!(Field(0x2000 | 63 << 1).position(), None);
        assert_eq!(Field(0x2000 | 64 << 1).position(), None);
    }

    /// Spot checks against SDM vol. 3D appendix B, one per table (B.1.1 ... B.4.4).
    #[test]
    fn sdm_appendix_b_examples() {
        let cases: &[(Field, u32, Width, Kind)] = &[
            (VIRTUAL_PROCESSOR_ID.field(), 0x0000, Width::Bits16, Kind::Control), // B.1.1
            (GUEST_ES_SELECTOR.field(), 0x0800, Width::Bits16, Kind::GuestState), // B.1.2
            (HOST_ES_SELECTOR.field(), 0x0c00, Width::Bits16, Kind::HostState),   // B.1.3
            (IO_BITMAP_A.field(), 0x2000, Width::Bits64, Kind::Control),          // B.2.1
            (GUEST_PHYSICAL_ADDRESS.field(), 0x2400, Width::Bits64, Kind::ExitInfo), // B.2.2
            (VMCS_LINK_POINTER.field(), 0x2800, Width::Bits64, Kind::GuestState), // B.2.3
            (HOST_IA32_PAT.field(), 0x2c00, Width::Bits64, Kind::HostState),      // B.2.4
            (PIN_BASED_VM_EXEC_CONTROL.field(), 0x4000, Width::Bits32, Kind::Control), // B.3.1
            (VM_INSTRUCTION_ERROR.field(), 0x4400, Width::Bits32, Kind::ExitInfo), // B.3.2
            (GUEST_ES_LIMIT.field(), 0x4800, Width::Bits32, Kind::GuestState),    // B.3.3
            (HOST_IA32_SYSENTER_CS.field(), 0x4c00, Width::Bits32, Kind::HostState), // B.3.4
            (CR0_GUEST_HOST_MASK.field(), 0x6000, Width::Natural, Kind::Control), // B.4.1
            (EXIT_QUALIFICATION.field(), 0x6400, Width::Natural, Kind::ExitInfo), // B.4.2
            (GUEST_CR0.field(), 0x6800, Width::Natural, Kind::GuestState),        // B.4.3
            (HOST_CR0.field(), 0x6c00, Width::Natural, Kind::HostState),          // B.4.4
            (HOST_RIP.field(), 0x6c16, Width::Natural, Kind::HostState),
            (VM_EXIT_REASON.field(), 0x4402, Width::Bits32, Kind::ExitInfo),
            (CPU_BASED_VM_EXEC_CONTROL.field(), 0x4002, Width::Bits32, Kind::Control),
            (SECONDARY_VM_EXEC_CONTROL.field(), 0x401e, Width::Bits32, Kind::Control),
            (EPT_POINTER.field(), 0x201a, Width::Bits64, Kind::Control),
        ];
        for &(f, enc, w, k) in cases {
            assert_eq!(f.encoding(), enc, "{:?}", f.name());
            assert_eq!(f.width(), w, "{:?}", f.name());
            assert_eq!(f.kind(), k, "{:?}", f.name());
            assert_eq!(f.access(), Access::Full);
        }
        assert_eq!(VM_INSTRUCTION_ERROR.field().index(), 0);
        assert_eq!(VM_EXIT_REASON.field().index(), 1);
        assert_eq!(HOST_RIP.field().index(), 11);
    }

    /// The names in the table agree with what their encodings say (the kernel's naming
    /// convention: GUEST_/HOST_ prefixes for state, exit information in the 0x04xx/0x24xx/
    /// 0x44xx/0x64xx ranges).
    #[test]
    fn every_table_entry_decodes_consistently() {
        for &(name, f) in ALL_FIELDS {
            assert_eq!(f.access(), Access::Full, "{name}: table lists full encodings only");
            assert_eq!(Field::from_operand(f.encoding() as u64), Some(f), "{name}");
            match f.kind() {
                // The SDM lists these two among the guest-state fields (B.2.3, B.3.3).
                Kind::GuestState => assert!(
                    name.starts_with("GUEST_")
                        || name == "VMCS_LINK_POINTER"
                        || name == "VMX_PREEMPTION_TIMER_VALUE",
                    "{name}"
                ),
                Kind::HostState => assert!(name.starts_with("HOST_"), "{name}"),
                Kind::Control | Kind::ExitInfo => {
                    assert!(!name.starts_with("HOST_"), "{name}");
                }
            }
            if f.width() == Width::Bits64 {
                let high = Field(f.encoding() | 1);
                assert_eq!(Field::from_operand(high.encoding() as u64), Some(high), "{name}_HIGH");
                assert_eq!(high.name(), Some(name));
            }
        }
    }

    #[test]
    fn table_has_no_duplicates() {
        for (i, &(a, fa)) in ALL_FIELDS.iter().enumerate() {
            for &(b, fb) in &ALL_FIELDS[i + 1..] {
                assert_ne!(fa, fb, "{a} and {b} share an encoding");
                assert_ne!(a, b);
            }
        }
        assert!(ALL_FIELDS.len() > 150, "the whole SDM appendix B, not a sample");
    }

    #[test]
    fn invalid_operands() {
        // Bits 63:15 and 12 are reserved: no such component (VMfailValid 12).
        assert_eq!(Field::from_operand(1 << 15), None);
        assert_eq!(Field::from_operand(1 << 32 | 0x6c16), None);
        assert_eq!(Field::from_operand(0x1000), None);
        // High access to a non-64-bit field is not an encoding either.
        assert_eq!(Field::from_operand(0x0801), None, "GUEST_ES_SELECTOR is 16-bit");
        assert_eq!(Field::from_operand(0x4001), None);
        assert_eq!(Field::from_operand(0x6c17), None);
        // High access to a 64-bit field is.
        assert_eq!(Field::from_operand(0x2001), Some(Field(0x2001)));
        // A well-formed encoding the table does not know is decodable but unknown.
        let f = Field::from_operand(0x0c3e).unwrap();
        assert!(!f.is_known());
        assert_eq!(f.name(), None);
    }

    /// Every constant of the table has the type of its width (`TypedField::new` refuses any
    /// other at compile time), and a VMCS reads and writes it as that type.
    #[test]
    fn table_constants_are_typed_by_width() {
        let w16: TypedField<u16> = GUEST_CS_SELECTOR;
        let w32: TypedField<u32> = VM_EXIT_REASON;
        let w64: TypedField<u64> = EPT_POINTER;
        let nat: TypedField<u64> = GUEST_RIP;
        assert_eq!((w16.field().width(), w32.field().width()), (Width::Bits16, Width::Bits32));
        assert_eq!((w64.field().width(), nat.field().width()), (Width::Bits64, Width::Natural));
        assert_eq!(u32::from_operand(0x1234_5678_9abc_def0), 0x9abc_def0);
        assert_eq!(u16::from_operand(0x1234_5678_9abc_def0), 0xdef0);
        assert_eq!(0xffff_ffffu32.to_operand(), 0xffff_ffff);
        let mut v = super::super::vmcs12::Vmcs12::default();
        v.write(VM_EXIT_REASON, u64::MAX).unwrap();
        assert_eq!(v.get(VM_EXIT_REASON), u32::MAX);
        v.set(GUEST_CS_SELECTOR, 0x1b);
        assert_eq!(v.read(GUEST_CS_SELECTOR), Some(0x1b));
        assert!(VM_EXIT_REASON == Field(0x4402) && Field(0x4402) == VM_EXIT_REASON);
    }

    #[test]
    fn widths_in_bytes() {
        assert_eq!(GUEST_CS_SELECTOR.field().width().bytes(), 2);
        assert_eq!(GUEST_CS_LIMIT.field().width().bytes(), 4);
        assert_eq!(EPT_POINTER.field().width().bytes(), 8);
        assert_eq!(GUEST_RIP.field().width().bytes(), 8);
    }
}
