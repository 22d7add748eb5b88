// SPDX-License-Identifier: GPL-2.0
//! VMCS12: the VMCS an L1 hypervisor sees (nested VMX).
//!
//! The SDM leaves the format of a VMCS region to the implementation (25.2): only the
//! revision identifier (bytes 0-3) and the VMX-abort indicator (bytes 4-7) are
//! architectural, and software must use VMREAD/VMWRITE for the rest. nvmx uses KVM's
//! layout, struct vmcs12 (rust/core/src/kvm_vmcs12_layout.rs, generated from KVM's
//! source), behind KVM's revision identifier ([`super::nested_caps::VMCS12_REVISION`]):
//! the same bytes are the VMCS12 of `KVM_GET/SET_NESTED_STATE`, and an L1 saved on nvmx
//! finds its VMCS regions readable when restored on kvm_intel and back. The launch state
//! is at offset 8 as in KVM's. The few fields nvmx has and struct vmcs12 lacks
//! ([`NVMX_ONLY`], none of which KVM supports) are kept after it, at [`NVMX_ONLY_OFFSET`]
//! + 8·i, where KVM neither looks nor writes.
//!
//! While a VMCS is current, nvmx keeps it in kernel memory (this struct) and writes it back
//! to L1's region on VMCLEAR, on VMPTRLD of another VMCS and on VMXOFF, as a CPU may cache
//! the current VMCS (SDM 25.11.1: software must not touch a current VMCS's region).
//!
//! The struct also records which components changed, for the two consumers that would
//! otherwise redo work for all of them at every nested switch: the copy into the shadow VMCS
//! (rust/core/src/shadow_vmcs.rs, [`Vmcs12::take_for_shadow`]) and the VM-entry checks of
//! controls and host state (rust/core/src/nested_entry.rs, [`Vmcs12::take_for_checks`]). A
//! write that leaves a component's value as it was is not a change.

use super::field::{Access, Field, FieldValue, TypedField, Width};
use super::controls::{pin, primary, secondary};
use super::field_table::{self as f, ALL_FIELDS};
use super::kvm_vmcs12_layout as kvm;

/// Components VMCS12 holds: every entry of the field table.
pub const COMPONENTS: usize = ALL_FIELDS.len();
/// Offset of the fields struct vmcs12 lacks, past its end.
pub const NVMX_ONLY_OFFSET: usize = 2048;
/// Where each component lives in the region: KVM's offset and width, or the index among
/// the fields only nvmx has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In struct vmcs12: offset, bytes.
    Kvm(u16, u8),
    /// After it: index `i` at [`NVMX_ONLY_OFFSET`] + 8·i.
    NvmxOnly(u16),
}

/// [`Place`] of every component, by component index.
pub const PLACES: [Place; COMPONENTS] = {
    let mut out = [Place::NvmxOnly(0); COMPONENTS];
    let mut extra = 0u16;
    let mut i = 0;
    while i < COMPONENTS {
        let enc = ALL_FIELDS[i].1.encoding();
        let mut j = 0;
        let mut found = None;
        while j < kvm::FIELDS.len() {
            if kvm::FIELDS[j].0 == enc {
                found = Some((kvm::FIELDS[j].1, kvm::FIELDS[j].2));
            }
            j += 1;
        }
        out[i] = match found {
            Some((o, b)) => Place::Kvm(o, b),
            None => {
                extra += 1;
                Place::NvmxOnly(extra - 1)
            }
        };
        i += 1;
    }
    out
};
/// The fields without a place in struct vmcs12 (KVM refuses VMREAD/VMWRITE of them).
pub const NVMX_ONLY: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < COMPONENTS {
        if let Place::NvmxOnly(_) = PLACES[i] {
            n += 1;
        }
        i += 1;
    }
    n
};
/// Bytes of the region nvmx reads and writes; the region is 4 KiB.
pub const REGION_BYTES: usize = NVMX_ONLY_OFFSET + 8 * NVMX_ONLY;
/// Offset of the launch state (a u32) in the region: VMCLEAR of a VMCS that is not current
/// writes it there directly.
pub const LAUNCH_STATE_OFFSET: usize = kvm::LAUNCH_STATE;
const _: () = assert!(kvm::STRUCT_BYTES <= NVMX_ONLY_OFFSET && REGION_BYTES <= 4096);

/// The index of `f`'s component (either access type), if VMCS12 has it.
#[inline(always)]
pub fn component(f: impl Into<Field>) -> Option<usize> {
    let f: Field = f.into();
    f.position()
}

const WORDS: usize = COMPONENTS.div_ceil(64);

/// A set of VMCS12 components ([`component`] indexes), one bit each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Components([u64; WORDS]);

impl Components {
    /// No component.
    pub const NONE: Components = Components([0; WORDS]);
    /// Every component.
    pub const ALL: Components = {
        let mut w = [u64::MAX; WORDS];
        if COMPONENTS % 64 != 0 {
            w[WORDS - 1] = (1 << (COMPONENTS % 64)) - 1;
        }
        Components(w)
    };

    /// This set and component `i` (const: it also builds the constant sets).
    #[inline(always)]
    pub const fn with(mut self, i: usize) -> Components {
        if i < COMPONENTS {
            self.0[i / 64] |= 1 << (i % 64);
        }
        self
    }

    /// Add component `i`.
    #[inline(always)]
    pub fn insert(&mut self, i: usize) {
        *self = self.with(i);
    }

    /// Whether component `i` is in the set.
    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Whether the two sets share a component.
    pub fn intersects(&self, other: &Components) -> bool {
        self.0.iter().zip(other.0.iter()).any(|(a, b)| a & b != 0)
    }

    /// The components in both sets.
    pub fn and(&self, other: &Components) -> Components {
        let mut c = *self;
        for (a, b) in c.0.iter_mut().zip(other.0.iter()) {
            *a &= b;
        }
        c
    }

    /// The components in either set (const: it also builds the constant sets).
    pub const fn or(&self, other: &Components) -> Components {
        let mut c = *self;
        let mut n = 0;
        while n < WORDS {
            c.0[n] |= other.0[n];
            n += 1;
        }
        c
    }

    /// The components, lowest index first.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(n, &w)| {
            let mut left = w;
            core::iter::from_fn(move || {
                (left != 0).then(|| {
                    let bit = left.trailing_zeros() as usize;
                    left &= left - 1;
                    n * 64 + bit
                })
            })
        })
    }
}

/// A VMCS12 in kernel memory.
#[derive(Clone, Debug)]
pub struct Vmcs12 {
    /// Revision identifier as L1 wrote it into the region.
    pub revision: u32,
    /// VMX-abort indicator.
    pub abort: u32,
    /// Launch state (SDM 25.1): set by a successful VMLAUNCH, cleared by VMCLEAR.
    pub launched: bool,
    values: [u64; COMPONENTS],
    /// Changed since the last copy into the shadow VMCS, other than by that copy's inverse.
    for_shadow: Components,
    /// Changed since the last VM-entry checks.
    for_checks: Components,
}

/// The contents only: the change records are bookkeeping.
impl PartialEq for Vmcs12 {
    fn eq(&self, other: &Self) -> bool {
        (self.revision, self.abort, self.launched, self.values) == (other.revision, other.abort, other.launched, other.values)
    }
}

impl Eq for Vmcs12 {}

impl Default for Vmcs12 {
    /// All zero; every component counts as changed (nothing has seen it yet).
    fn default() -> Self {
        Vmcs12 {
            revision: 0,
            abort: 0,
            launched: false,
            values: [0; COMPONENTS],
            for_shadow: Components::ALL,
            for_checks: Components::ALL,
        }
    }
}

impl Vmcs12 {
    /// The value VMREAD returns for `f` (high access: bits 63:32 of the 64-bit component);
    /// `None` if VMCS12 has no such component.
    #[inline(always)]
    pub fn read(&self, f: impl Into<Field>) -> Option<u64> {
        let f = f.into();
        let v = self.values[component(f)?];
        Some(match (f.access(), f.width()) {
            (Access::High, _) => v >> 32,
            (_, Width::Bits16) => v & 0xffff,
            (_, Width::Bits32) => v & 0xffff_ffff,
            _ => v,
        })
    }

    /// VMWRITE of `v` to `f`: the operand is truncated to the component's width (SDM 32.3
    /// "VMWRITE": "if the VMCS field is shorter than the operand, the high bits are
    /// ignored"); a high access writes bits 63:32 only. `None` if there is no such component.
    #[inline(always)]
    pub fn write(&mut self, f: impl Into<Field>, v: u64) -> Option<()> {
        let f = f.into();
        let i = component(f)?;
        let old = self.values[i];
        let new = match (f.access(), f.width()) {
            (Access::High, _) => (old & 0xffff_ffff) | (v << 32),
            (_, Width::Bits16) => v & 0xffff,
            (_, Width::Bits32) => v & 0xffff_ffff,
            _ => v,
        };
        if new != old {
            self.values[i] = new;
            self.for_shadow.insert(i);
            self.for_checks.insert(i);
        }
        Some(())
    }

    /// The components changed since the last call (all of them for a VMCS12 just read from
    /// its region), which the shadow VMCS therefore does not hold yet.
    pub fn take_for_shadow(&mut self) -> Components {
        core::mem::replace(&mut self.for_shadow, Components::NONE)
    }

    /// `c` still has to go to the shadow VMCS (the copy failed).
    pub fn keep_for_shadow(&mut self, c: Components) {
        self.for_shadow = self.for_shadow.or(&c);
    }

    /// The components changed since the last call, which the VM-entry checks have not seen.
    pub fn take_for_checks(&mut self) -> Components {
        core::mem::replace(&mut self.for_checks, Components::NONE)
    }

    /// Component `i` ([`component`]) as stored: the copy to and from a shadow VMCS, whose
    /// VMREAD/VMWRITE truncate as VMCS12's own accessors do.
    #[inline(always)]
    pub fn raw(&self, i: usize) -> u64 {
        self.values[i]
    }

    /// Set component `i` as stored (a value VMREAD returned for it from the shadow VMCS,
    /// which therefore holds it already: a change only for the checks).
    #[inline(always)]
    pub fn set_raw(&mut self, i: usize, v: u64) {
        if let Some(old) = self.values.get_mut(i) {
            if *old != v {
                *old = v;
                self.for_checks.insert(i);
            }
        }
    }

    /// A component from the field table, as its width's type (0 for one VMCS12 does not
    /// hold, which the table's own constants never are).
    #[inline(always)]
    pub fn get<T: FieldValue>(&self, f: TypedField<T>) -> T {
        T::from_operand(self.read(f.field()).unwrap_or(0))
    }

    /// Set a component from nvmx's side (exit information, guest state saved at an exit).
    #[inline(always)]
    pub fn set<T: FieldValue>(&mut self, f: TypedField<T>, v: T) {
        let _ = self.write(f.field(), v.to_operand());
    }

    /// The secondary processor-based controls in effect: the field when the primary
    /// controls activate them, else 0 (SDM 25.6.2).
    pub fn secondary_controls(&self) -> u32 {
        if self.get(f::CPU_BASED_VM_EXEC_CONTROL) & primary::SECONDARY_CONTROLS != 0 {
            self.get(f::SECONDARY_VM_EXEC_CONTROL)
        } else {
            0
        }
    }

    /// The VMCS link pointer when "VMCS shadowing" is on and the pointer is not all ones:
    /// the shadow VMCS that L2's VMREAD/VMWRITE act on (SDM 25.10).
    pub fn shadow_vmcs_link(&self) -> Option<u64> {
        let link = self.get(f::VMCS_LINK_POINTER);
        (self.secondary_controls() & secondary::SHADOW_VMCS != 0 && link != u64::MAX).then_some(link)
    }

    /// The VMX-preemption timer value when the pin control turns the timer on.
    pub fn preemption_timer(&self) -> Option<u32> {
        (self.get(f::PIN_BASED_VM_EXEC_CONTROL) & pin::PREEMPTION_TIMER != 0).then(|| self.get(f::VMX_PREEMPTION_TIMER_VALUE))
    }

    /// Read a VMCS12 from its region as L1's memory holds it (KVM's layout; a region
    /// shorter than [`REGION_BYTES`] reads as zeros beyond its end).
    pub fn from_region(region: &[u8]) -> Self {
        let u32_at = |o: usize| region.get(o..o + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let mut v = Vmcs12 { revision: u32_at(0), abort: u32_at(4), launched: u32_at(LAUNCH_STATE_OFFSET) == 1, ..Vmcs12::default() };
        for (slot, place) in v.values.iter_mut().zip(PLACES) {
            let (o, n) = place_range(place);
            if let Some(b) = region.get(o..o + n) {
                let mut w = [0u8; 8];
                w[..n].copy_from_slice(b);
                *slot = u64::from_le_bytes(w);
            }
        }
        v
    }

    /// Write this VMCS12 into its region (the header and every field's place, within the
    /// first [`REGION_BYTES`] bytes; KVM's padding is left as it was).
    pub fn to_region(&self, region: &mut [u8]) {
        let mut put = |o: usize, b: &[u8]| {
            if let Some(d) = region.get_mut(o..o + b.len()) {
                d.copy_from_slice(b);
            }
        };
        put(0, &self.revision.to_le_bytes());
        put(4, &self.abort.to_le_bytes());
        put(LAUNCH_STATE_OFFSET, &(self.launched as u32).to_le_bytes());
        for (v, place) in self.values.iter().zip(PLACES) {
            let (o, n) = place_range(place);
            put(o, &v.to_le_bytes()[..n]);
        }
    }
}

/// Offset and bytes of a component's place in the region.
const fn place_range(p: Place) -> (usize, usize) {
    match p {
        Place::Kvm(o, b) => (o as usize, b as usize),
        Place::NvmxOnly(i) => (NVMX_ONLY_OFFSET + 8 * i as usize, 8),
    }
}

#[cfg(test)]
mod tests {
    use super::super::field_table as f;
    use super::*;

    #[test]
    fn fits_in_a_4k_region() {
        assert!(REGION_BYTES <= 4096);
    }

    #[test]
    fn kvm_layout_holds_every_field_kvm_has() {
        // Each component's place is as wide as the field (natural width: 8 bytes).
        for (i, (name, fld)) in ALL_FIELDS.iter().enumerate() {
            if let Place::Kvm(o, b) = PLACES[i] {
                assert_eq!(usize::from(b), fld.width().bytes(), "{name}");
                assert!(usize::from(o) + usize::from(b) <= kvm::STRUCT_BYTES, "{name}");
            }
        }
        // KVM's documented offsets for a few fields (struct vmcs12's CHECK_OFFSETs).
        let at = |fld: Field| PLACES[fld.position().unwrap()];
        assert_eq!(at(f::IO_BITMAP_A.field()), Place::Kvm(40, 8));
        assert_eq!(at(f::GUEST_RIP.field()), Place::Kvm(544, 8));
        assert_eq!(at(f::GUEST_ES_SELECTOR.field()), Place::Kvm(964, 2));
        assert_eq!(at(f::PIN_BASED_VM_EXEC_CONTROL.field()), Place::Kvm(744, 4));
        // What only nvmx has: CR3-target values, PLE, tertiary controls and the like.
        assert_eq!(NVMX_ONLY, 13);
        assert!(matches!(at(f::CR3_TARGET_VALUE0.field()), Place::NvmxOnly(_)));
        // No two components share bytes.
        let mut used = [false; 4096];
        for p in PLACES {
            let (o, n) = place_range(p);
            for b in &mut used[o..o + n] {
                assert!(!*b, "overlap at {o}");
                *b = true;
            }
        }
    }

    #[test]
    fn region_round_trip_in_kvm_layout() {
        let mut v = Vmcs12 { revision: kvm::KVM_VMCS12_REVISION, abort: 7, launched: true, ..Vmcs12::default() };
        for (i, (_, fld)) in ALL_FIELDS.iter().enumerate() {
            let _ = v.write(*fld, 0x0101_0101_0101_0101u64.wrapping_mul(i as u64 + 1));
        }
        let mut region = [0u8; 4096];
        v.to_region(&mut region);
        assert_eq!(&region[0..4], &kvm::KVM_VMCS12_REVISION.to_le_bytes());
        assert_eq!(&region[8..12], &1u32.to_le_bytes(), "launch state at KVM's offset 8");
        assert_eq!(Vmcs12::from_region(&region), v);
        // GUEST_RIP where KVM keeps it.
        let rip = v.read(f::GUEST_RIP).unwrap();
        assert_eq!(&region[544..552], &rip.to_le_bytes());
    }

    #[test]
    fn vmwrite_truncates_to_the_component_width() {
        let mut v = Vmcs12::default();
        v.write(f::GUEST_CS_SELECTOR, 0x1234_5678_9abc).unwrap();
        assert_eq!(v.read(f::GUEST_CS_SELECTOR), Some(0x9abc));
        v.write(f::PIN_BASED_VM_EXEC_CONTROL, 0x7f_0000_0016).unwrap();
        assert_eq!(v.read(f::PIN_BASED_VM_EXEC_CONTROL), Some(0x16));
        v.write(f::GUEST_RIP, u64::MAX).unwrap();
        assert_eq!(v.read(f::GUEST_RIP), Some(u64::MAX));
    }

    #[test]
    fn high_access_reads_and_writes_bits_63_32() {
        let mut v = Vmcs12::default();
        v.write(f::TSC_OFFSET, 0x1111_2222_3333_4444).unwrap();
        let high = Field(f::TSC_OFFSET.encoding() | 1);
        assert_eq!(v.read(high), Some(0x1111_2222));
        v.write(high, 0xaaaa_bbbb).unwrap();
        assert_eq!(v.read(f::TSC_OFFSET), Some(0xaaaa_bbbb_3333_4444));
    }

    #[test]
    fn unknown_components_are_refused() {
        let mut v = Vmcs12::default();
        assert_eq!(v.read(Field(0x6c3e)), None);
        assert_eq!(v.write(Field(0x6c3e), 1), None);
    }

    #[test]
    fn changes_are_recorded_once_per_consumer() {
        let mut v = Vmcs12::from_region(&[0u8; 4096]);
        assert_eq!(v.take_for_shadow(), Components::ALL, "a VMCS12 just loaded is all new");
        assert_eq!(v.take_for_checks(), Components::ALL);
        v.set(f::GUEST_RIP, 0);
        assert_eq!(v.take_for_shadow(), Components::NONE, "writing the value it has is no change");
        v.set(f::GUEST_RIP, 0x1000);
        v.write(Field(f::TSC_OFFSET.encoding() | 1), 7).unwrap();
        let rip = component(f::GUEST_RIP).unwrap();
        let tsc = component(f::TSC_OFFSET).unwrap();
        let mut want = [rip, tsc];
        want.sort();
        let got = v.take_for_shadow();
        assert!(got.iter().eq(want.iter().copied()));
        assert!(got.contains(rip) && !got.contains(rip + 1));
        assert_eq!(v.take_for_shadow(), Components::NONE);
        assert_eq!(v.take_for_checks(), got);
        v.keep_for_shadow(got);
        assert_eq!(v.take_for_shadow(), got);
        assert_eq!(Components::ALL.iter().count(), COMPONENTS);
    }

    #[test]
    fn region_round_trip() {
        let mut v = Vmcs12 { revision: 0x6e76_6d78, abort: 0, launched: true, ..Vmcs12::default() };
        v.set(f::GUEST_CR3, 0xabc000);
        v.set(f::VM_EXIT_REASON, 18);
        let mut page = [0u8; 4096];
        v.to_region(&mut page);
        assert_eq!(&page[0..4], &0x6e76_6d78u32.to_le_bytes());
        let back = Vmcs12::from_region(&page);
        assert_eq!(back, v);
    }
}
