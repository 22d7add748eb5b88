// SPDX-License-Identifier: GPL-2.0
//! Safe wrappers over `rust/shim.c`: kernel facilities without a Rust binding in 7.3.

use core::ffi::c_void;

use kernel::bindings;

mod ffi {
    use core::ffi::c_void;

    extern "C" {
        pub(super) fn nvmx_on_each_cpu(func: unsafe extern "C" fn(*mut c_void), info: *mut c_void);
        pub(super) fn nvmx_this_cpu() -> u32;
        pub(super) fn nvmx_num_online_cpus() -> u32;
        pub(super) fn nvmx_cpus_read_lock();
        pub(super) fn nvmx_cpus_read_unlock();
        pub(super) fn nvmx_page_to_phys(page: *mut c_void) -> u64;
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
    unsafe { ffi::nvmx_page_to_phys(page.as_ptr().cast()) }
}

/// RDMSR that returns `None` instead of faulting on an absent MSR.
pub(crate) fn rdmsr_safe(msr: u32) -> Option<u64> {
    let mut val = 0u64;
    // SAFETY: `val` is a valid u64 to write; rdmsrq_safe handles the #GP of an absent MSR.
    let ret = unsafe { ffi::nvmx_rdmsr_safe(msr, &mut val) };
    (ret == 0).then_some(val)
}

mod ffi_fd {
    use core::ffi::c_void;

    extern "C" {
        pub(super) fn nvmx_vm_fd(vm: *mut c_void) -> i32;
        pub(super) fn nvmx_vcpu_fd(vcpu: *mut c_void) -> i32;
        pub(super) fn nvmx_pin_user_pages(start: u64, nr: u64, pages: *mut *mut c_void) -> i64;
        pub(super) fn nvmx_unpin_user_pages(pages: *mut *mut c_void, nr: u64);
        pub(super) fn nvmx_charge_locked(pages: u64, err: *mut i32) -> *mut c_void;
        pub(super) fn nvmx_uncharge_locked(mm: *mut c_void, pages: u64);
        pub(super) fn nvmx_page_address(page: *mut c_void) -> *mut c_void;
        pub(super) fn nvmx_task_size_max() -> u64;
    }
}

/// A new VM fd whose private data is `vm` (an `Arc<Vm>` from `into_foreign`); the file owns
/// that reference from now on. Returns the fd or a negative errno (then nothing was taken).
pub(crate) fn vm_fd(vm: *mut c_void) -> i32 {
    // SAFETY: the fops only use `vm` as the Arc it is, and release it once.
    unsafe { ffi_fd::nvmx_vm_fd(vm) }
}

/// Like [`vm_fd`], for a vCPU (`Arc<Vcpu>`).
pub(crate) fn vcpu_fd(vcpu: *mut c_void) -> i32 {
    // SAFETY: as for `vm_fd`.
    unsafe { ffi_fd::nvmx_vcpu_fd(vcpu) }
}

/// `pin_user_pages_fast(start, nr, FOLL_WRITE | FOLL_LONGTERM, pages)`: pages pinned (may be
/// fewer than `nr`) or a negative errno.
///
/// # Safety
///
/// `pages` must have room for `nr` pointers.
pub(crate) unsafe fn pin_user_pages(start: u64, nr: u64, pages: *mut *mut bindings::page) -> i64 {
    // SAFETY: guaranteed by the caller; `start` is a user address checked by GUP itself.
    unsafe { ffi_fd::nvmx_pin_user_pages(start, nr, pages.cast()) }
}

/// `unpin_user_pages`.
///
/// # Safety
///
/// The first `nr` entries of `pages` must be pages this code pinned and has not unpinned.
pub(crate) unsafe fn unpin_user_pages(pages: *mut *mut bindings::page, nr: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { ffi_fd::nvmx_unpin_user_pages(pages.cast(), nr) }
}

/// Physical address of a page we hold a reference or pin on.
///
/// # Safety
///
/// `page` must be a valid `struct page`.
pub(crate) unsafe fn raw_page_phys(page: *mut bindings::page) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe { ffi::nvmx_page_to_phys(page.cast()) }
}

/// Kernel virtual address of a page in the direct map (x86-64 has no highmem).
pub(crate) fn page_address(page: &kernel::page::Page) -> *mut u8 {
    // SAFETY: `page` is a valid page we own.
    unsafe { ffi_fd::nvmx_page_address(page.as_ptr().cast()) as *mut u8 }
}

/// `TASK_SIZE_MAX`: the end of the user address space.
pub(crate) fn task_size_max() -> u64 {
    // SAFETY: no preconditions.
    unsafe { ffi_fd::nvmx_task_size_max() }
}

mod ffi_run {
    use core::ffi::c_void;
    extern "C" {
        pub(super) fn nvmx_host_state_save(s: *mut super::HostState);
        pub(super) fn nvmx_host_state_restore(s: *const super::HostState);
        pub(super) fn nvmx_phys_to_virt(phys: u64) -> *mut core::ffi::c_void;
        pub(super) fn nvmx_kernel_fpu_begin();
        pub(super) fn nvmx_kernel_fpu_end();
        pub(super) fn nvmx_deliver_host_nmi();
        pub(super) fn nvmx_machine_check();
        pub(super) fn nvmx_printk_ratelimit() -> bool;
        pub(super) fn nvmx_current_euid() -> u32;
        pub(super) fn nvmx_capable_sys_admin() -> bool;
        pub(super) fn nvmx_mitigation_flags() -> u32;
        pub(super) fn nvmx_ioctl_lock_new() -> *mut c_void;
        pub(super) fn nvmx_ioctl_lock_free(l: *mut c_void);
        pub(super) fn nvmx_ioctl_lock_killable(l: *mut c_void) -> i32;
        pub(super) fn nvmx_ioctl_unlock(l: *mut c_void);
        pub(super) fn nvmx_need_resched() -> bool;
        pub(super) fn nvmx_cond_resched();
        pub(super) fn nvmx_tsc_khz() -> u32;
        pub(super) fn nvmx_kick_cpu(cpu: u32);
    }
}

/// Host state a VM exit clobbers; layout of `struct nvmx_host_state` in rust/shim.h.
#[repr(C, packed)]
#[derive(Default)]
pub(crate) struct HostState {
    pub(crate) ds: u16,
    pub(crate) es: u16,
    pub(crate) fs: u16,
    pub(crate) gs: u16,
    pub(crate) ldt: u16,
    pub(crate) gdt_limit: u16,
    pub(crate) gdt_base: u64,
    pad: u16,
    pub(crate) idt_limit: u16,
    pub(crate) idt_base: u64,
    pub(crate) fs_base: u64,
    pub(crate) gs_base: u64,
    pub(crate) kernel_gs_base: u64,
    pub(crate) tr_base: u64,
}

const _: () = assert!(core::mem::size_of::<HostState>() == 64);

impl HostState {
    /// Save this CPU's and task's segment and descriptor-table state. IRQs must be off
    /// until [`HostState::restore`].
    pub(crate) fn save() -> Self {
        let mut s = HostState::default();
        // SAFETY: `s` is a valid, writable nvmx_host_state.
        unsafe { ffi_run::nvmx_host_state_save(&mut s) };
        s
    }

    /// Restore what a VM exit clobbered (after VMXOFF, IRQs still off).
    pub(crate) fn restore(&self) {
        // SAFETY: `self` was filled by `save` on this CPU in this IRQs-off region.
        unsafe { ffi_run::nvmx_host_state_restore(self) };
    }
}

/// Kernel virtual address of physical `phys` in the direct map.
pub(crate) fn phys_to_virt(phys: u64) -> *mut u8 {
    // SAFETY: pure address arithmetic.
    unsafe { ffi_run::nvmx_phys_to_virt(phys) as *mut u8 }
}

/// A kernel-mode FPU section (kernel_fpu_begin/end) inside an IRQs-off region: while it
/// lives, the FPU, SSE and AVX registers and XCR0 are the module's to load a guest's state
/// into — the task's own state is in its fpstate and comes back on its return to
/// userspace, and no other kernel code uses the registers (IRQs are off, and the section
/// makes irq_fpu_usable() false for an NMI).
pub(crate) struct KernelFpu<'a>(core::marker::PhantomData<&'a kernel::interrupt::LocalInterruptDisabled>);

impl<'a> KernelFpu<'a> {
    /// Begin the section; IRQs stay off for as long as it lives (`_irqs_off`).
    pub(crate) fn begin(_irqs_off: &'a kernel::interrupt::LocalInterruptDisabled) -> Self {
        // SAFETY: IRQs are off (not nested in another section: nvmx opens one per region),
        // so kernel_fpu_begin_mask neither sleeps nor takes a lock; ended in `drop`.
        unsafe { ffi_run::nvmx_kernel_fpu_begin() };
        KernelFpu(core::marker::PhantomData)
    }
}

impl Drop for KernelFpu<'_> {
    fn drop(&mut self) {
        // SAFETY: the section `begin` opened, on this CPU with IRQs still off.
        unsafe { ffi_run::nvmx_kernel_fpu_end() };
    }
}

/// Run the host's NMI handler for an NMI a VM exit consumed (IRQs off, VMX off).
pub(crate) fn deliver_host_nmi() {
    // SAFETY: called outside VMX operation with IRQs off, as the NMI entry expects.
    unsafe { ffi_run::nvmx_deliver_host_nmi() }
}

/// A machine check that caused a VM exit: the host's machine-check handler (KVM's
/// kvm_machine_check); nothing without CONFIG_X86_MCE.
pub(crate) fn machine_check() {
    // SAFETY: called right after a VM exit with IRQs off, as do_machine_check expects.
    unsafe { ffi_run::nvmx_machine_check() }
}

/// Whether a message a guest or VMM triggered may be printed now: one rate limit (the
/// kernel's printk defaults, 10 per 5 s) for all of them. Callable with IRQs off.
pub(crate) fn printk_ratelimit() -> bool {
    // SAFETY: no preconditions; the ratelimit state is the C side's own.
    unsafe { ffi_run::nvmx_printk_ratelimit() }
}

/// The caller's effective UID (initial user namespace).
pub(crate) fn current_euid() -> u32 {
    // SAFETY: process context; reads the current task's credentials.
    unsafe { ffi_run::nvmx_current_euid() }
}

/// Whether the caller has CAP_SYS_ADMIN (as `capable()`: may audit).
pub(crate) fn capable_sys_admin() -> bool {
    // SAFETY: process context.
    unsafe { ffi_run::nvmx_capable_sys_admin() }
}

/// The host kernel's mitigation state for VMs.
pub(crate) fn mitigation_flags() -> crate::vmx_core::mitigation::HostFlags {
    // SAFETY: no preconditions (reads boot CPU flags and, if it exists, ARCH_CAPABILITIES).
    let f = unsafe { ffi_run::nvmx_mitigation_flags() };
    let bit = |n: u32| f & (1 << n) != 0;
    crate::vmx_core::mitigation::HostFlags {
        clear_cpu_buf_vm: bit(0),
        rsb_vmexit: bit(1),
        rsb_vmexit_lite: bit(2),
        l1tf: bit(3),
        skip_l1d_flush: bit(4),
        flush_l1d_msr: bit(5),
        ibpb: bit(6),
    }
}

/// The lock that serializes one vCPU's ioctls (KVM's vcpu->mutex), taken killably.
pub(crate) struct IoctlLock(core::ptr::NonNull<c_void>);

// SAFETY: the C mutex is meant to be shared between tasks.
unsafe impl Send for IoctlLock {}
// SAFETY: as above; every operation goes through the mutex.
unsafe impl Sync for IoctlLock {}

impl IoctlLock {
    pub(crate) fn new() -> kernel::error::Result<Self> {
        // SAFETY: no preconditions; NULL is allocation failure.
        let p = unsafe { ffi_run::nvmx_ioctl_lock_new() };
        core::ptr::NonNull::new(p).map(IoctlLock).ok_or(kernel::error::code::ENOMEM)
    }

    /// Wait for the lock; only a fatal signal ends the wait early (EINTR, as KVM's vCPU
    /// ioctls return when mutex_lock_killable fails).
    pub(crate) fn lock_killable(&self) -> kernel::error::Result<IoctlGuard<'_>> {
        // SAFETY: the lock is alive (owned by `self`); process context.
        match unsafe { ffi_run::nvmx_ioctl_lock_killable(self.0.as_ptr()) } {
            0 => Ok(IoctlGuard(self)),
            _ => Err(kernel::error::code::EINTR),
        }
    }
}

impl Drop for IoctlLock {
    fn drop(&mut self) {
        // SAFETY: allocated by nvmx_ioctl_lock_new, not held (a guard borrows `self`).
        unsafe { ffi_run::nvmx_ioctl_lock_free(self.0.as_ptr()) }
    }
}

/// A held [`IoctlLock`].
pub(crate) struct IoctlGuard<'a>(&'a IoctlLock);

impl Drop for IoctlGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the lock, taken by this task.
        unsafe { ffi_run::nvmx_ioctl_unlock(self.0 .0.as_ptr()) }
    }
}

/// `pr_err!` for messages a guest or VMM can trigger: rate-limited by [`printk_ratelimit`].
macro_rules! pr_err_ratelimited {
    ($($arg:tt)*) => {
        if $crate::shim::printk_ratelimit() {
            kernel::prelude::pr_err!($($arg)*);
        }
    };
}
pub(crate) use pr_err_ratelimited;

/// Whether the scheduler wants this CPU.
pub(crate) fn need_resched() -> bool {
    // SAFETY: no preconditions.
    unsafe { ffi_run::nvmx_need_resched() }
}

/// `cond_resched()`; process context, IRQs on.
pub(crate) fn cond_resched() {
    // SAFETY: called from process context with IRQs enabled.
    unsafe { ffi_run::nvmx_cond_resched() }
}

/// The host's CLOCK_BOOTTIME and CLOCK_REALTIME at one instant, with the TSC it was read
/// from when the kernel's clocksource is the TSC (the VM clock, rust/core/src/vm_clock.rs).
pub(crate) fn host_time() -> crate::vmx_core::vm_clock::HostTime {
    let mut snap = bindings::system_time_snapshot::default();
    // SAFETY: `snap` is a valid, writable snapshot; CLOCK_MONOTONIC is a clock the function
    // serves. Process context (the VM ioctls).
    unsafe { bindings::ktime_get_snapshot_id(bindings::CLOCK_MONOTONIC as i32, &mut snap) };
    // SAFETY: conversions of a monotonic time by the timekeeper's offsets; no preconditions.
    let (boot, real) = unsafe {
        (
            bindings::ktime_mono_to_any(snap.systime, bindings::tk_offsets_TK_OFFS_BOOT),
            bindings::ktime_mono_to_any(snap.systime, bindings::tk_offsets_TK_OFFS_REAL),
        )
    };
    crate::vmx_core::vm_clock::HostTime {
        boot_ns: boot as u64,
        real_ns: real as u64,
        tsc: (snap.cs_id == bindings::clocksource_ids_CSID_X86_TSC).then_some(snap.cycles),
    }
}

/// The host's TSC frequency in kHz (0 if the kernel has not calibrated it).
pub(crate) fn tsc_khz() -> u32 {
    // SAFETY: reads a kernel variable set at boot.
    unsafe { ffi_run::nvmx_tsc_khz() }
}

/// Send `cpu` a reschedule IPI so that a guest running there exits. IRQs may be off.
pub(crate) fn kick_cpu(cpu: u32) {
    // SAFETY: smp_send_reschedule accepts any online CPU from any context; a vCPU's running
    // CPU is online while it runs there.
    unsafe { ffi_run::nvmx_kick_cpu(cpu) }
}

/// `pages` pages charged to the current task's RLIMIT_MEMLOCK, released on drop.
pub(crate) struct LockedCharge {
    mm: *mut c_void,
    pages: u64,
}

// SAFETY: the charge holds a reference to an mm (mmgrab), usable from any task.
unsafe impl Send for LockedCharge {}
// SAFETY: shared access reads nothing.
unsafe impl Sync for LockedCharge {}

impl LockedCharge {
    /// Charge `pages` to the current mm: ENOMEM over RLIMIT_MEMLOCK (without CAP_IPC_LOCK).
    pub(crate) fn new(pages: u64) -> kernel::error::Result<Self> {
        let mut err = 0i32;
        // SAFETY: process context with a user mm (an ioctl of the VMM).
        let mm = unsafe { ffi_fd::nvmx_charge_locked(pages, &mut err) };
        if mm.is_null() {
            return Err(kernel::error::Error::from_errno(err));
        }
        Ok(Self { mm, pages })
    }
}

impl Drop for LockedCharge {
    fn drop(&mut self) {
        // SAFETY: `mm` and `pages` are exactly what `new` charged and grabbed.
        unsafe { ffi_fd::nvmx_uncharge_locked(self.mm, self.pages) };
    }
}

mod ffi_sysfs {
    #[repr(C)]
    pub(super) struct SysfsFacts {
        pub(super) nested: u32,
        pub(super) vmcs_revision: u32,
        pub(super) vmx_cpus: u32,
        pub(super) online_cpus: u32,
        pub(super) features: u32,
    }
    extern "C" {
        pub(super) fn nvmx_sysfs_create(facts: *const SysfsFacts) -> core::ffi::c_int;
        pub(super) fn nvmx_sysfs_remove();
    }
}

/// /sys/kernel/nvmx with the host-wide facts, removed on drop.
pub(crate) struct Sysfs;

impl Sysfs {
    pub(crate) fn create(nested: bool, vmcs_revision: u32, vmx_cpus: u32, online_cpus: u32, features: u32) -> kernel::error::Result<Self> {
        let facts = ffi_sysfs::SysfsFacts { nested: nested as u32, vmcs_revision, vmx_cpus, online_cpus, features };
        // SAFETY: `facts` is a valid struct for the call; the C side copies it.
        let err = unsafe { ffi_sysfs::nvmx_sysfs_create(&facts) };
        if err < 0 {
            return Err(kernel::error::Error::from_errno(err));
        }
        Ok(Sysfs)
    }
}

impl Drop for Sysfs {
    fn drop(&mut self) {
        // SAFETY: created in `create`; removed once.
        unsafe { ffi_sysfs::nvmx_sysfs_remove() };
    }
}
