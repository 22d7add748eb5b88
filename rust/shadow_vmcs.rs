// SPDX-License-Identifier: GPL-2.0
//! VMCS shadowing for L1 (SDM 25.10, 25.6.15): while L1 has a current VMCS, VMCS01 points
//! at a shadow VMCS holding the components of `vmx_core::shadow_vmcs`, so that L1's VMREAD and
//! VMWRITE of them run without a VM exit — an L1 hypervisor does several per L2 exit. VMCS12
//! stays the authoritative copy: nvmx copies it into the shadow before L1 runs after nvmx
//! changed it, and the read/write components back before it emulates any VMX instruction.

use kernel::page::Page;
use kernel::prelude::*;

use crate::vmcs::LoadedVmcs;
use crate::shim;
use crate::vcpu_state::VcpuState;
use crate::vmx_core::controls::{secondary, VmxMisc};
use crate::vmx_core::field::Field;
use crate::vmx_core::field_table as f;
use crate::vmx_core::field_table::ALL_FIELDS;
use crate::vmx_core::shadow_vmcs::{vmread_clear_bits, vmwrite_clear_bits, READ_WRITE_COMPONENTS, READ_WRITE_SET, SHADOWED};
use crate::vmx_core::vmcs12::Components;
use crate::vmx_ops;

/// The VMREAD and VMWRITE bitmaps, one pair for the host (they never change).
pub(crate) struct Bitmaps {
    _pages: [Page; 2],
    vmread: u64,
    vmwrite: u64,
    /// VM-exit information is shadowed too (the CPU's VMWRITE can copy it in).
    read_only: bool,
}

impl Bitmaps {
    pub(crate) fn new(misc: VmxMisc) -> Result<Self> {
        let read_only = misc.vmwrite_any_field();
        let read = bitmap_page(vmread_clear_bits(read_only))?;
        let write = bitmap_page(vmwrite_clear_bits())?;
        let (vmread, vmwrite) = (shim::page_phys(&read), shim::page_phys(&write));
        Ok(Self { _pages: [read, write], vmread, vmwrite, read_only })
    }
}

/// A page of ones but for the `clear` bits.
fn bitmap_page(clear: impl Iterator<Item = usize>) -> Result<Page> {
    let page = Page::alloc_page(GFP_KERNEL)?;
    let ones = [0xffu8; 256];
    for chunk in 0..kernel::page::PAGE_SIZE / ones.len() {
        // SAFETY: in-bounds bytes of our own, unmapped-elsewhere page.
        unsafe { page.write_raw(ones.as_ptr(), chunk * ones.len(), ones.len())? };
    }
    for n in clear {
        let mut byte = 0u8;
        // SAFETY: as above, one byte at a time.
        unsafe {
            page.read_raw(&mut byte, n / 8, 1)?;
            byte &= !(1 << (n % 8));
            page.write_raw(&byte, n / 8, 1)?;
        }
    }
    Ok(page)
}

/// A vCPU's shadow VMCS region (revision identifier with the shadow-VMCS indicator, bit 31).
pub(crate) struct ShadowVmcs {
    _page: Page,
    pub(crate) phys: u64,
}

impl ShadowVmcs {
    pub(crate) fn new(revision: u32) -> Result<Self> {
        let page = Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?;
        let rev = (revision | 1 << 31).to_le_bytes();
        // SAFETY: 4 bytes into our own, unmapped-elsewhere page.
        unsafe { page.write_raw(rev.as_ptr(), 0, rev.len())? };
        Ok(Self { phys: shim::page_phys(&page), _page: page })
    }
}

/// Run `f` with the shadow VMCS current, then make VMCS01 current again.
///
/// # Safety
///
/// VMX root operation with IRQs off, VMCS01 (`vmcs01`) the current VMCS.
unsafe fn with_shadow(shadow: u64, initialized: &mut bool, vmcs01: u64, f: impl FnOnce()) -> bool {
    // SAFETY: per the caller; the shadow region is this vCPU's, active nowhere (it is
    // VMCLEARed after every use, so the CPU reads it from memory when L1 runs). A region
    // never used before is VMCLEARed once first, which initializes it (SDM 25.11.3).
    unsafe {
        if !*initialized {
            if vmx_ops::vmclear(shadow).is_err() {
                return false;
            }
            *initialized = true;
        }
        if vmx_ops::vmptrld(shadow).is_err() {
            return false;
        }
        f();
        let cleared = vmx_ops::vmclear(shadow).is_ok();
        vmx_ops::vmptrld(vmcs01).is_ok() && cleared
    }
}

/// Before L1 runs (VMCS01 current, inside the region): shadowing on while L1 has a current
/// VMCS12, with the shadowed components nvmx changed in VMCS12 since the last copy (all of
/// them for a VMCS12 just made current) copied in; off otherwise.
pub(crate) fn before_l1(cur: &LoadedVmcs<'_>, st: &mut VcpuState, vmcs01: u64) {
    let Some(shadow) = st.nested.shadow.region else { return };
    let Some(bitmaps) = crate::HOST.as_ref().and_then(|h| h.shadow_bitmaps.as_ref()) else { return };
    let mut want = st.nested.l1.vmxon.is_some() && st.nested.vmcs12.is_some();
    if want {
        if let Some(v) = st.nested.vmcs12.as_mut() {
            let shadowed = if bitmaps.read_only { &SHADOWED } else { &READ_WRITE_SET };
            let todo = v.take_for_shadow().and(shadowed);
            if todo != Components::NONE {
                let copy_in = || {
                    for i in todo.iter() {
                        // The shadow VMCS is current (with_shadow).
                        cur.set_raw(ALL_FIELDS[i].1, v.raw(i));
                    }
                };
                // SAFETY: called from the run loop with VMCS01 current, IRQs off.
                let copied = unsafe { with_shadow(shadow, &mut st.nested.shadow.initialized, vmcs01, copy_in) };
                // Failing that, shadowing stays off (every VMREAD/VMWRITE exits and is
                // emulated from VMCS12) and the components are copied the next time.
                if !copied {
                    v.keep_for_shadow(todo);
                    want = false;
                }
            }
        }
    }
    if want != st.nested.shadow.active {
        let sec = cur.r(f::SECONDARY_VM_EXEC_CONTROL);
        let sec = if want { sec | secondary::SHADOW_VMCS } else { sec & !secondary::SHADOW_VMCS };
        cur.set(f::VMREAD_BITMAP, bitmaps.vmread);
        cur.set(f::VMWRITE_BITMAP, bitmaps.vmwrite);
        cur.set(f::VMCS_LINK_POINTER, if want { shadow } else { u64::MAX });
        cur.set(f::SECONDARY_VM_EXEC_CONTROL, sec);
        st.nested.shadow.active = want;
    }
}

/// After an L1 exit, before nvmx acts on VMCS12 (VMCS01 current, inside the region): what
/// L1 wrote into the shadow VMCS goes into VMCS12 (the shadow holds it already, so it is no
/// change for [`before_l1`]; what nvmx itself changes next is).
pub(crate) fn pull(cur: &LoadedVmcs<'_>, st: &mut VcpuState, vmcs01: u64) {
    if st.nested.shadow.active {
        if let (Some(shadow), Some(v)) = (st.nested.shadow.region, st.nested.vmcs12.as_mut()) {
            let copy_out = || {
                for c in &READ_WRITE_COMPONENTS {
                    // The shadow VMCS is current (with_shadow).
                    v.set_raw(c.component, cur.read_raw(Field(c.encoding)));
                }
            };
            // SAFETY: called from exit handling with VMCS01 current, IRQs off.
            unsafe { with_shadow(shadow, &mut st.nested.shadow.initialized, vmcs01, copy_out) };
        }
    }
}
