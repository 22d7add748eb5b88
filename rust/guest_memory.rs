// SPDX-License-Identifier: GPL-2.0
//! Guest memory as the running guest addresses it, for the accesses nvmx makes on its behalf
//! (string I/O, instruction fetch, VMX-instruction operands): through the guest's paging,
//! then L0's EPT — or, for L2 under L1's EPT, EPT12 first (rust/nested_ept.rs).

use crate::shim;
use crate::vmx_core::ept;
use crate::vmx_core::exit::reason;
use crate::vmx_core::nested_switch::ExitInfo;
use crate::vmx_core::nested_ept::EptViolation;
use crate::vmx_core::paging::{self, GuestPhys, PagingRegs};

/// Guest-physical memory as the running guest addresses it, for the accesses nvmx makes for
/// it (string I/O, instruction fetch, VMX instruction operands).
#[derive(Clone, Copy)]
pub(crate) enum GuestMemory {
    /// L1, or L2 sharing L1's guest-physical space: L0's EPT.
    Ept(u64),
    /// L2 under L1's EPT: EPT12 (its tables read through L0's EPT), then L0's EPT.
    Nested { eptp01: u64, eptp12: u64, caps: u64, maxphyaddr: u8 },
}

/// Why an access nvmx made for the guest failed.
#[derive(Clone, Copy)]
pub(crate) enum AccessError {
    /// Outside guest memory: a paging structure not present, or outside every slot.
    Unmapped,
    /// L2 under L1's EPT: EPT12 does not allow the access — L1's EPT violation, as the CPU
    /// would have reported it.
    Ept12(Ept12Denial),
}

/// EPT rights a software access needs: guest paging structures are read and written (A/D
/// bits; KVM's emulator asks for both, and the upstream nested_tdp_fault_test expects the
/// exit qualification that says so), data as the instruction accesses it.
const PAGING_ACCESS: u64 = ept::READ | ept::WRITE;

impl GuestMemory {
    /// The host page of guest-physical page `gpa` for an access needing EPT `rights`; a
    /// write is logged for dirty tracking. Err(Some(r)): L1's EPT denies it (`r` as in
    /// `Ept12Denial::rights`); Err(None): outside guest memory.
    fn host_page(&self, gpa: u64, rights: u64) -> Result<u64, Option<Option<u64>>> {
        match *self {
            GuestMemory::Ept(eptp) => {
                let page = gpa & !0xfff;
                if rights == ept::WRITE {
                    // nvmx writes data for the guest: dirty-logged like a guest write, and not
                    // into a read-only slot.
                    return crate::ept::translate_for_write(eptp, page).ok_or(None);
                }
                if rights & ept::WRITE != 0 {
                    // A paging structure (its A/D bits may be written).
                    crate::ept::log_write(eptp, page);
                }
                crate::ept::translate(eptp, page).ok_or(None)
            }
            GuestMemory::Nested { eptp01, eptp12, caps, maxphyaddr } => {
                match crate::nested_ept::resolve(eptp01, eptp12, caps, maxphyaddr, gpa & !0xfff, rights) {
                    crate::nested_ept::Resolved::Host { hpa, .. } => Ok(hpa),
                    crate::nested_ept::Resolved::Denied(r) => Err(Some(r)),
                    crate::nested_ept::Resolved::L1Mmio(_) | crate::nested_ept::Resolved::Unreadable(_) => Err(None),
                }
            }
        }
    }
}

/// Guest paging structures read through a `GuestMemory`; the first EPT12 denial is kept.
struct PagingMemory {
    mem: GuestMemory,
    /// The structure's guest-physical address and EPT12's rights for it.
    denied: core::cell::Cell<Option<(u64, Option<u64>)>>,
}

impl GuestPhys for PagingMemory {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        match self.mem.host_page(gpa & !0xfff, PAGING_ACCESS) {
            // SAFETY: a pinned guest page the live EPT maps, in the direct map; an aligned
            // 8-byte read inside it.
            Ok(hpa) => Some(unsafe { (shim::phys_to_virt(hpa + (gpa & 0xff8)) as *const u64).read_volatile() }),
            Err(Some(rights)) => {
                // The structure's page, as the CPU reports a paging-structure access.
                if self.denied.get().is_none() {
                    self.denied.set(Some((gpa & !0xfff, rights)));
                }
                None
            }
            Err(None) => None,
        }
    }
}

/// Copy between guest linear memory at `linear` and `buf` (`to_guest`: into the guest),
/// through the guest's paging (`regs`) and `mem`. Nothing is undone on a failure (string I/O
/// to MMIO is not emulated).
pub(crate) fn copy_guest(regs: &PagingRegs, mem: GuestMemory, linear: u64, buf: &mut [u8], to_guest: bool) -> Result<(), AccessError> {
    let walker = PagingMemory { mem, denied: core::cell::Cell::new(None) };
    let data_rights = if to_guest { ept::WRITE } else { ept::READ };
    let mut page: Option<(u64, *mut u8)> = None;
    for (i, b) in buf.iter_mut().enumerate() {
        let la = linear.wrapping_add(i as u64);
        let host = match page {
            Some((lp, host)) if lp == la & !0xfff => host,
            _ => {
                let denial = |gpa: u64, rights: Option<u64>, access: u64, translated: bool| {
                    AccessError::Ept12(Ept12Denial { gpa, rights, access, linear: la, translated })
                };
                let Some(gpa) = paging::translate(regs, &walker, la & !0xfff) else {
                    return Err(match walker.denied.get() {
                        Some((gpa, rights)) => denial(gpa, rights, PAGING_ACCESS, false),
                        None => AccessError::Unmapped,
                    });
                };
                let hpa = match mem.host_page(gpa & !0xfff, data_rights) {
                    Ok(hpa) => hpa,
                    Err(Some(rights)) => return Err(denial(gpa | (la & 0xfff), rights, data_rights, true)),
                    Err(None) => return Err(AccessError::Unmapped),
                };
                let host = shim::phys_to_virt(hpa);
                page = Some((la & !0xfff, host));
                host
            }
        };
        // SAFETY: `host` is the direct-map address of a pinned guest page the live EPT maps;
        // the offset is inside the page.
        unsafe {
            let p = host.add((la & 0xfff) as usize);
            if to_guest { p.write_volatile(*b) } else { *b = p.read_volatile() }
        }
    }
    Ok(())
}

/// An access nvmx made for L2 (string I/O) that L1's EPT does not allow.
#[derive(Clone, Copy)]
pub(crate) struct Ept12Denial {
    /// L2-physical address.
    pub(crate) gpa: u64,
    /// EPT12's rights for it (0: not present); `None`: EPT12 is misconfigured there.
    pub(crate) rights: Option<u64>,
    /// The access (EPT READ / WRITE bits = qualification bits 0, 1).
    pub(crate) access: u64,
    /// The linear address L2 accessed.
    pub(crate) linear: u64,
    /// The access was to the final page, not to a paging structure (qualification bit 8).
    pub(crate) translated: bool,
}

impl Ept12Denial {
    /// The exit L1 gets (SDM 28.2.1, table 28-7): linear address valid (bit 7).
    pub(crate) fn exit_info(&self) -> ExitInfo {
        match self.rights {
            None => ExitInfo { reason: reason::EPT_MISCONFIG.into(), gpa: self.gpa, ..ExitInfo::default() },
            Some(rights) => ExitInfo {
                reason: reason::EPT_VIOLATION.into(),
                qualification: EptViolation(self.access)
                    .with_rights(rights)
                    .with_linear_valid(true)
                    .with_translated(self.translated)
                    .0,
                linear: self.linear,
                gpa: self.gpa,
                ..ExitInfo::default()
            },
        }
    }
}

