// SPDX-License-Identifier: GPL-2.0
//! VMCS shadowing for L1 (SDM 25.10 "VMCS types", 25.6.15 "VMCS shadowing bitmap
//! addresses", 32.3 VMREAD/VMWRITE in VMX non-root operation).
//!
//! With the "VMCS shadowing" control set in VMCS01, L1's VMREAD and VMWRITE of a component
//! whose bit is clear in the VMREAD / VMWRITE bitmap do not exit: the CPU reads or writes the
//! shadow VMCS that VMCS01's link pointer names. nvmx keeps VMCS12 (rust/core/src/vmcs12.rs)
//! authoritative and copies the shadowed components between it and the shadow VMCS: VMCS12
//! into the shadow before L1 runs after nvmx changed VMCS12 (VMPTRLD, a nested VM exit, a
//! VMfail's error number), the read/write components back before nvmx acts on VMCS12 (any
//! emulated VMX instruction, VMLAUNCH/VMRESUME first). KVM's vmcs_shadow_fields.h has the
//! same two lists; these are the components an L1 hypervisor touches on every L2 exit.
//!
//! Only components every VMX CPU with VMCS shadowing has are here (the copy would fail on
//! one the CPU lacks). The read-only ones (VM-exit information) are shadowed only for VMREAD,
//! and only on a CPU whose VMWRITE can write them (IA32_VMX_MISC[29]), as nvmx's copy into
//! the shadow needs; L1 is not offered that VMWRITE, so its own exits and fails with error
//! 13 as the SDM says.

use super::field::Field;
use super::field_table as f;
use super::vmcs12::Components;

/// Components L1 reads and writes in the shadow VMCS.
pub const READ_WRITE: &[Field] = &[
    f::GUEST_RIP.field(), f::GUEST_RSP.field(), f::GUEST_RFLAGS.field(), f::GUEST_CR0.field(), f::GUEST_CR3.field(), f::GUEST_CR4.field(),
    f::GUEST_INTERRUPTIBILITY_INFO.field(), f::GUEST_CS_SELECTOR.field(), f::GUEST_CS_AR_BYTES.field(),
    f::GUEST_SS_AR_BYTES.field(), f::GUEST_ES_BASE.field(), f::GUEST_CS_BASE.field(), f::GUEST_SS_BASE.field(), f::GUEST_DS_BASE.field(),
    f::GUEST_FS_BASE.field(), f::GUEST_GS_BASE.field(), f::CR0_READ_SHADOW.field(), f::CR4_READ_SHADOW.field(),
    f::EXCEPTION_BITMAP.field(), f::PIN_BASED_VM_EXEC_CONTROL.field(), f::CPU_BASED_VM_EXEC_CONTROL.field(),
    f::SECONDARY_VM_EXEC_CONTROL.field(), f::VM_EXIT_CONTROLS.field(), f::VM_ENTRY_CONTROLS.field(),
    f::VM_ENTRY_INTR_INFO_FIELD.field(), f::VM_ENTRY_EXCEPTION_ERROR_CODE.field(), f::VM_ENTRY_INSTRUCTION_LEN.field(),
    f::TSC_OFFSET.field(), f::HOST_RSP.field(), f::HOST_RIP.field(), f::HOST_FS_BASE.field(), f::HOST_GS_BASE.field(),
];

/// Components L1 only reads from the shadow VMCS (VM-exit information, SDM 25.9).
pub const READ_ONLY: &[Field] = &[
    f::VM_EXIT_REASON.field(), f::EXIT_QUALIFICATION.field(), f::VM_EXIT_INTR_INFO.field(), f::VM_EXIT_INTR_ERROR_CODE.field(),
    f::IDT_VECTORING_INFO_FIELD.field(), f::IDT_VECTORING_ERROR_CODE.field(), f::VM_EXIT_INSTRUCTION_LEN.field(),
    f::VMX_INSTRUCTION_INFO.field(), f::VM_INSTRUCTION_ERROR.field(), f::GUEST_LINEAR_ADDRESS.field(),
    f::GUEST_PHYSICAL_ADDRESS.field(),
];

/// A shadowed component: its encoding and where VMCS12 keeps it.
#[derive(Clone, Copy, Debug)]
pub struct Shadowed {
    /// The VMCS field encoding (full access).
    pub encoding: u32,
    /// Its index in VMCS12 ([`super::vmcs12::component`]).
    pub component: usize,
}

const fn components<const N: usize>(list: &[Field]) -> [Shadowed; N] {
    let mut out = [Shadowed { encoding: 0, component: 0 }; N];
    let mut i = 0;
    while i < N {
        let Some(component) = list[i].position() else { panic!("a shadowed field VMCS12 lacks") };
        out[i] = Shadowed { encoding: list[i].encoding(), component };
        i += 1;
    }
    out
}

/// [`READ_WRITE`] with VMCS12 positions, resolved at compile time: the copies run on every
/// nested transition.
pub const READ_WRITE_COMPONENTS: [Shadowed; READ_WRITE.len()] = components(READ_WRITE);
/// [`READ_ONLY`] likewise.
pub const READ_ONLY_COMPONENTS: [Shadowed; READ_ONLY.len()] = components(READ_ONLY);

const fn set_of(list: &[Shadowed]) -> Components {
    let mut c = Components::NONE;
    let mut i = 0;
    while i < list.len() {
        c = c.with(list[i].component);
        i += 1;
    }
    c
}

/// [`READ_WRITE`] as a set of VMCS12 components.
pub const READ_WRITE_SET: Components = set_of(&READ_WRITE_COMPONENTS);
/// Every shadowed component, [`READ_WRITE`] and [`READ_ONLY`].
pub const SHADOWED: Components = READ_WRITE_SET.or(&set_of(&READ_ONLY_COMPONENTS));

/// A VMREAD or VMWRITE bitmap is 4 KiB of ones, bit `n` making the access to the component
/// whose encoding bits 14:0 are `n` exit (SDM 25.6.15), except the bits this returns: those
/// of the `shadowed` components (both access types of a 64-bit one). The kernel fills a
/// page with it (no 4 KiB array on its stack).
pub fn clear_bits<'a>(shadowed: &'a [Field]) -> impl Iterator<Item = usize> + 'a {
    shadowed.iter().flat_map(|field| {
        let n = (field.full().encoding() & 0x7fff) as usize;
        let high = matches!(field.width(), super::field::Width::Bits64).then_some(n | 1);
        core::iter::once(n).chain(high)
    })
}

/// The components the VMREAD bitmap clears: every shadowed one, the read-only ones only
/// with `read_only` (the CPU's VMWRITE can write VM-exit information, IA32_VMX_MISC[29]).
pub fn vmread_clear_bits(read_only: bool) -> impl Iterator<Item = usize> {
    clear_bits(READ_WRITE).chain(clear_bits(if read_only { READ_ONLY } else { &[] }))
}

/// The components the VMWRITE bitmap clears: the read/write ones only.
pub fn vmwrite_clear_bits() -> impl Iterator<Item = usize> {
    clear_bits(READ_WRITE)
}

#[cfg(test)]
mod tests {
    use super::super::field::{Field, Kind};
    use super::*;

    fn bitmap(clear: impl Iterator<Item = usize>) -> [u8; 4096] {
        let mut b = [0xffu8; 4096];
        for n in clear {
            b[n / 8] &= !(1 << (n % 8));
        }
        b
    }

    fn vmread_bitmap() -> [u8; 4096] {
        bitmap(vmread_clear_bits(true))
    }

    fn vmwrite_bitmap() -> [u8; 4096] {
        bitmap(vmwrite_clear_bits())
    }

    fn exits(b: &[u8; 4096], field: impl Into<Field>) -> bool {
        let field: Field = field.into();
        let n = (field.encoding() & 0x7fff) as usize;
        b[n / 8] & (1 << (n % 8)) != 0
    }

    #[test]
    fn lists_are_known_distinct_and_read_only_means_exit_information() {
        let all: Vec<Field> = READ_WRITE.iter().chain(READ_ONLY).copied().collect();
        for (i, a) in all.iter().enumerate() {
            assert!(a.is_known(), "{a:?}");
            assert!(!all[i + 1..].contains(a), "{a:?} twice");
        }
        assert!(READ_ONLY.iter().all(|f| matches!(f.kind(), Kind::ExitInfo)));
        assert!(READ_WRITE.iter().all(|f| !matches!(f.kind(), Kind::ExitInfo)));
    }

    #[test]
    fn compiled_positions_match_vmcs12() {
        for (list, comps) in [(READ_WRITE, &READ_WRITE_COMPONENTS[..]), (READ_ONLY, &READ_ONLY_COMPONENTS[..])] {
            assert_eq!(list.len(), comps.len());
            for (f, c) in list.iter().zip(comps) {
                assert_eq!(c.encoding, f.encoding());
                assert_eq!(Some(c.component), super::super::vmcs12::component(*f));
            }
        }
    }

    #[test]
    fn component_sets_are_the_lists() {
        let in_list = |l: &[Field], i: usize| l.iter().any(|f| super::super::vmcs12::component(*f) == Some(i));
        for i in 0..super::super::vmcs12::COMPONENTS {
            assert_eq!(READ_WRITE_SET.contains(i), in_list(READ_WRITE, i), "{i}");
            assert_eq!(SHADOWED.contains(i), in_list(READ_WRITE, i) || in_list(READ_ONLY, i), "{i}");
        }
        assert_eq!(SHADOWED.iter().count(), READ_WRITE.len() + READ_ONLY.len());
    }

    #[test]
    fn bitmaps_clear_exactly_the_shadowed_components() {
        let (r, w) = (vmread_bitmap(), vmwrite_bitmap());
        assert!(!exits(&r, f::GUEST_RIP) && !exits(&w, f::GUEST_RIP));
        assert!(!exits(&r, f::VM_EXIT_REASON) && exits(&w, f::VM_EXIT_REASON));
        // A 64-bit component: both access types.
        assert!(!exits(&r, f::TSC_OFFSET) && !exits(&r, Field(f::TSC_OFFSET.encoding() | 1)));
        assert!(!exits(&w, Field(f::TSC_OFFSET.encoding() | 1)));
        // Everything else exits: the EPT pointer, the link pointer itself, unknown encodings.
        for other in [f::EPT_POINTER.field(), f::VMCS_LINK_POINTER.field(), f::GUEST_ACTIVITY_STATE.field(), Field(0x7ffe)] {
            assert!(exits(&r, other) && exits(&w, other), "{other:?}");
        }
        let cleared = |b: &[u8; 4096]| b.iter().map(|x| x.count_zeros()).sum::<u32>() as usize;
        let highs = |l: &[Field]| l.iter().filter(|f| matches!(f.width(), super::super::field::Width::Bits64)).count();
        assert_eq!(cleared(&w), READ_WRITE.len() + highs(READ_WRITE));
        assert_eq!(cleared(&r), READ_WRITE.len() + READ_ONLY.len() + highs(READ_WRITE) + highs(READ_ONLY));
        // Without IA32_VMX_MISC[29], VM-exit information is read from VMCS12 (VMREAD exits).
        let r = bitmap(vmread_clear_bits(false));
        assert!(exits(&r, f::VM_EXIT_REASON) && !exits(&r, f::GUEST_RIP));
        assert_eq!(cleared(&r), cleared(&w));
    }
}
