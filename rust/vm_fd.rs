// SPDX-License-Identifier: GPL-2.0
//! The VM file's ioctls (one arm per ioctl; the KVM ABI's structs are converted here) and
//! KVM_CHECK_EXTENSION.

use core::ffi::c_void;

use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow};
use kernel::types::ForeignOwnable;

use crate::uapi::{self, cap, KvmEnableCap, KvmUserspaceMemoryRegion, KvmUserspaceMemoryRegion2};
use crate::vcpu::Vcpu;
use crate::vm::{read_user, Vm, MAX_VCPUS, SUPPORTED_QUIRKS};
use crate::vmx_core::memslot;
use crate::vmx_core::vm_clock::{self, ClockData};
use kernel::uaccess::{UserPtr, UserSlice};

impl Vm {
    fn ioctl(this: ArcBorrow<'_, Vm>, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            uapi::KVM_CHECK_EXTENSION => Ok(check_extension(arg)),
            uapi::KVM_SET_USER_MEMORY_REGION => {
                let r: KvmUserspaceMemoryRegion = read_user(arg)?;
                this.set_memory_region(&r.into())
            }
            // No guest_memfd: the v2 fields beyond v1 only matter with KVM_MEM_GUEST_MEMFD,
            // which memslot::plan refuses like every other flag.
            uapi::KVM_SET_USER_MEMORY_REGION2 => {
                let r: KvmUserspaceMemoryRegion2 = read_user(arg)?;
                let v1 = KvmUserspaceMemoryRegion {
                    slot: r.slot,
                    flags: r.flags,
                    guest_phys_addr: r.guest_phys_addr,
                    memory_size: r.memory_size,
                    userspace_addr: r.userspace_addr,
                };
                this.set_memory_region(&v1.into())
            }
            uapi::KVM_CREATE_VCPU => Vcpu::create(this.into(), arg),
            uapi::KVM_GET_TSC_KHZ => crate::vcpu_fd::tsc_khz(),
            // The size of KVM's shadow-MMU page cache. nvmx has no shadow MMU (its EPT has
            // the tables it needs), so the value changes nothing; KVM's bounds still apply.
            uapi::KVM_SET_NR_MMU_PAGES if arg < uapi::KVM_MIN_ALLOC_MMU_PAGES => Err(EINVAL),
            uapi::KVM_SET_NR_MMU_PAGES => Ok(0),
            uapi::KVM_GET_DIRTY_LOG => {
                let d: uapi::KvmDirtyLog = read_user(arg)?;
                this.get_dirty_log(&d)
            }
            uapi::KVM_CLEAR_DIRTY_LOG => {
                let d: uapi::KvmClearDirtyLog = read_user(arg)?;
                this.clear_dirty_log(&d)
            }
            uapi::KVM_SIGNAL_MSI => {
                let msi: uapi::KvmMsi = read_user(arg)?;
                // KVM's rules: an in-kernel APIC, no flag but VALID_DEVID.
                if !this.has_lapic() || msi.flags & !uapi::KVM_MSI_VALID_DEVID != 0 {
                    return Err(EINVAL);
                }
                // KVM returns the number of APICs that took it, 0 if it matched only ones
                // that refused it, and -1 (EPERM) if it matched none.
                let Some(m) = crate::vmx_core::lapic::msi(msi.address_lo, msi.data) else { return Ok(0) };
                let boxes = this.mailboxes.lock();
                crate::apic::deliver_msi(&boxes, m).map(|n| n as isize).ok_or(EPERM)
            }
            uapi::KVM_SET_TSS_ADDR => this.set_tss_addr(arg),
            uapi::KVM_SET_GSI_ROUTING => this.set_gsi_routing(arg),
            uapi::KVM_IRQFD => {
                let r: uapi::KvmIrqfd = read_user(arg)?;
                this.irqfd(r.fd as i32, r.gsi, r.flags)
            }
            uapi::KVM_IOEVENTFD => {
                let r: uapi::KvmIoeventfd = read_user(arg)?;
                this.ioeventfd(&r)
            }
            uapi::KVM_IRQ_LINE => {
                let l: uapi::KvmIrqLevel = read_user(arg)?;
                this.irq_line(l.irq(), l.level)
            }
            uapi::KVM_SET_IDENTITY_MAP_ADDR => this.set_identity_map_addr(arg),
            uapi::KVM_SET_BOOT_CPU_ID => this.set_boot_cpu_id(arg),
            uapi::KVM_GET_CLOCK => {
                let d = this.get_clock();
                let out = uapi::KvmClockData { clock: d.clock, flags: d.flags, realtime: d.realtime, host_tsc: d.host_tsc, ..Default::default() };
                UserSlice::new(UserPtr::from_addr(arg), core::mem::size_of::<uapi::KvmClockData>()).writer().write(&out)?;
                Ok(0)
            }
            uapi::KVM_SET_CLOCK => {
                let d: uapi::KvmClockData = read_user(arg)?;
                this.set_clock(&ClockData { clock: d.clock, flags: d.flags, realtime: d.realtime, host_tsc: d.host_tsc })
            }
            uapi::KVM_ENABLE_CAP => {
                let c: KvmEnableCap = read_user(arg)?;
                this.enable_cap(&c)
            }
            _ => Err(ENOTTY),
        }
    }

}

pub(crate) fn check_extension(capability: usize) -> isize {
    match capability {
        cap::USER_MEMORY | cap::USER_MEMORY2 | cap::IMMEDIATE_EXIT | cap::EXT_CPUID | cap::MP_STATE
        | cap::GET_TSC_KHZ | cap::ENABLE_CAP_VM | cap::SPLIT_IRQCHIP | cap::SIGNAL_MSI | cap::DEBUGREGS
        | cap::IRQCHIP | cap::SET_TSS_ADDR | cap::SET_IDENTITY_MAP_ADDR | cap::DESTROY_MEMORY_REGION_WORKS
        | cap::JOIN_MEMORY_REGIONS_WORKS | cap::INTERNAL_ERROR_DATA | cap::VCPU_EVENTS | cap::XSAVE | cap::XCRS
        | cap::IOEVENTFD | cap::IOEVENTFD_NO_LENGTH | cap::IOEVENTFD_ANY_LENGTH | cap::IRQFD | cap::READONLY_MEM
        | cap::USER_NMI | cap::EXCEPTION_PAYLOAD | cap::X86_TRIPLE_FAULT_EVENT | cap::SET_BOOT_CPU_ID
        | cap::MSR_PLATFORM_INFO => 1,
        cap::SYNC_REGS => uapi::sync::VALID_FIELDS as isize,
        cap::ADJUST_CLOCK => vm_clock::REPORTED_FLAGS as isize,
        // KVM's rule: the area for every component offered, at least struct kvm_xsave.
        cap::XSAVE2 => crate::HOST.as_ref().map_or(0, |h| {
            (h.xsave.required_size(h.xsave.supported, false) as usize).max(crate::vmx_core::xsave::KVM_XSAVE_BYTES) as isize
        }),
        cap::NESTED_STATE => crate::nested_save::max_size() as isize,
        cap::IRQ_ROUTING => crate::vmx_core::irq_routing::MAX_ROUTES as isize,
        cap::MCE => crate::vmx_core::mce::MAX_BANKS as isize,
        cap::SET_GUEST_DEBUG | cap::X86_ROBUST_SINGLESTEP | cap::TSC_DEADLINE_TIMER => 1,
        cap::SET_GUEST_DEBUG2 => crate::vmx_core::guest_debug::SUPPORTED as isize,
        cap::NR_MEMSLOTS => memslot::USER_MEM_SLOTS as isize,
        cap::DISABLE_QUIRKS2 => SUPPORTED_QUIRKS as isize,
        cap::MANUAL_DIRTY_LOG_PROTECT2 => uapi::KVM_DIRTY_LOG_MANUAL_CAPS as isize,
        cap::GET_MSR_FEATURES => crate::nested::available() as isize,
        // KVM_CAP_NR_VCPUS is the recommended maximum; nvmx has no other number to offer.
        cap::NR_VCPUS | cap::MAX_VCPUS | cap::MAX_VCPU_ID => MAX_VCPUS as isize,
        _ => 0,
    }
}

/// The VM file's `unlocked_ioctl` (called from rust/shim.c).
///
/// # Safety
///
/// `vm` is the file's private data: the pointer made with `into_foreign` from an `Arc<Vm>`
/// when the VM file was created, and the file is open (its release has not run).
#[no_mangle]
unsafe extern "C" fn nvmx_vm_ioctl(vm: *mut c_void, cmd: u32, arg: usize) -> isize {
    // SAFETY: by this function's contract, an `Arc<Vm>` alive until release, which cannot
    // run while an ioctl holds the file.
    let this = unsafe { <Arc<Vm> as ForeignOwnable>::borrow(vm) };
    match Vm::ioctl(this, cmd, arg) {
        Ok(v) => v,
        Err(e) => e.to_errno() as isize,
    }
}

