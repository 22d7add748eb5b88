// SPDX-License-Identifier: GPL-2.0
//! The guest's extended processor state (SDM vol. 1, ch. 13): which XSAVE-managed state
//! components a guest is offered, XCR0's rules (XSETBV, `KVM_SET_XCRS`), the sizes CPUID
//! leaf 0DH reports, and the vCPU's state in the standard (uncompacted) XSAVE format of
//! `KVM_GET_XSAVE`/`KVM_SET_XSAVE`.
//!
//! A vCPU's state is kept in memory in the host CPU's standard format (SDM vol. 1, 13.4:
//! the 512-byte legacy region, the 64-byte header whose XSTATE_BV says which components
//! are not in their initial state, then each component at the offset CPUID.(0DH,i).EBX
//! gives) — the layout `struct kvm_xsave` uses — and the module moves it with XRSTOR/XSAVE
//! around each guest stretch (rust/run.rs). nvmx switches the user components x87, SSE, AVX
//! and AVX-512 ([`SWITCHED`]); not the supervisor ones (no XSAVES for guests), not PKRU
//! (no PKU for guests), MPX or AMX. A host without XSAVE switches the legacy region with
//! FXSAVE/FXRSTOR and offers guests no XSAVE.
//!
//! Linux's rules for a buffer from userspace apply as KVM applies them
//! (arch/x86/kernel/fpu/xstate.c, copy_uabi_to_xstate and __copy_xstate_to_uabi_buf): no
//! component the host cannot switch, the uncompacted format, zero reserved header bytes,
//! an MXCSR without reserved bits.

/// Bytes of `struct kvm_xsave` (and of a vCPU's state area: every component nvmx switches
/// fits, [`XsaveHost::probe`]).
pub const KVM_XSAVE_BYTES: usize = 4096;
/// Bytes of the legacy region (the FXSAVE image).
pub const LEGACY_BYTES: usize = 512;
/// XSTATE_BV/XCR0 bit 0: x87 state.
pub const XFEATURE_FP: u64 = 1;
/// Bit 1: SSE state (XMM registers and MXCSR).
pub const XFEATURE_SSE: u64 = 1 << 1;
/// Bit 2: AVX state (upper halves of YMM0-15).
pub const XFEATURE_YMM: u64 = 1 << 2;
/// Bits 3 and 4: MPX (BNDREGS, BNDCSR).
pub const XFEATURE_BNDREGS: u64 = 1 << 3;
/// See [`XFEATURE_BNDREGS`].
pub const XFEATURE_BNDCSR: u64 = 1 << 4;
/// Bits 5-7: AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM), enabled together (SDM vol. 1, 13.3).
pub const XFEATURE_AVX512: u64 = 0b111 << 5;
/// Bits 17 and 18: AMX (TILECFG, TILEDATA), enabled together.
pub const XFEATURE_XTILE: u64 = 0b11 << 17;
/// x87 and SSE: what FXSAVE holds, in every vCPU whatever its CPUID.
pub const XFEATURE_FPSSE: u64 = XFEATURE_FP | XFEATURE_SSE;
/// The components nvmx can switch between guest and host.
pub const SWITCHED: u64 = XFEATURE_FPSSE | XFEATURE_YMM | XFEATURE_AVX512;
/// XCR0 at RESET (SDM vol. 1, 13.3); INIT leaves it alone (as on KVM).
pub const XCR0_RESET: u64 = XFEATURE_FP;
/// Components below this index live in the legacy region and the header.
const FIRST_EXTENDED: u32 = 2;
/// Highest component index nvmx switches, plus one.
const COMPONENTS: usize = 8;

/// Legacy-region layout (SDM vol. 1, table 10-2).
const MXCSR: usize = 24;
const MXCSR_MASK: usize = 28;
const ST_SPACE: usize = 32;
const XMM_SPACE: usize = 160;
const XMM_END: usize = 416;
/// XSAVE header: XSTATE_BV, XCOMP_BV, then reserved bytes up to 64.
pub const HEADER: usize = 512;
const HEADER_END: usize = 576;
/// FCW after FNINIT / in the x87 initial state.
const FCW_INIT: u16 = 0x037f;
/// MXCSR after RESET (SDM vol. 3A, table 10-1).
pub const MXCSR_RESET: u32 = 0x1f80;

/// Where a state component lives in the standard format (CPUID.(0DH,i)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Component {
    /// EBX: offset from the start of the area.
    pub offset: u32,
    /// EAX: size in bytes.
    pub size: u32,
    /// ECX bit 1: 64-byte aligned in the compacted format.
    pub align64: bool,
}

/// What the host can give guests: set at module load from its CPUID and XCR0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XsaveHost {
    /// The host uses XSAVE (CR4.OSXSAVE): state moves with XRSTOR/XSAVE, guests may be
    /// offered XSAVE. Without it, FXRSTOR/FXSAVE and x87/SSE only.
    pub enabled: bool,
    /// The host's XCR0, put back after every guest stretch.
    pub host_xcr0: u64,
    /// XCR0 bits a guest may be given: [`SWITCHED`] ∩ the host's XCR0, consistent
    /// (AVX-512 only with AVX). Always has x87 and SSE.
    pub supported: u64,
    /// Component layout for indices below [`COMPONENTS`] (0 and 1 are the legacy region).
    pub components: [Component; COMPONENTS],
    /// CPUID.(0DH,1):EAX bits offered: XSAVEOPT, XSAVEC, XGETBV with ECX = 1.
    pub leaf_d1_eax: u32,
}

/// CPUID.(0DH,1):EAX: XSAVEOPT (0), XSAVEC (1), XGETBV1 (2). XSAVES (3) needs IA32_XSS and
/// the "enable XSAVES/XRSTORS" control, XFD (4) AMX: neither is offered.
pub const LEAF_D1_EAX_OFFERED: u32 = 0b111;
/// XSAVEC in CPUID.(0DH,1):EAX.
pub const LEAF_D1_XSAVEC: u32 = 1 << 1;
/// XSAVES in CPUID.(0DH,1):EAX.
pub const LEAF_D1_XSAVES: u32 = 1 << 3;

impl XsaveHost {
    /// A host without XSAVE: the legacy region only.
    pub const fn legacy() -> Self {
        Self { enabled: false, host_xcr0: 0, supported: XFEATURE_FPSSE, components: [Component { offset: 0, size: 0, align64: false }; COMPONENTS], leaf_d1_eax: 0 }
    }

    /// From the host: `enabled` is CR4.OSXSAVE, `host_xcr0` XGETBV(0), `cpuid` the host's
    /// CPUID. A component is dropped if it would not fit [`KVM_XSAVE_BYTES`] or lacks a
    /// component it depends on.
    pub fn probe(enabled: bool, host_xcr0: u64, cpuid: &mut dyn FnMut(u32, u32) -> [u32; 4]) -> Self {
        if !enabled || cpuid(0, 0)[0] < 0xd {
            return Self::legacy();
        }
        let mut h = Self::legacy();
        h.enabled = true;
        h.host_xcr0 = host_xcr0;
        let mut supported = (host_xcr0 & SWITCHED) | XFEATURE_FPSSE;
        for i in FIRST_EXTENDED..COMPONENTS as u32 {
            let [eax, ebx, ecx, _] = cpuid(0xd, i);
            let c = Component { offset: ebx, size: eax, align64: ecx & 2 != 0 };
            let fits = (c.offset as u64).checked_add(c.size as u64).is_some_and(|e| e <= KVM_XSAVE_BYTES as u64)
                && c.offset as usize >= HEADER_END && c.size != 0;
            if !fits {
                supported &= !(1 << i);
            }
            h.components[i as usize] = c;
        }
        if supported & XFEATURE_YMM == 0 || supported & XFEATURE_AVX512 != XFEATURE_AVX512 {
            supported &= !XFEATURE_AVX512;
        }
        h.supported = supported;
        h.leaf_d1_eax = cpuid(0xd, 1)[0] & LEAF_D1_EAX_OFFERED;
        h
    }

    /// Bytes of the XSAVE area for the components in `xcr0` (KVM's xstate_required_size):
    /// the legacy region and header, then up to the end of the last component — in the
    /// standard format at the CPU's offsets, in the compacted one packed in index order.
    pub fn required_size(&self, xcr0: u64, compacted: bool) -> u32 {
        let mut end = HEADER_END as u32;
        for i in FIRST_EXTENDED as usize..COMPONENTS {
            if xcr0 & self.supported & (1 << i) == 0 {
                continue;
            }
            let c = self.components[i];
            let offset = if compacted { if c.align64 { end.next_multiple_of(64) } else { end } } else { c.offset };
            end = end.max(offset.saturating_add(c.size));
        }
        end
    }

    /// The XCR0 bits a guest with this CPUID.(0DH,0) may set (KVM's guest_supported_xcr0):
    /// what the VMM offers there and the host can switch.
    pub fn guest_supported(&self, leaf_d0: [u32; 4]) -> u64 {
        (u64::from(leaf_d0[0]) | u64::from(leaf_d0[3]) << 32) & self.supported
    }

    fn component_range(&self, i: usize) -> core::ops::Range<usize> {
        let c = self.components[i];
        c.offset as usize..(c.offset as usize + c.size as usize)
    }

    /// `KVM_GET_XSAVE`: the vCPU's `area` as `struct kvm_xsave` (`out`): the components in
    /// both XSTATE_BV and `user` (the guest's supported XCR0 with x87 and SSE) from the area,
    /// the others in their initial state; the header's other words and the legacy region's
    /// bytes 416-511 zero (Linux puts its signal-frame software bytes there; they mean
    /// nothing to KVM_SET_XSAVE).
    pub fn write_xsave(&self, area: &[u8; KVM_XSAVE_BYTES], user: u64, out: &mut [u8; KVM_XSAVE_BYTES]) {
        out.fill(0);
        let xfeatures = u64_at(area, HEADER) & (user | XFEATURE_FPSSE) & self.supported;
        if xfeatures & XFEATURE_FP != 0 {
            out[..MXCSR].copy_from_slice(&area[..MXCSR]);
            out[ST_SPACE..XMM_SPACE].copy_from_slice(&area[ST_SPACE..XMM_SPACE]);
        } else {
            out[..2].copy_from_slice(&FCW_INIT.to_le_bytes());
        }
        if xfeatures & (XFEATURE_SSE | XFEATURE_YMM | XFEATURE_FP) != 0 {
            out[MXCSR..ST_SPACE].copy_from_slice(&area[MXCSR..ST_SPACE]);
        } else {
            out[MXCSR..MXCSR_MASK].copy_from_slice(&MXCSR_RESET.to_le_bytes());
        }
        if xfeatures & XFEATURE_SSE != 0 {
            out[XMM_SPACE..XMM_END].copy_from_slice(&area[XMM_SPACE..XMM_END]);
        }
        out[HEADER..HEADER + 8].copy_from_slice(&xfeatures.to_le_bytes());
        for i in FIRST_EXTENDED as usize..COMPONENTS {
            if xfeatures & (1 << i) != 0 {
                let r = self.component_range(i);
                out[r.clone()].copy_from_slice(&area[r]);
            }
        }
    }

    /// `KVM_SET_XSAVE`: check `buf` (a `struct kvm_xsave`) and only then put it into `area`.
    /// The x87 and SSE components are written out in the legacy region — from the buffer,
    /// or in their initial state if XSTATE_BV leaves them out (SDM vol. 1, 13.6: FCW 037FH
    /// and the rest 0; the XMM registers 0) — and marked present, so that FXRSTOR and
    /// KVM_GET_FPU see them too; MXCSR comes from the buffer when x87, SSE or AVX is in it
    /// (Linux's rule). An extended component is copied if XSTATE_BV has it and left for
    /// XRSTOR to initialize if not. `mxcsr_mask` is the host's MXCSR_MASK.
    pub fn read_xsave(&self, buf: &[u8; KVM_XSAVE_BYTES], area: &mut [u8; KVM_XSAVE_BYTES], mxcsr_mask: u32) -> Result<(), XsaveError> {
        let xstate_bv = u64_at(buf, HEADER);
        if xstate_bv & !self.supported != 0 {
            return Err(XsaveError::UnknownComponent);
        }
        if u64_at(buf, HEADER + 8) != 0 {
            return Err(XsaveError::Compacted);
        }
        if buf[HEADER + 16..HEADER_END].iter().any(|&b| b != 0) {
            return Err(XsaveError::ReservedHeader);
        }
        let mxcsr = u32::from_le_bytes([buf[MXCSR], buf[MXCSR + 1], buf[MXCSR + 2], buf[MXCSR + 3]]);
        let takes_mxcsr = xstate_bv & (XFEATURE_FP | XFEATURE_SSE | XFEATURE_YMM) != 0;
        if takes_mxcsr && mxcsr & !mxcsr_mask != 0 {
            return Err(XsaveError::ReservedMxcsr);
        }
        if takes_mxcsr {
            area[MXCSR..MXCSR_MASK].copy_from_slice(&mxcsr.to_le_bytes());
        }
        if xstate_bv & XFEATURE_SSE != 0 {
            area[XMM_SPACE..XMM_END].copy_from_slice(&buf[XMM_SPACE..XMM_END]);
        } else {
            area[XMM_SPACE..XMM_END].fill(0);
        }
        if xstate_bv & XFEATURE_FP != 0 {
            area[..MXCSR].copy_from_slice(&buf[..MXCSR]);
            area[ST_SPACE..XMM_SPACE].copy_from_slice(&buf[ST_SPACE..XMM_SPACE]);
        } else {
            area[..MXCSR].fill(0);
            area[..2].copy_from_slice(&FCW_INIT.to_le_bytes());
            area[ST_SPACE..XMM_SPACE].fill(0);
        }
        for i in FIRST_EXTENDED as usize..COMPONENTS {
            if xstate_bv & (1 << i) != 0 {
                let r = self.component_range(i);
                area[r.clone()].copy_from_slice(&buf[r]);
            }
        }
        area[HEADER..HEADER_END].fill(0);
        area[HEADER..HEADER + 8].copy_from_slice(&(xstate_bv | XFEATURE_FPSSE).to_le_bytes());
        Ok(())
    }
}

/// A vCPU's state area after RESET: FCW 037FH, MXCSR 1F80H, everything else in its initial
/// state, x87 and SSE marked present (written out, as [`XsaveHost::read_xsave`] leaves them).
pub fn reset_area(area: &mut [u8; KVM_XSAVE_BYTES]) {
    area.fill(0);
    area[..2].copy_from_slice(&FCW_INIT.to_le_bytes());
    area[MXCSR..MXCSR_MASK].copy_from_slice(&MXCSR_RESET.to_le_bytes());
    area[HEADER..HEADER + 8].copy_from_slice(&XFEATURE_FPSSE.to_le_bytes());
}

/// After `KVM_SET_FPU` wrote the legacy region: x87 and SSE are present, so that XRSTOR
/// loads what was written rather than the initial state.
pub fn mark_legacy_present(area: &mut [u8; KVM_XSAVE_BYTES]) {
    let bv = u64_at(area, HEADER) | XFEATURE_FPSSE;
    area[HEADER..HEADER + 8].copy_from_slice(&bv.to_le_bytes());
}

/// Why a buffer of `KVM_SET_XSAVE` is refused (EINVAL, as KVM refuses it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsaveError {
    /// XSTATE_BV names a component the host does not switch.
    UnknownComponent,
    /// XCOMP_BV is not 0: the compacted format.
    Compacted,
    /// A reserved header byte is not 0.
    ReservedHeader,
    /// MXCSR has a bit set that MXCSR_MASK does not allow (XRSTOR/FXRSTOR would #GP).
    ReservedMxcsr,
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(w)
}

/// XSETBV / `KVM_SET_XCRS` of XCR0 = `value` for a guest that may set `guest_supported`
/// (KVM's __kvm_set_xcr, SDM vol. 1, 13.3 and vol. 2D XSETBV): x87 always set; AVX only
/// with SSE; nothing beyond what the guest supports (x87 is always allowed, even for a
/// vCPU without XSAVE); MPX's two components together; AVX-512's three together and only
/// with AVX; AMX's two together. `false` is #GP(0) (EINVAL for the ioctl).
pub const fn xcr0_valid(value: u64, guest_supported: u64) -> bool {
    if value & XFEATURE_FP == 0 || (value & XFEATURE_YMM != 0 && value & XFEATURE_SSE == 0) {
        return false;
    }
    if value & !(guest_supported | XFEATURE_FP) != 0 {
        return false;
    }
    if (value & XFEATURE_BNDREGS == 0) != (value & XFEATURE_BNDCSR == 0) {
        return false;
    }
    if value & XFEATURE_AVX512 != 0 && (value & XFEATURE_YMM == 0 || value & XFEATURE_AVX512 != XFEATURE_AVX512) {
        return false;
    }
    value & XFEATURE_XTILE == 0 || value & XFEATURE_XTILE == XFEATURE_XTILE
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Skylake-X's layout (CPUID.(0DH,i) of the test machine's CPU model).
    fn skylake_x() -> XsaveHost {
        let mut cpuid = |leaf: u32, sub: u32| match (leaf, sub) {
            (0, _) => [0x16, 0, 0, 0],
            (0xd, 1) => [0xf, 0, 0, 0],
            (0xd, 2) => [256, 576, 0, 0],
            (0xd, 3) => [64, 960, 0, 0],
            (0xd, 4) => [64, 1024, 0, 0],
            (0xd, 5) => [64, 1088, 0, 0],
            (0xd, 6) => [512, 1152, 0, 0],
            (0xd, 7) => [1024, 1664, 0, 0],
            _ => [0; 4],
        };
        XsaveHost::probe(true, 0x2e7, &mut cpuid)
    }

    fn sample_area(h: &XsaveHost) -> [u8; KVM_XSAVE_BYTES] {
        let mut a = [0u8; KVM_XSAVE_BYTES];
        for (i, b) in a.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(7) | 1;
        }
        a[MXCSR..MXCSR_MASK].copy_from_slice(&0x1f80u32.to_le_bytes());
        a[MXCSR_MASK..ST_SPACE].copy_from_slice(&0xffffu32.to_le_bytes());
        a[HEADER..HEADER_END].fill(0);
        a[HEADER..HEADER + 8].copy_from_slice(&h.supported.to_le_bytes());
        a
    }

    #[test]
    fn probe_offers_what_the_host_has_and_nvmx_switches() {
        let h = skylake_x();
        // PKRU (bit 9) and MPX (3, 4) are in the host's XCR0, not offered.
        assert_eq!(h.supported, 0xe7);
        assert_eq!(h.required_size(h.supported, false), 2688);
        assert_eq!(h.required_size(XFEATURE_FPSSE, false), 576);
        assert_eq!(h.required_size(XFEATURE_FPSSE | XFEATURE_YMM, false), 832);
        // Compacted: 576 + 256 + 64 + 512 + 1024.
        assert_eq!(h.required_size(h.supported, true), 2432);
        assert_eq!(h.leaf_d1_eax, 0b111, "XSAVES not offered");
        // AVX-512 without AVX in the host's XCR0 is dropped; no XSAVE at all: x87/SSE.
        let mut c = |l: u32, s: u32| if (l, s) == (0, 0) { [0xd, 0, 0, 0] } else { [64, 1088, 0, 0] };
        assert_eq!(XsaveHost::probe(true, 0xe3, &mut c).supported, XFEATURE_FPSSE);
        assert_eq!(XsaveHost::probe(false, 0x7, &mut c), XsaveHost::legacy());
        // A component that would not fit the 4 KiB area is not offered.
        let mut big = |l: u32, s: u32| match (l, s) {
            (0, _) => [0xd, 0, 0, 0],
            (0xd, 2) => [256, 576, 0, 0],
            (0xd, 5) => [64, 4090, 0, 0],
            _ => [0; 4],
        };
        assert_eq!(XsaveHost::probe(true, 0xe7, &mut big).supported, 0x7);
    }

    #[test]
    fn guest_supported_is_the_vmm_offer_within_the_host() {
        let h = skylake_x();
        assert_eq!(h.guest_supported([0x2ff, 0, 0, 0]), 0xe7);
        assert_eq!(h.guest_supported([0x7, 0, 0, 1]), 0x7);
        assert_eq!(h.guest_supported([0; 4]), 0);
    }

    #[test]
    fn xcr0_rules() {
        let all = 0xe7;
        for v in [1, 3, 7, 0xe7] {
            assert!(xcr0_valid(v, all), "{v:#x}");
        }
        // x87 is always allowed, even for a guest offered nothing.
        assert!(xcr0_valid(1, 0));
        for v in [0, 2, 5, 0x23, 0x63, 0xe3, 0x1e7, 1 << 63] {
            assert!(!xcr0_valid(v, all), "{v:#x}");
        }
        assert!(!xcr0_valid(7, 3), "AVX not offered");
        assert!(!xcr0_valid(0x9, 0x1b) && xcr0_valid(0x19, 0x1b), "MPX together");
        assert!(!xcr0_valid(0x20001, 0x60001) && xcr0_valid(0x60001, 0x60001), "AMX together");
    }

    #[test]
    fn get_then_set_round_trips() {
        let h = skylake_x();
        let a = sample_area(&h);
        let mut buf = [0u8; KVM_XSAVE_BYTES];
        h.write_xsave(&a, h.supported, &mut buf);
        assert_eq!(u64_at(&buf, HEADER), 0xe7);
        assert_eq!(&buf[..XMM_END], &a[..XMM_END]);
        assert!(buf[XMM_END..HEADER].iter().all(|&b| b == 0), "reserved legacy bytes zero");
        assert!(buf[HEADER + 8..HEADER_END].iter().all(|&b| b == 0));
        assert_eq!(&buf[576..832], &a[576..832], "AVX");
        assert_eq!(&buf[1088..2688], &a[1088..2688], "AVX-512");
        assert!(buf[832..1088].iter().all(|&b| b == 0), "MPX's place is not copied");
        assert!(buf[2688..].iter().all(|&b| b == 0));
        let mut back = [0u8; KVM_XSAVE_BYTES];
        h.read_xsave(&buf, &mut back, 0xffff).unwrap();
        assert_eq!(&back[..MXCSR_MASK], &a[..MXCSR_MASK]);
        assert_eq!(&back[ST_SPACE..XMM_END], &a[ST_SPACE..XMM_END]);
        assert_eq!(&back[576..832], &a[576..832]);
        assert_eq!(&back[1088..2688], &a[1088..2688]);
        assert_eq!(u64_at(&back, HEADER), 0xe7);
    }

    #[test]
    fn get_reports_only_what_the_guest_supports() {
        let h = skylake_x();
        let a = sample_area(&h);
        let mut buf = [0u8; KVM_XSAVE_BYTES];
        // A guest offered AVX only: AVX-512 is neither reported nor copied.
        h.write_xsave(&a, 0x7, &mut buf);
        assert_eq!(u64_at(&buf, HEADER), 0x7);
        assert!(buf[1088..].iter().all(|&b| b == 0));
        // A component in its initial state (XSTATE_BV clear) reads as zeros.
        let mut a2 = a;
        a2[HEADER..HEADER + 8].copy_from_slice(&0x3u64.to_le_bytes());
        h.write_xsave(&a2, h.supported, &mut buf);
        assert!(buf[576..832].iter().all(|&b| b == 0));
        // x87 in its initial state: FCW 037FH, the registers 0.
        a2[HEADER..HEADER + 8].copy_from_slice(&0x2u64.to_le_bytes());
        h.write_xsave(&a2, h.supported, &mut buf);
        assert_eq!(&buf[..2], &[0x7f, 0x03]);
        assert!(buf[ST_SPACE..XMM_SPACE].iter().all(|&b| b == 0));
        assert_eq!(&buf[MXCSR..MXCSR_MASK], &a2[MXCSR..MXCSR_MASK], "MXCSR with SSE");
    }

    #[test]
    fn components_left_out_are_initialized() {
        let h = skylake_x();
        let a = sample_area(&h);
        let mut buf = [0xaau8; KVM_XSAVE_BYTES];
        buf[HEADER..HEADER_END].fill(0);
        let mut new = a;
        h.read_xsave(&buf, &mut new, 0xffff).unwrap();
        assert_eq!(&new[..2], &[0x7f, 0x03], "FCW 037FH");
        assert!(new[2..MXCSR].iter().all(|&b| b == 0));
        assert!(new[ST_SPACE..XMM_END].iter().all(|&b| b == 0));
        assert_eq!(&new[MXCSR..MXCSR_MASK], &a[MXCSR..MXCSR_MASK], "MXCSR kept without x87/SSE/AVX");
        assert_eq!(u64_at(&new, HEADER), XFEATURE_FPSSE, "AVX and AVX-512 left for XRSTOR to initialize");
        // AVX only: MXCSR comes along (Linux's rule), the legacy registers are initialized.
        buf[HEADER..HEADER + 8].copy_from_slice(&XFEATURE_YMM.to_le_bytes());
        buf[MXCSR..MXCSR_MASK].copy_from_slice(&0x1f81u32.to_le_bytes());
        let mut new = a;
        h.read_xsave(&buf, &mut new, 0xffff).unwrap();
        assert_eq!(&new[MXCSR..MXCSR_MASK], &0x1f81u32.to_le_bytes());
        assert_eq!(&new[576..832], &buf[576..832]);
        assert_eq!(u64_at(&new, HEADER), XFEATURE_FPSSE | XFEATURE_YMM);
    }

    #[test]
    fn linux_rules_for_a_user_buffer() {
        let h = skylake_x();
        let a = sample_area(&h);
        let mut good = [0u8; KVM_XSAVE_BYTES];
        h.write_xsave(&a, h.supported, &mut good);
        let with = |o: usize, v: u64| {
            let mut b = good;
            b[o..o + 8].copy_from_slice(&v.to_le_bytes());
            let mut area = a;
            let r = h.read_xsave(&b, &mut area, 0xffbf);
            if r.is_err() {
                assert_eq!(area, a, "a refused buffer changes nothing");
            }
            r
        };
        assert_eq!(with(HEADER, 0x200 | 3), Err(XsaveError::UnknownComponent), "PKRU");
        assert_eq!(with(HEADER, 0x8 | 3), Err(XsaveError::UnknownComponent), "MPX");
        assert_eq!(with(HEADER + 8, 1 << 63), Err(XsaveError::Compacted));
        assert_eq!(with(HEADER + 56, 1), Err(XsaveError::ReservedHeader));
        // DAZ (bit 6) is not in this mask.
        assert_eq!(with(MXCSR, 0x1f80 | 1 << 6 | 0xffff << 32), Err(XsaveError::ReservedMxcsr));
        // ... but only matters with x87, SSE or AVX.
        let mut b = good;
        b[MXCSR..MXCSR_MASK].copy_from_slice(&(0x1fc0u32).to_le_bytes());
        let mut area = a;
        for bv in [0u64, 0x20] {
            b[HEADER..HEADER + 8].copy_from_slice(&bv.to_le_bytes());
            assert!(h.read_xsave(&b, &mut area, 0xffbf).is_ok(), "{bv:#x}");
        }
        // A host without XSAVE: x87 and SSE only.
        let l = XsaveHost::legacy();
        let mut b = good;
        b[HEADER..HEADER + 8].copy_from_slice(&0x7u64.to_le_bytes());
        assert_eq!(l.read_xsave(&b, &mut area, 0xffff), Err(XsaveError::UnknownComponent));
        b[HEADER..HEADER + 8].copy_from_slice(&0x3u64.to_le_bytes());
        assert!(l.read_xsave(&b, &mut area, 0xffff).is_ok());
    }

    #[test]
    fn reset_and_set_fpu() {
        let mut a = [0xffu8; KVM_XSAVE_BYTES];
        reset_area(&mut a);
        assert_eq!(&a[..2], &[0x7f, 0x03]);
        assert_eq!(&a[MXCSR..MXCSR_MASK], &MXCSR_RESET.to_le_bytes());
        assert_eq!(u64_at(&a, HEADER), 3);
        a[HEADER..HEADER + 8].copy_from_slice(&0x4u64.to_le_bytes());
        mark_legacy_present(&mut a);
        assert_eq!(u64_at(&a, HEADER), 7);
    }
}
