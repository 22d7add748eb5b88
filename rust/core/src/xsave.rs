// SPDX-License-Identifier: GPL-2.0
//! The guest's FPU/SSE state in the XSAVE format of `KVM_GET_XSAVE`/`KVM_SET_XSAVE`, and its
//! XCR0 for `KVM_GET_XCRS`/`KVM_SET_XCRS`.
//!
//! nvmx offers guests no XSAVE (CPUID.1:ECX.XSAVE clear, CR4.OSXSAVE reserved), so a vCPU's
//! extended state is the legacy region FXSAVE writes (SDM vol. 1, 10.5.1) and its XCR0 is
//! its reset value, x87 only. The ioctls still speak the standard (uncompacted) XSAVE format
//! (SDM vol. 1, 13.4): the 512-byte legacy region, then the 64-byte header whose XSTATE_BV
//! says which components the buffer holds. Linux's rules for a buffer from userspace apply,
//! as KVM applies them (arch/x86/kernel/fpu/xstate.c): no component the vCPU does not have,
//! the uncompacted format, zero reserved header bytes, an MXCSR without reserved bits.

/// Bytes of `struct kvm_xsave`.
pub const KVM_XSAVE_BYTES: usize = 4096;
/// Bytes of the legacy region (the FXSAVE image).
pub const LEGACY_BYTES: usize = 512;
/// XSTATE_BV bit 0: x87 state.
pub const XFEATURE_FP: u64 = 1;
/// XSTATE_BV bit 1: SSE state (XMM registers and MXCSR).
pub const XFEATURE_SSE: u64 = 2;
/// The components a vCPU has.
pub const GUEST_XFEATURES: u64 = XFEATURE_FP | XFEATURE_SSE;
/// XCR0 at reset and the only value a vCPU without XSAVE has (SDM vol. 1, 13.3).
pub const XCR0_RESET: u64 = XFEATURE_FP;

/// Legacy-region layout (SDM vol. 1, table 10-2).
const MXCSR: usize = 24;
const MXCSR_MASK: usize = 28;
const ST_SPACE: usize = 32;
const XMM_SPACE: usize = 160;
const XMM_END: usize = 416;
/// XSAVE header: XSTATE_BV, XCOMP_BV, then reserved bytes up to 64.
const HEADER: usize = 512;
const HEADER_END: usize = 576;

/// `KVM_GET_XSAVE`: the legacy region `fx` (as FXSAVE left it) in a `struct kvm_xsave`
/// (`out`, [`KVM_XSAVE_BYTES`]): both components present, the header's other words and the
/// legacy region's reserved bytes zero.
pub fn write_xsave(fx: &[u8; LEGACY_BYTES], out: &mut [u8]) {
    out.fill(0);
    out[..XMM_END].copy_from_slice(&fx[..XMM_END]);
    out[HEADER..HEADER + 8].copy_from_slice(&GUEST_XFEATURES.to_le_bytes());
}

/// Why a buffer of `KVM_SET_XSAVE` is refused (EINVAL, as KVM refuses it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsaveError {
    /// XSTATE_BV names a component the vCPU does not have.
    UnknownComponent,
    /// XCOMP_BV is not 0: the compacted format.
    Compacted,
    /// A reserved header byte is not 0.
    ReservedHeader,
    /// MXCSR has a bit set that MXCSR_MASK does not allow (FXRSTOR would #GP).
    ReservedMxcsr,
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(w)
}

/// `KVM_SET_XSAVE`: the legacy region for `buf` (a `struct kvm_xsave`), starting from the
/// vCPU's current one (`fx`). A component XSTATE_BV leaves out is put in its initial state
/// (SDM vol. 1, 13.6: x87 with FCW 037FH and the rest 0; the XMM registers 0), as XRSTOR
/// would; MXCSR is taken from the buffer with the SSE component only. `mxcsr_mask` is the
/// host's MXCSR_MASK.
pub fn read_xsave(buf: &[u8], fx: &[u8; LEGACY_BYTES], mxcsr_mask: u32) -> Result<[u8; LEGACY_BYTES], XsaveError> {
    let xstate_bv = u64_at(buf, HEADER);
    if xstate_bv & !GUEST_XFEATURES != 0 {
        return Err(XsaveError::UnknownComponent);
    }
    if u64_at(buf, HEADER + 8) != 0 {
        return Err(XsaveError::Compacted);
    }
    if buf[HEADER + 16..HEADER_END].iter().any(|&b| b != 0) {
        return Err(XsaveError::ReservedHeader);
    }
    let mut new = *fx;
    if xstate_bv & XFEATURE_SSE != 0 {
        let mxcsr = u32::from_le_bytes([buf[MXCSR], buf[MXCSR + 1], buf[MXCSR + 2], buf[MXCSR + 3]]);
        if mxcsr & !mxcsr_mask != 0 {
            return Err(XsaveError::ReservedMxcsr);
        }
        new[MXCSR..MXCSR_MASK].copy_from_slice(&mxcsr.to_le_bytes());
        new[XMM_SPACE..XMM_END].copy_from_slice(&buf[XMM_SPACE..XMM_END]);
    } else {
        new[XMM_SPACE..XMM_END].fill(0);
    }
    if xstate_bv & XFEATURE_FP != 0 {
        new[..MXCSR].copy_from_slice(&buf[..MXCSR]);
        new[ST_SPACE..XMM_SPACE].copy_from_slice(&buf[ST_SPACE..XMM_SPACE]);
    } else {
        new[..MXCSR].fill(0);
        new[..2].copy_from_slice(&0x037fu16.to_le_bytes());
        new[ST_SPACE..XMM_SPACE].fill(0);
    }
    Ok(new)
}

/// `KVM_SET_XCRS` of XCR0 = `value` for a vCPU without XSAVE: KVM's __kvm_set_xcr accepts a
/// value with x87 set and nothing beyond what the guest supports, which leaves x87 alone.
pub const fn xcr0_valid(value: u64) -> bool {
    value == XCR0_RESET
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_fx() -> [u8; LEGACY_BYTES] {
        let mut fx = [0u8; LEGACY_BYTES];
        for (i, b) in fx.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(7) | 1;
        }
        fx[MXCSR..MXCSR_MASK].copy_from_slice(&0x1f80u32.to_le_bytes());
        fx[MXCSR_MASK..ST_SPACE].copy_from_slice(&0xffffu32.to_le_bytes());
        fx
    }

    #[test]
    fn get_then_set_round_trips() {
        let fx = sample_fx();
        let mut buf = [0u8; KVM_XSAVE_BYTES];
        write_xsave(&fx, &mut buf);
        assert_eq!(u64_at(&buf, HEADER), XFEATURE_FP | XFEATURE_SSE);
        assert_eq!(&buf[..XMM_END], &fx[..XMM_END]);
        assert!(buf[XMM_END..HEADER].iter().all(|&b| b == 0), "reserved legacy bytes zero");
        assert!(buf[HEADER + 8..].iter().all(|&b| b == 0));
        let back = read_xsave(&buf, &[0; LEGACY_BYTES], 0xffff).unwrap();
        assert_eq!(&back[..XMM_END], &fx[..XMM_END].iter().copied().enumerate()
            .map(|(i, b)| if (MXCSR_MASK..ST_SPACE).contains(&i) { 0 } else { b }).collect::<Vec<_>>()[..],
            "everything but MXCSR_MASK, which is read-only");
    }

    #[test]
    fn components_left_out_are_initialized() {
        let fx = sample_fx();
        let mut buf = [0u8; KVM_XSAVE_BYTES];
        write_xsave(&[0xaa; LEGACY_BYTES], &mut buf);
        buf[HEADER..HEADER + 8].copy_from_slice(&0u64.to_le_bytes());
        let new = read_xsave(&buf, &fx, 0xffff).unwrap();
        assert_eq!(&new[..2], &[0x7f, 0x03], "FCW 037FH");
        assert!(new[2..MXCSR].iter().all(|&b| b == 0));
        assert!(new[ST_SPACE..XMM_END].iter().all(|&b| b == 0));
        assert_eq!(&new[MXCSR..MXCSR_MASK], &fx[MXCSR..MXCSR_MASK], "MXCSR kept without SSE");
        // SSE only: the x87 part is initialized, the XMM registers and MXCSR come along.
        buf[HEADER..HEADER + 8].copy_from_slice(&XFEATURE_SSE.to_le_bytes());
        buf[MXCSR..MXCSR_MASK].copy_from_slice(&0x1f81u32.to_le_bytes());
        let new = read_xsave(&buf, &fx, 0xffff).unwrap();
        assert_eq!(&new[..2], &[0x7f, 0x03]);
        assert_eq!(&new[XMM_SPACE..XMM_END], &buf[XMM_SPACE..XMM_END]);
        assert_eq!(&new[MXCSR..MXCSR_MASK], &0x1f81u32.to_le_bytes());
    }

    #[test]
    fn linux_rules_for_a_user_buffer() {
        let fx = sample_fx();
        let mut good = [0u8; KVM_XSAVE_BYTES];
        write_xsave(&fx, &mut good);
        let with = |o: usize, v: u64| {
            let mut b = good;
            b[o..o + 8].copy_from_slice(&v.to_le_bytes());
            read_xsave(&b, &fx, 0xffbf)
        };
        assert_eq!(with(HEADER, 4), Err(XsaveError::UnknownComponent), "AVX");
        assert_eq!(with(HEADER + 8, 1 << 63), Err(XsaveError::Compacted));
        assert_eq!(with(HEADER + 56, 1), Err(XsaveError::ReservedHeader));
        // DAZ (bit 6) is not in this mask.
        assert_eq!(with(MXCSR, 0x1f80 | 1 << 6 | 0xffff << 32), Err(XsaveError::ReservedMxcsr));
        // ... but only matters with the SSE component.
        let mut b = good;
        b[MXCSR..MXCSR_MASK].copy_from_slice(&(0x1fc0u32).to_le_bytes());
        b[HEADER..HEADER + 8].copy_from_slice(&XFEATURE_FP.to_le_bytes());
        assert!(read_xsave(&b, &fx, 0xffbf).is_ok());
        // Bytes beyond the header (extended components) are not looked at.
        let mut b = good;
        b[HEADER_END..].fill(0xff);
        assert!(read_xsave(&b, &fx, 0xffff).is_ok());
    }

    #[test]
    fn xcr0_is_x87_only() {
        assert!(xcr0_valid(1));
        for v in [0, 3, 7, 1 << 63] {
            assert!(!xcr0_valid(v), "{v:#x}");
        }
    }
}
