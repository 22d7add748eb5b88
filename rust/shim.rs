// SPDX-License-Identifier: GPL-2.0
//! Safe wrappers over `rust/shim.c`: kernel facilities without a Rust binding in 7.3.

use core::ffi::c_void;

mod ffi {
    use core::ffi::c_void;
    use kernel::bindings;

    extern "C" {
        pub(super) fn nvmx_on_each_cpu(func: unsafe extern "C" fn(*mut c_void), info: *mut c_void);
        pub(super) fn nvmx_this_cpu() -> u32;
        pub(super) fn nvmx_cpu_online(cpu: u32) -> bool;
        pub(super) fn nvmx_num_online_cpus() -> u32;
        pub(super) fn nvmx_cpus_read_lock();
        pub(super) fn nvmx_cpus_read_unlock();
        pub(super) fn nvmx_page_to_phys(page: *mut bindings::page) -> u64;
        pub(super) fn nvmx_rdmsr_safe(msr: u32, val: *mut u64) -> i32;
    }
}

/// Runs `func(info)` on every online CPU with interrupts disabled, including this one, and
/// waits until all have finished.
///
/// # Safety
///
/// `func` must be safe to call in IPI context (IRQs off, must not sleep) with `info`, and
/// `info` must stay valid until this returns (it does: `on_each_cpu(.., wait = 1)`).
pub(crate) unsafe fn on_each_cpu(func: unsafe extern "C" fn(*mut c_void), info: *mut c_void) {
    // SAFETY: the caller guarantees `func` and `info` as documented above.
    unsafe { ffi::nvmx_on_each_cpu(func, info) }
}

/// The id of the CPU this runs on. Only meaningful where preemption is disabled (IPI
/// callbacks, IRQs-off regions).
pub(crate) fn this_cpu() -> u32 {
    // SAFETY: no preconditions; reads a per-CPU variable.
    unsafe { ffi::nvmx_this_cpu() }
}

/// Whether `cpu` is online.
pub(crate) fn cpu_online(cpu: u32) -> bool {
    // SAFETY: `cpu_online` accepts any id; ids >= nr_cpu_ids read as offline.
    cpu < kernel::cpu::nr_cpu_ids() && unsafe { ffi::nvmx_cpu_online(cpu) }
}

/// Number of online CPUs.
pub(crate) fn num_online_cpus() -> u32 {
    // SAFETY: no preconditions.
    unsafe { ffi::nvmx_num_online_cpus() }
}

/// Holds the CPU-hotplug read lock: the set of online CPUs does not change while it lives.
pub(crate) struct CpusReadGuard(());

impl CpusReadGuard {
    /// Takes `cpus_read_lock()`; may sleep.
    pub(crate) fn lock() -> Self {
        // SAFETY: called from process context; released in `drop`.
        unsafe { ffi::nvmx_cpus_read_lock() };
        CpusReadGuard(())
    }
}

impl Drop for CpusReadGuard {
    fn drop(&mut self) {
        // SAFETY: taken in `lock`, released exactly once here.
        unsafe { ffi::nvmx_cpus_read_unlock() };
    }
}

/// Physical address of a page we own.
pub(crate) fn page_phys(page: &kernel::page::Page) -> u64 {
    // SAFETY: `page.as_ptr()` is a valid `struct page` for as long as `page` lives.
    unsafe { ffi::nvmx_page_to_phys(page.as_ptr()) }
}

/// RDMSR that returns `None` instead of faulting on an absent MSR.
pub(crate) fn rdmsr_safe(msr: u32) -> Option<u64> {
    let mut val = 0u64;
    // SAFETY: `val` is a valid u64 to write; rdmsrq_safe handles the #GP of an absent MSR.
    let ret = unsafe { ffi::nvmx_rdmsr_safe(msr, &mut val) };
    (ret == 0).then_some(val)
}
