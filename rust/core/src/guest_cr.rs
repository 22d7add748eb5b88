// SPDX-License-Identifier: GPL-2.0
//! Which CR0/CR4/EFER combinations a guest may have: the rules for its MOV to CR0/CR4 (a
//! violation is #GP(0), SDM vol. 3A 2.5 and 10.8.5) and for its VMM's `KVM_SET_SREGS`
//! (EINVAL, as KVM's kvm_is_valid_sregs). CR4 bits of features the guest's CPUID does not
//! offer are reserved for it, whatever the host has.

use super::controls::{cr0, cr4};
use super::cpuid::GuestFeatures;
use super::guest_msr::efer;

/// CR0.NW.
pub const CR0_NW: u64 = 1 << 29;
/// CR0.CD.
pub const CR0_CD: u64 = 1 << 30;

/// CR4 bits every guest may set (KVM's KVM_ALWAYS_ALLOWED_CR4): VME, PVI, TSD, DE, PSE, PAE,
/// MCE, PGE, PCE, OSFXSR, OSXMMEXCPT.
pub const CR4_ALWAYS_ALLOWED: u64 = 0x7ff;
/// CR4.UMIP.
pub const CR4_UMIP: u64 = 1 << 11;
/// CR4.LA57.
pub const CR4_LA57: u64 = 1 << 12;
/// CR4.SMXE.
pub const CR4_SMXE: u64 = 1 << 14;
/// CR4.FSGSBASE.
pub const CR4_FSGSBASE: u64 = 1 << 16;
/// CR4.PCIDE.
pub const CR4_PCIDE: u64 = 1 << 17;
/// CR4.OSXSAVE.
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// CR4.SMEP.
pub const CR4_SMEP: u64 = 1 << 20;
/// CR4.SMAP.
pub const CR4_SMAP: u64 = 1 << 21;
/// CR4.PKE.
pub const CR4_PKE: u64 = 1 << 22;

/// CR4 bits that turn on register state nvmx does not switch between guest and host (it
/// switches XCR0 and the x87/SSE/AVX/AVX-512 state, rust/core/src/xsave.rs): KL (19, Key
/// Locker's IWKey), PKE (PKRU), CET (23), PKS (24, IA32_PKRS), UINTR (25), LAM_SUP (28)
/// and FRED (32). A guest with one of them would use the host's registers — the VMM's
/// PKRU, another task's shadow stack — so they are reserved for every guest, whatever its
/// CPUID says, until their state is switched. OSXSAVE follows the guest's CPUID, whose
/// XSAVE bit the module clears where the host has no XSAVE to switch the state with.
pub const CR4_UNSWITCHED: u64 = (1 << 19) | CR4_PKE | (1 << 23) | (1 << 24) | (1 << 25) | (1 << 28) | (1 << 32);

/// L1's IA32_VMX_CR4_FIXED1 (KVM: nested_vmx_cr_fixed1_bits_update): the host's, limited
/// to what L1 itself may set — the bits its CPUID offers and nvmx switches — so that L1
/// cannot give L2 (GUEST_CR4) or itself at a VM exit (HOST_CR4) a CR4 bit its own MOV to
/// CR4 could not set. VMXE stays: VMX operation requires it.
pub fn l1_cr4_fixed1(host_fixed1: u64, f: &GuestFeatures) -> u64 {
    host_fixed1 & (cr4_allowed(f) | cr4::VMXE)
}

/// The CR4 bits this guest may set: what its CPUID offers, less [`CR4_UNSWITCHED`].
pub fn cr4_allowed(f: &GuestFeatures) -> u64 {
    let mut a = CR4_ALWAYS_ALLOWED;
    for (has, b) in [
        (f.umip, CR4_UMIP),
        (f.la57, CR4_LA57),
        (f.vmx, cr4::VMXE),
        (f.smx, CR4_SMXE),
        (f.fsgsbase, CR4_FSGSBASE),
        (f.pcid, CR4_PCIDE),
        (f.xsave, CR4_OSXSAVE),
        (f.smep, CR4_SMEP),
        (f.smap, CR4_SMAP),
        (f.pku, CR4_PKE),
    ] {
        if has {
            a |= b;
        }
    }
    a & !CR4_UNSWITCHED
}

/// CR0 on its own (SDM 2.5 and vol. 2B "MOV to CR0"): bits 63:32 are reserved, NW without CD
/// and PG without PE are #GP.
pub const fn cr0_valid(v: u64) -> bool {
    v >> 32 == 0 && !(v & CR0_NW != 0 && v & CR0_CD == 0) && !(v & cr0::PG != 0 && v & cr0::PE == 0)
}

/// The control registers a VMM may give a vCPU with `KVM_SET_SREGS` (kvm_is_valid_sregs):
/// each register valid on its own, EFER's bits offered, and IA-32e mode consistent — with
/// EFER.LME and CR0.PG, CR4.PAE and EFER.LMA are set; otherwise EFER.LMA and CS.L are clear.
pub fn sregs_valid(f: &GuestFeatures, cr0: u64, cr4: u64, efer: u64, cs_l: bool) -> bool {
    let long = efer & efer::LME != 0 && cr0 & cr0::PG != 0;
    if long {
        if cr4 & cr4::PAE == 0 || efer & efer::LMA == 0 {
            return false;
        }
    } else if efer & efer::LMA != 0 || cs_l {
        return false;
    }
    let mut efer_allowed = efer::SCE;
    if f.long_mode {
        efer_allowed |= efer::LME | efer::LMA;
    }
    if f.nx {
        efer_allowed |= efer::NXE;
    }
    cr4 & !cr4_allowed(f) == 0 && cr0_valid(cr0) && efer & !efer_allowed == 0
}

/// The guest's MOV to CR4 (SDM vol. 2B "MOV—Move to/from Control Registers", 4.5): `None`
/// is #GP(0). Reserved or unoffered bits; PAE cleared in IA-32e mode; LA57 changed in
/// IA-32e mode; PCIDE set outside IA-32e mode or with CR3[11:0] non-zero.
pub fn mov_to_cr4(f: &GuestFeatures, old: u64, new: u64, long_mode: bool, cr3: u64) -> Option<u64> {
    if new & !cr4_allowed(f) != 0 {
        return None;
    }
    if long_mode && new & cr4::PAE == 0 {
        return None;
    }
    if long_mode && (old ^ new) & CR4_LA57 != 0 {
        return None;
    }
    if new & CR4_PCIDE != 0 && old & CR4_PCIDE == 0 && (!long_mode || cr3 & 0xfff != 0) {
        return None;
    }
    Some(new)
}

/// The guest's MOV to CR0: `None` is #GP(0). Besides [`cr0_valid`]: turning paging on with
/// EFER.LME set needs CR4.PAE (SDM 10.8.5), and paging cannot be turned off in IA-32e mode
/// while CR4.PCIDE is set.
pub fn mov_to_cr0(old: u64, new: u64, efer: u64, cr4: u64) -> Option<u64> {
    if !cr0_valid(new) {
        return None;
    }
    let enabling_paging = old & cr0::PG == 0 && new & cr0::PG != 0;
    if enabling_paging && efer & efer::LME != 0 && cr4 & cr4::PAE == 0 {
        return None;
    }
    if new & cr0::PG == 0 && cr4 & CR4_PCIDE != 0 {
        return None;
    }
    Some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> GuestFeatures {
        GuestFeatures {
            long_mode: true,
            nx: true,
            x2apic: true,
            vmx: true,
            smx: true,
            pcid: true,
            xsave: true,
            tsc_deadline: true,
            fsgsbase: true,
            smep: true,
            smap: true,
            umip: true,
            pku: true,
            la57: true,
            maxphyaddr: 39,
        }
    }

    #[test]
    fn cr4_bits_follow_cpuid() {
        let none = GuestFeatures::default();
        assert_eq!(cr4_allowed(&none), CR4_ALWAYS_ALLOWED);
        for b in [CR4_UMIP, CR4_LA57, cr4::VMXE, CR4_SMXE, CR4_FSGSBASE, CR4_PCIDE, CR4_SMEP, CR4_SMAP, CR4_OSXSAVE] {
            assert_eq!(cr4_allowed(&none) & b, 0, "{b:#x} without CPUID");
            assert_ne!(cr4_allowed(&all()) & b, 0, "{b:#x} with CPUID");
        }
        for b in [1u64 << 15, 1 << 19, 1 << 23, 1 << 24, 1 << 25, 1 << 32] {
            assert_eq!(cr4_allowed(&all()) & b, 0, "{b:#x}: not offered by nvmx at all");
        }
    }

    #[test]
    fn cr4_bits_of_unswitched_state_stay_off() {
        // Offered in CPUID by the VMM or not, PKE (and CET, PKS, UINTR, LAM, FRED, KL) would
        // give the guest register state nvmx does not switch.
        let f = all();
        for b in [CR4_PKE, 1 << 19, 1 << 23, 1 << 24, 1 << 25, 1 << 28, 1 << 32] {
            assert_eq!(cr4_allowed(&f) & b, 0, "{b:#x}");
            assert_eq!(CR4_UNSWITCHED & b, b, "{b:#x}");
            assert!(!sregs_valid(&f, cr0::PE | cr0::NE, b, 0, false), "KVM_SET_SREGS with {b:#x}");
            assert_eq!(mov_to_cr4(&f, 0, b, false, 0), None, "MOV to CR4 of {b:#x}");
        }
        // L1's IA32_VMX_CR4_FIXED1: the host's, less what L1's CPUID does not offer and what
        // nvmx does not switch; VMXE stays (it is fixed to 1 in VMX operation).
        let host_fixed1 = 0x0037_67ff;
        let fixed1 = l1_cr4_fixed1(host_fixed1, &f);
        assert_eq!(fixed1 & CR4_PKE, 0);
        assert_eq!(fixed1 & CR4_OSXSAVE, CR4_OSXSAVE, "XSAVE in L1's CPUID");
        assert_eq!(fixed1 & cr4::VMXE, cr4::VMXE);
        assert_eq!(fixed1 & CR4_SMEP, CR4_SMEP);
        assert_eq!(l1_cr4_fixed1(host_fixed1, &GuestFeatures::default()), (CR4_ALWAYS_ALLOWED | cr4::VMXE) & host_fixed1);
    }

    #[test]
    fn cr0_rules() {
        assert!(cr0_valid(0x6000_0010), "RESET value: CD, NW, ET");
        assert!(cr0_valid(0x8000_0031));
        assert!(!cr0_valid(1 << 32));
        assert!(!cr0_valid(CR0_NW), "NW without CD");
        assert!(!cr0_valid(cr0::PG), "PG without PE");
    }

    #[test]
    fn sregs_long_mode_consistency() {
        let f = all();
        let pe_pg = cr0::PE | cr0::PG | cr0::NE;
        let long = efer::LME | efer::LMA;
        assert!(sregs_valid(&f, pe_pg, cr4::PAE, long, true));
        assert!(!sregs_valid(&f, pe_pg, 0, long, true), "PAE needed");
        assert!(!sregs_valid(&f, pe_pg, cr4::PAE, efer::LME, true), "LMA needed");
        assert!(!sregs_valid(&f, cr0::PE, 0, efer::LMA, false), "LMA without paging");
        assert!(!sregs_valid(&f, cr0::PE, 0, 0, true), "CS.L outside IA-32e mode");
        assert!(sregs_valid(&f, cr0::PE, 0, efer::LME, false), "LME before paging is fine");
        let none = GuestFeatures::default();
        assert!(sregs_valid(&none, 0, 0, efer::SCE, false));
        assert!(!sregs_valid(&none, 0, 0, efer::LME, false));
        assert!(!sregs_valid(&none, 0, 0, efer::NXE, false));
        assert!(!sregs_valid(&none, 0, 1 << 12, 0, false), "SVME is never ours");
        assert!(!sregs_valid(&none, 0, CR4_OSXSAVE, 0, false), "OSXSAVE without XSAVE");
        assert!(sregs_valid(&f, 0, CR4_OSXSAVE, 0, false));
    }

    #[test]
    fn mov_to_cr4_rules() {
        let f = all();
        assert_eq!(mov_to_cr4(&f, 0, CR4_SMEP, false, 0), Some(CR4_SMEP));
        assert_eq!(mov_to_cr4(&GuestFeatures::default(), 0, CR4_SMEP, false, 0), None);
        assert_eq!(mov_to_cr4(&f, cr4::PAE, 0, true, 0), None, "PAE off in IA-32e mode");
        assert_eq!(mov_to_cr4(&f, cr4::PAE, cr4::PAE | CR4_LA57, true, 0), None, "LA57 in IA-32e mode");
        assert_eq!(mov_to_cr4(&f, cr4::PAE, cr4::PAE | CR4_PCIDE, true, 0x1000), Some(cr4::PAE | CR4_PCIDE));
        assert_eq!(mov_to_cr4(&f, cr4::PAE, cr4::PAE | CR4_PCIDE, true, 0x1001), None, "CR3 PCID != 0");
        assert_eq!(mov_to_cr4(&f, 0, CR4_PCIDE, false, 0), None, "PCIDE outside IA-32e mode");
    }

    #[test]
    fn mov_to_cr0_rules() {
        let pe = cr0::PE | cr0::NE;
        assert_eq!(mov_to_cr0(pe, pe | cr0::PG, efer::LME, cr4::PAE), Some(pe | cr0::PG));
        assert_eq!(mov_to_cr0(pe, pe | cr0::PG, efer::LME, 0), None, "IA-32e needs PAE");
        assert_eq!(mov_to_cr0(pe, pe | cr0::PG, 0, 0), Some(pe | cr0::PG), "32-bit paging");
        assert_eq!(mov_to_cr0(pe | cr0::PG, pe, 0, CR4_PCIDE), None);
        assert_eq!(mov_to_cr0(pe, CR0_NW | cr0::PE, 0, 0), None);
        assert_eq!(mov_to_cr0(pe, 1 << 40, 0, 0), None);
    }
}
