// SPDX-License-Identifier: GPL-2.0
//! Guest memory pinned for a slot: the user pages behind it, held from slot creation until the
//! slot goes, and charged to the VMM's RLIMIT_MEMLOCK.

use core::ptr;

use kernel::bindings;
use kernel::prelude::*;

use crate::shim;
use crate::vmx_core::memslot;

/// User pages backing one slot, pinned from slot creation until the slot is deleted or the
/// VM is destroyed, so the guest keeps its memory after the VMM unmaps it and EPT faults
/// never sleep.
pub(crate) struct PinnedPages {
    pages: KVVec<*mut bindings::page>,
    /// The VMM's RLIMIT_MEMLOCK charge for them (dropped after the unpin).
    _charge: shim::LockedCharge,
}

// SAFETY: `struct page` pointers name global kernel objects; a pin is a reference count on the
// page, not tied to the pinning thread, and is dropped from any thread by `unpin_user_pages`.
unsafe impl Send for PinnedPages {}
// SAFETY: shared access only reads the pointers.
unsafe impl Sync for PinnedPages {}

impl PinnedPages {
    /// Pin `npages` pages of the caller's memory at `uaddr` for writing, charged to its
    /// RLIMIT_MEMLOCK. ENOMEM over the limit; EFAULT if any page cannot be pinned (nothing
    /// stays pinned or charged then).
    pub(crate) fn pin(uaddr: u64, npages: u64) -> Result<Self> {
        let n = usize::try_from(npages).map_err(|_| EINVAL)?;
        let charge = shim::LockedCharge::new(npages)?;
        let mut pages: KVVec<*mut bindings::page> =
            KVVec::from_elem(ptr::null_mut(), n, GFP_KERNEL_ACCOUNT)?;
        let mut done = 0usize;
        while done < n {
            let start = uaddr + (done as u64) * memslot::PAGE_SIZE;
            // SAFETY: `pages[done..n]` has room for `n - done` page pointers.
            let got = unsafe {
                shim::pin_user_pages(start, (n - done) as u64, pages.as_mut_ptr().add(done))
            };
            if got <= 0 {
                // SAFETY: the first `done` entries were pinned by us and are unpinned once.
                unsafe { shim::unpin_user_pages(pages.as_mut_ptr(), done as u64) };
                return Err(if got < 0 { Error::from_errno(got as i32) } else { EFAULT });
            }
            done += got as usize;
        }
        Ok(Self { pages, _charge: charge })
    }

    /// Host-physical address of page `index` of the slot.
    pub(crate) fn phys(&self, index: usize) -> Option<u64> {
        // SAFETY: every entry is a page we pinned and still hold.
        self.pages.get(index).map(|&p| unsafe { shim::raw_page_phys(p) })
    }
}

impl Drop for PinnedPages {
    fn drop(&mut self) {
        // SAFETY: all entries were pinned in `pin` and are unpinned exactly once here.
        unsafe { shim::unpin_user_pages(self.pages.as_mut_ptr(), self.pages.len() as u64) };
    }
}

