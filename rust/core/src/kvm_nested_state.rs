// SPDX-License-Identifier: GPL-2.0
//! `KVM_GET_NESTED_STATE` / `KVM_SET_NESTED_STATE` for VMX (Documentation/virt/kvm/api.rst;
//! KVM's vmx_get_nested_state / vmx_set_nested_state and the checks of the generic ioctl):
//! the 128-byte `struct kvm_nested_state` header — flags, format, size, then the VMX header
//! (VMXON pointer, current-VMCS pointer, SMM flags, VMX flags, the VMX-preemption timer's
//! deadline) — followed by the VMCS12 in KVM's struct vmcs12 layout (rust/core/src/vmcs12.rs)
//! and room for a shadow VMCS12. What the header says is checked here, before anything of
//! the vCPU changes; the module then restores L1's VMX operation, the VMCS12 and, in guest
//! mode, L2 after the VM-entry checks.
//!
//! While L2 runs with L1's VMCS shadowing, the shadow VMCS12 (the VMCS link pointer's)
//! follows the VMCS12. nvmx offers no SMM and no enlightened VMCS, so it never reports them
//! and refuses a state that needs them; the MTF-pending flag is accepted and ignored (nvmx
//! does not offer the monitor trap flag, so no L2 can have one pending).

/// Bytes of `struct kvm_nested_state` without its data.
pub const HEADER_BYTES: usize = 128;
/// Bytes of each VMCS12 in the data (`KVM_STATE_NESTED_VMX_VMCS_SIZE`).
pub const VMCS12_BYTES: usize = 4096;
/// The most a state takes: header, VMCS12, shadow VMCS12 (`KVM_CAP_NESTED_STATE`).
pub const MAX_SIZE: u32 = (HEADER_BYTES + 2 * VMCS12_BYTES) as u32;
/// `KVM_STATE_NESTED_FORMAT_VMX`.
pub const FORMAT_VMX: u16 = 0;
/// `INVALID_GPA`: no VMXON region / no current VMCS.
pub const INVALID_GPA: u64 = u64::MAX;

/// `KVM_STATE_NESTED_*` (the header's `flags`).
pub mod flags {
    /// L2 is the vCPU's current state.
    pub const GUEST_MODE: u16 = 1;
    /// VMLAUNCH/VMRESUME was emulated but L2 has not run yet.
    pub const RUN_PENDING: u16 = 2;
    /// The current VMCS is an enlightened VMCS (Hyper-V).
    pub const EVMCS: u16 = 4;
    /// A monitor-trap-flag exit is pending.
    pub const MTF_PENDING: u16 = 8;
    /// SVM's global interrupt flag.
    pub const GIF_SET: u16 = 0x100;
    /// Every flag the generic ioctl accepts.
    pub const KNOWN: u16 = GUEST_MODE | RUN_PENDING | EVMCS | MTF_PENDING | GIF_SET;
}
/// `KVM_STATE_VMX_PREEMPTION_TIMER_DEADLINE` (the VMX header's `flags`).
pub const VMX_PREEMPTION_TIMER_DEADLINE: u32 = 1;
/// `KVM_STATE_NESTED_SMM_GUEST_MODE` and `KVM_STATE_NESTED_SMM_VMXON`.
pub const SMM_FLAGS: u16 = 3;

/// The header, field by field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// `KVM_STATE_NESTED_*`.
    pub flags: u16,
    /// [`FORMAT_VMX`].
    pub format: u16,
    /// Bytes of the whole state, header included.
    pub size: u32,
    /// VMXON pointer, or [`INVALID_GPA`] outside VMX operation.
    pub vmxon_pa: u64,
    /// Current-VMCS pointer, or [`INVALID_GPA`].
    pub vmcs12_pa: u64,
    /// `smm.flags`.
    pub smm_flags: u16,
    /// The VMX header's `flags`.
    pub vmx_flags: u32,
    /// With [`VMX_PREEMPTION_TIMER_DEADLINE`]: when L1's VMX-preemption timer for L2 reaches
    /// zero, in KVM's unit: L1's TSC shifted right by the timer's rate (IA32_VMX_MISC[4:0]).
    pub preemption_timer_deadline: u64,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(w)
}

impl Header {
    /// From the first [`HEADER_BYTES`] of a `struct kvm_nested_state`.
    pub fn parse(b: &[u8; HEADER_BYTES]) -> Self {
        Header {
            flags: u16_at(b, 0),
            format: u16_at(b, 2),
            size: u32_at(b, 4),
            vmxon_pa: u64_at(b, 8),
            vmcs12_pa: u64_at(b, 16),
            smm_flags: u16_at(b, 24),
            vmx_flags: u32_at(b, 28),
            preemption_timer_deadline: u64_at(b, 32),
        }
    }

    /// As the first [`HEADER_BYTES`] of a `struct kvm_nested_state` (the rest zero).
    pub fn write(&self, out: &mut [u8; HEADER_BYTES]) {
        out.fill(0);
        out[0..2].copy_from_slice(&self.flags.to_le_bytes());
        out[2..4].copy_from_slice(&self.format.to_le_bytes());
        out[4..8].copy_from_slice(&self.size.to_le_bytes());
        out[8..16].copy_from_slice(&self.vmxon_pa.to_le_bytes());
        out[16..24].copy_from_slice(&self.vmcs12_pa.to_le_bytes());
        out[24..26].copy_from_slice(&self.smm_flags.to_le_bytes());
        out[28..32].copy_from_slice(&self.vmx_flags.to_le_bytes());
        out[32..40].copy_from_slice(&self.preemption_timer_deadline.to_le_bytes());
    }
}

/// The vCPU's nested state as `KVM_GET_NESTED_STATE` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    /// L1's VMXON pointer while in VMX operation.
    pub vmxon: Option<u64>,
    /// The current-VMCS pointer.
    pub current: Option<u64>,
    /// A VMCS12 is current (its contents follow the header).
    pub has_vmcs12: bool,
    /// In guest mode, VMCS12 uses VMCS shadowing with a link pointer: the shadow VMCS12
    /// follows the VMCS12.
    pub has_shadow: bool,
    /// L2 runs.
    pub guest_mode: bool,
    /// The emulated VM entry has not reached L2 yet.
    pub run_pending: bool,
    /// L1's VMX-preemption timer for L2: its deadline in L1's TSC.
    pub timer_deadline: Option<u64>,
}

/// The header `KVM_GET_NESTED_STATE` writes for `s` (KVM's vmx_get_nested_state): outside
/// VMX operation both pointers invalid and the header alone; a VMCS12 adds its 4 KiB.
pub fn header_for(s: &Saved) -> Header {
    let mut h = Header { format: FORMAT_VMX, size: HEADER_BYTES as u32, vmxon_pa: INVALID_GPA, vmcs12_pa: INVALID_GPA, ..Header::default() };
    let Some(vmxon) = s.vmxon else { return h };
    h.vmxon_pa = vmxon;
    h.vmcs12_pa = s.current.unwrap_or(INVALID_GPA);
    if s.has_vmcs12 {
        h.size += VMCS12_BYTES as u32;
    }
    if s.has_vmcs12 && s.guest_mode && s.has_shadow {
        h.size += VMCS12_BYTES as u32;
    }
    if s.guest_mode {
        h.flags |= flags::GUEST_MODE;
        if s.run_pending {
            h.flags |= flags::RUN_PENDING;
        }
        if let Some(d) = s.timer_deadline {
            h.vmx_flags |= VMX_PREEMPTION_TIMER_DEADLINE;
            h.preemption_timer_deadline = d;
        }
    }
    h
}

/// What `KVM_SET_NESTED_STATE` is to restore, once [`check_header`] accepted the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// Outside VMX operation.
    Off,
    /// In VMX operation with no current VMCS.
    VmxOn {
        /// VMXON pointer.
        vmxon: u64,
    },
    /// In VMX operation with a current VMCS12, whose contents follow the header.
    Current {
        /// VMXON pointer.
        vmxon: u64,
        /// Current-VMCS pointer.
        vmcs12: u64,
        /// L2 runs: the VMCS12's guest state is checked and entered.
        guest_mode: bool,
        /// The entry has not reached L2 yet: it injects VMCS12's event.
        run_pending: bool,
        /// L1's VMX-preemption timer deadline (L1's TSC).
        timer_deadline: Option<u64>,
        /// The data hold a shadow VMCS12 after the VMCS12 (`size` has room for it).
        shadow_data: bool,
    },
}

/// Why a state is refused (EINVAL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// `size` below the header's.
    Size,
    /// A flag KVM does not know, or one nvmx has no use for here (EVMCS, SMM).
    Flags,
    /// RUN_PENDING without GUEST_MODE.
    RunPendingOutsideGuestMode,
    /// Not [`FORMAT_VMX`].
    Format,
    /// A VMCS pointer or a VMX flag without VMX operation.
    NotInVmxOperation,
    /// VMX operation for a vCPU whose CPUID does not offer VMX.
    NoVmx,
    /// A pointer that is not a page-aligned address within MAXPHYADDR, or the VMCS pointer
    /// equal to the VMXON pointer.
    Address,
    /// Guest mode or a VMCS pointer without the VMCS12 data.
    MissingVmcs12,
}

/// A page address L1 could have given VMXON/VMPTRLD (KVM's page_address_valid).
pub const fn page_address_valid(pa: u64, maxphyaddr: u8) -> bool {
    pa & 0xfff == 0 && (maxphyaddr >= 64 || pa >> maxphyaddr == 0)
}

/// `KVM_SET_NESTED_STATE`'s checks of the header, in KVM's order (the generic ioctl's, then
/// vmx_set_nested_state's), for a vCPU that is not in SMM (nvmx has none) with `vmx` in its
/// CPUID and `maxphyaddr`. The VMCS12's revision and, in guest mode, its VM-entry checks
/// come after, on the data.
pub fn check_header(h: &Header, vmx: bool, maxphyaddr: u8) -> Result<Restore, StateError> {
    if (h.size as usize) < HEADER_BYTES {
        return Err(StateError::Size);
    }
    if h.flags & !flags::KNOWN != 0 {
        return Err(StateError::Flags);
    }
    if h.flags & flags::RUN_PENDING != 0 && h.flags & flags::GUEST_MODE == 0 {
        return Err(StateError::RunPendingOutsideGuestMode);
    }
    if h.format != FORMAT_VMX {
        return Err(StateError::Format);
    }
    if h.vmxon_pa == INVALID_GPA {
        if h.smm_flags != 0 || h.vmcs12_pa != INVALID_GPA || h.flags & !flags::EVMCS != 0 {
            return Err(StateError::NotInVmxOperation);
        }
    } else {
        if !vmx {
            return Err(StateError::NoVmx);
        }
        if !page_address_valid(h.vmxon_pa, maxphyaddr) {
            return Err(StateError::Address);
        }
    }
    // No SMM: its flags must be 0; no enlightened VMCS; no SVM GIF for VMX.
    if h.smm_flags != 0 || h.flags & (flags::EVMCS | flags::GIF_SET) != 0 {
        return Err(StateError::Flags);
    }
    if h.vmx_flags & !VMX_PREEMPTION_TIMER_DEADLINE != 0 {
        return Err(StateError::Flags);
    }
    if h.vmxon_pa == INVALID_GPA {
        return Ok(Restore::Off);
    }
    if (h.size as usize) < HEADER_BYTES + VMCS12_BYTES {
        if h.flags & flags::GUEST_MODE != 0 || h.vmcs12_pa != INVALID_GPA {
            return Err(StateError::MissingVmcs12);
        }
        return Ok(Restore::VmxOn { vmxon: h.vmxon_pa });
    }
    if h.vmcs12_pa == INVALID_GPA {
        return Err(StateError::MissingVmcs12);
    }
    if h.vmcs12_pa == h.vmxon_pa || !page_address_valid(h.vmcs12_pa, maxphyaddr) {
        return Err(StateError::Address);
    }
    let guest_mode = h.flags & flags::GUEST_MODE != 0;
    Ok(Restore::Current {
        vmxon: h.vmxon_pa,
        vmcs12: h.vmcs12_pa,
        guest_mode,
        run_pending: guest_mode && h.flags & flags::RUN_PENDING != 0,
        timer_deadline: (guest_mode && h.vmx_flags & VMX_PREEMPTION_TIMER_DEADLINE != 0).then_some(h.preemption_timer_deadline),
        shadow_data: h.size as usize >= HEADER_BYTES + 2 * VMCS12_BYTES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nested_set_state_test's default VMX state: VMXON at 0x1000, VMCS at 0x2000, run
    /// pending in guest mode, one page of data.
    fn default_vmx() -> Header {
        Header {
            flags: flags::RUN_PENDING | flags::GUEST_MODE,
            size: (HEADER_BYTES + 4096) as u32,
            vmxon_pa: 0x1000,
            vmcs12_pa: 0x2000,
            ..Header::default()
        }
    }

    #[test]
    fn header_round_trip_at_kvms_offsets() {
        let h = Header { flags: 3, format: 0, size: 4224, vmxon_pa: 0x1000, vmcs12_pa: 0x2000, smm_flags: 0, vmx_flags: 1, preemption_timer_deadline: 0x1234_5678 };
        let mut b = [0xffu8; HEADER_BYTES];
        h.write(&mut b);
        assert_eq!(&b[4..8], &4224u32.to_le_bytes());
        assert_eq!(&b[8..16], &0x1000u64.to_le_bytes(), "hdr.vmx.vmxon_pa at 8");
        assert_eq!(&b[16..24], &0x2000u64.to_le_bytes(), "hdr.vmx.vmcs12_pa at 16");
        assert_eq!(&b[28..32], &1u32.to_le_bytes(), "hdr.vmx.flags at 28");
        assert_eq!(&b[32..40], &0x1234_5678u64.to_le_bytes(), "preemption_timer_deadline at 32");
        assert!(b[40..].iter().all(|&x| x == 0));
        assert_eq!(Header::parse(&b), h);
    }

    #[test]
    fn get_reports_kvms_sizes_and_flags() {
        let off = header_for(&Saved::default());
        assert_eq!((off.vmxon_pa, off.vmcs12_pa, off.size, off.flags), (INVALID_GPA, INVALID_GPA, 128, 0));
        let on = header_for(&Saved { vmxon: Some(0x1000), ..Saved::default() });
        assert_eq!((on.vmxon_pa, on.vmcs12_pa, on.size), (0x1000, INVALID_GPA, 128));
        let l2 = header_for(&Saved { vmxon: Some(0x1000), current: Some(0x2000), has_vmcs12: true, guest_mode: true, run_pending: true, timer_deadline: Some(99), has_shadow: false });
        assert_eq!((l2.size, l2.flags, l2.vmx_flags, l2.preemption_timer_deadline), (4224, 3, 1, 99));
        // Outside guest mode neither the run-pending flag nor the deadline is reported.
        let l1 = header_for(&Saved { vmxon: Some(0x1000), current: Some(0x2000), has_vmcs12: true, run_pending: true, timer_deadline: Some(99), has_shadow: true, ..Saved::default() });
        assert_eq!((l1.flags, l1.vmx_flags, l1.size), (0, 0, 4224), "no shadow VMCS12 outside guest mode");
        assert_eq!(check_header(&l2, true, 39), Ok(Restore::Current { vmxon: 0x1000, vmcs12: 0x2000, guest_mode: true, run_pending: true, timer_deadline: Some(99), shadow_data: false }));
        let sh = header_for(&Saved { vmxon: Some(0x1000), current: Some(0x2000), has_vmcs12: true, guest_mode: true, has_shadow: true, ..Saved::default() });
        assert_eq!(sh.size, MAX_SIZE);
        assert!(matches!(check_header(&sh, true, 39), Ok(Restore::Current { shadow_data: true, .. })));
        assert_eq!(check_header(&off, false, 39), Ok(Restore::Off));
        assert_eq!(check_header(&on, true, 39), Ok(Restore::VmxOn { vmxon: 0x1000 }));
    }

    #[test]
    fn nested_set_state_test_refusals() {
        let with = |f: &dyn Fn(&mut Header)| {
            let mut h = default_vmx();
            f(&mut h);
            check_header(&h, true, 39)
        };
        assert_eq!(with(&|h| h.size = 0), Err(StateError::Size));
        assert_eq!(with(&|h| h.flags = 0x10), Err(StateError::Flags));
        assert_eq!(with(&|h| h.flags = flags::RUN_PENDING), Err(StateError::RunPendingOutsideGuestMode));
        assert_eq!(with(&|h| h.format = 1), Err(StateError::Format));
        assert_eq!(check_header(&default_vmx(), false, 39), Err(StateError::NoVmx), "VMX not in CPUID");
        assert_eq!(with(&|h| h.vmxon_pa = INVALID_GPA), Err(StateError::NotInVmxOperation));
        assert_eq!(with(&|h| { h.vmxon_pa = INVALID_GPA; h.vmcs12_pa = INVALID_GPA; h.flags = flags::EVMCS }), Err(StateError::Flags));
        assert_eq!(with(&|h| { h.vmxon_pa = INVALID_GPA; h.vmcs12_pa = INVALID_GPA; h.flags = 0 }), Ok(Restore::Off));
        assert_eq!(with(&|h| { h.vmxon_pa = INVALID_GPA; h.vmcs12_pa = INVALID_GPA; h.flags = 0; h.smm_flags = 1 }), Err(StateError::NotInVmxOperation));
        assert_eq!(with(&|h| h.vmx_flags = !0), Err(StateError::Flags));
        assert_eq!(with(&|h| h.vmxon_pa = 1), Err(StateError::Address), "not page aligned");
        assert_eq!(with(&|h| h.vmxon_pa = 1 << 39), Err(StateError::Address), "beyond MAXPHYADDR");
        assert_eq!(with(&|h| h.smm_flags = 1), Err(StateError::Flags));
        assert_eq!(with(&|h| { h.flags = 0; h.smm_flags = 1 }), Err(StateError::Flags), "outside SMM");
        // No VMCS12 data: only VMX operation without a current VMCS.
        assert_eq!(with(&|h| { h.size = 128; h.flags = 0 }), Err(StateError::MissingVmcs12));
        assert_eq!(with(&|h| { h.size = 128; h.flags = 0; h.vmcs12_pa = INVALID_GPA }), Ok(Restore::VmxOn { vmxon: 0x1000 }));
        assert_eq!(with(&|h| { h.size = 128; h.flags = 0; h.vmcs12_pa = INVALID_GPA; h.vmx_flags = !0 }), Err(StateError::Flags));
        assert_eq!(with(&|h| { h.vmxon_pa = 0; h.vmcs12_pa = 0 }), Err(StateError::Address), "VMXON = VMCS");
        assert_eq!(with(&|h| h.flags = 0), Ok(Restore::Current { vmxon: 0x1000, vmcs12: 0x2000, guest_mode: false, run_pending: false, timer_deadline: None, shadow_data: false }));
        assert_eq!(with(&|h| { h.flags = 0; h.vmcs12_pa = INVALID_GPA }), Err(StateError::MissingVmcs12));
    }
}
