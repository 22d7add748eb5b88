// SPDX-License-Identifier: GPL-2.0
//! KVM_IRQFD: an eventfd whose signal injects GSI `gsi` of a VM, as KVM_IRQ_LINE would,
//! without a round trip through the VMM (the split irqchip has only MSI routes, which KVM
//! injects from the eventfd's wake-up too). The wait-queue plumbing is rust/shim.c's
//! `nvmx_irqfd_*`; what a wake-up does is the owner's `nvmx_irqfd_fire` (rust/vm.rs).

use core::ffi::c_void;
use core::ptr::NonNull;

use kernel::prelude::*;

mod ffi {
    use core::ffi::c_void;

    extern "C" {
        pub(super) fn nvmx_irqfd_open(fd: i32, owner: *const c_void, gsi: u32, err: *mut i32) -> *mut c_void;
        pub(super) fn nvmx_irqfd_eventfd(irqfd: *mut c_void) -> *mut c_void;
        pub(super) fn nvmx_irqfd_arm(irqfd: *mut c_void, pending: *mut bool) -> i32;
        pub(super) fn nvmx_irqfd_destroy(irqfd: *mut c_void);
    }
}

/// One irqfd of a VM. Dropping it removes it from the eventfd's wait queue; no wake-up
/// runs after that.
pub(crate) struct Irqfd {
    raw: NonNull<c_void>,
    gsi: u32,
}

// SAFETY: the C object is only used through the shim's functions, which take the eventfd's
// locks themselves; nothing in it is tied to the creating thread.
unsafe impl Send for Irqfd {}

impl Irqfd {
    /// The irqfd for file descriptor `fd`, registered on its eventfd: each signal calls
    /// `nvmx_irqfd_fire(owner, gsi)` (from the wake-up in task context, else from a worker
    /// that dropping the irqfd waits for). Also whether the eventfd was already signalled (KVM
    /// then injects at once; the count stays). EBADF / EINVAL for a file that is not an
    /// eventfd, EBUSY for an eventfd that already has an irqfd (in any VM: KVM's irqfds are
    /// the eventfd's exclusive priority waiters, and so are nvmx's).
    ///
    /// # Safety
    ///
    /// `owner` is what `nvmx_irqfd_fire` expects, and stays so until the irqfd is dropped.
    pub(crate) unsafe fn new(owner: *const c_void, fd: i32, gsi: u32) -> Result<(Self, bool)> {
        let mut err = 0;
        // SAFETY: `owner` stays valid for the irqfd's life (this function's contract); `err`
        // is writable.
        let raw = unsafe { ffi::nvmx_irqfd_open(fd, owner, gsi, &mut err) };
        let raw = NonNull::new(raw).ok_or_else(|| Error::from_errno(err))?;
        let irqfd = Irqfd { raw, gsi };
        let mut pending = false;
        // SAFETY: a just-opened irqfd, armed once.
        let r = unsafe { ffi::nvmx_irqfd_arm(irqfd.raw.as_ptr(), &mut pending) };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
        Ok((irqfd, pending))
    }

    /// Whether this irqfd injects `gsi` on the eventfd `eventfd` (an `eventfd_ctx`).
    pub(crate) fn is(&self, eventfd: *const c_void, gsi: u32) -> bool {
        // SAFETY: a live irqfd.
        let mine = unsafe { ffi::nvmx_irqfd_eventfd(self.raw.as_ptr()) };
        core::ptr::eq(mine, eventfd) && self.gsi == gsi
    }
}

impl Drop for Irqfd {
    fn drop(&mut self) {
        // SAFETY: a live irqfd, destroyed once.
        unsafe { ffi::nvmx_irqfd_destroy(self.raw.as_ptr()) }
    }
}
