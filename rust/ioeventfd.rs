// SPDX-License-Identifier: GPL-2.0
//! KVM_IOEVENTFD: the VM's ioeventfds, and guest writes that signal them instead of exiting
//! to userspace (the rules: rust/core/src/ioeventfd.rs). The table is under a spinlock:
//! the run loop looks writes up in its IRQs-off region, where signalling an eventfd is
//! allowed (eventfd_signal takes an IRQ-safe lock and only wakes waiters).

use core::ptr::NonNull;

use kernel::bindings;
use kernel::prelude::*;

use crate::vmx_core::ioeventfd::{self, Bus, Ioeventfd, Request};

/// A reference to an eventfd's context (`struct eventfd_ctx`), dropped with
/// eventfd_ctx_put.
pub(crate) struct EventFd(NonNull<bindings::eventfd_ctx>);

// SAFETY: an eventfd context is reference counted and its operations (signal, put) are
// thread-safe; the pointer is only used through them.
unsafe impl Send for EventFd {}
// SAFETY: as above.
unsafe impl Sync for EventFd {}

impl EventFd {
    /// The eventfd behind file descriptor `fd` of the calling task: EBADF for no file,
    /// EINVAL for a file that is not an eventfd (eventfd_ctx_fdget's errors, as KVM returns
    /// them).
    pub(crate) fn get(fd: i32) -> Result<Self> {
        // SAFETY: any fd value is accepted; the result is a new reference or an ERR_PTR.
        let ctx = kernel::error::from_err_ptr(unsafe { bindings::eventfd_ctx_fdget(fd) })?;
        NonNull::new(ctx).map(EventFd).ok_or(EBADF)
    }

    /// Add 1 to the counter and wake its waiters. Callable with IRQs off.
    pub(crate) fn signal(&self) {
        // SAFETY: `self.0` is a live reference (taken in `get`, put in `drop`).
        unsafe { bindings::eventfd_signal_mask(self.0.as_ptr(), 0) }
    }

    /// The `eventfd_ctx`, to compare with another reference's.
    pub(crate) fn as_ptr(&self) -> *const core::ffi::c_void {
        self.0.as_ptr().cast()
    }

    /// Whether two references are to the same eventfd.
    pub(crate) fn same(&self, other: &EventFd) -> bool {
        self.0 == other.0
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: the reference `get` took, given back once.
        unsafe { bindings::eventfd_ctx_put(self.0.as_ptr()) }
    }
}

/// The VM's ioeventfds.
pub(crate) struct Ioeventfds {
    list: KVec<(Ioeventfd, EventFd)>,
}

impl Ioeventfds {
    pub(crate) const fn new() -> Self {
        Ioeventfds { list: KVec::new() }
    }

    /// Add `p` signalling `fd`, KVM's errors: EEXIST if it collides with one registered,
    /// ENOSPC when its bus is full. `Err(None)`: no room in the list, which the caller grows
    /// outside the lock ([`Self::grow`]) before it tries again. On failure `fd` comes back,
    /// to be dropped outside the lock.
    pub(crate) fn add(&mut self, p: Ioeventfd, fd: EventFd) -> core::result::Result<(), (Option<Error>, EventFd)> {
        if self.list.iter().any(|(q, _)| q.collides(&p)) {
            return Err((Some(EEXIST), fd));
        }
        if self.list.iter().filter(|(q, _)| q.bus == p.bus).count() >= ioeventfd::MAX_PER_BUS {
            return Err((Some(ENOSPC), fd));
        }
        self.list.push_within_capacity((p, fd)).map_err(|e| (None, e.0 .1))
    }

    /// The list's length, to size a bigger one ([`Self::grow`]).
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// Move the registrations into `bigger` (allocated outside the lock) if it has more
    /// room; the old list comes back in `bigger`, to be freed outside the lock.
    pub(crate) fn grow(&mut self, bigger: &mut KVec<(Ioeventfd, EventFd)>) {
        if bigger.capacity() > self.list.capacity() {
            for e in self.list.drain_all() {
                // Cannot fail: `bigger` has room for all of them.
                let _ = bigger.push_within_capacity(e);
            }
            core::mem::swap(&mut self.list, bigger);
        }
    }

    /// Remove the registration `r` names for `fd` (ENOENT if none); it comes back to be
    /// dropped outside the lock.
    pub(crate) fn remove(&mut self, r: &Request, fd: &EventFd) -> Result<(Ioeventfd, EventFd)> {
        let i = self.list.iter().position(|(q, e)| e.same(fd) && q.deassigned_by(r)).ok_or(ENOENT)?;
        self.list.remove(i).map_err(|_| ENOENT)
    }

    /// A guest write: signal the ioeventfd it hits, if one does.
    pub(crate) fn write(&self, bus: Bus, addr: u64, len: u32, value: u64) -> bool {
        match self.list.iter().find(|(p, _)| p.hit(bus, addr, len, value)) {
            Some((_, fd)) => {
                fd.signal();
                true
            }
            None => false,
        }
    }
}
