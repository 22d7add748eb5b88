// SPDX-License-Identifier: GPL-2.0
//! A vCPU: its fd with the `struct kvm_run` mmap, its architectural state as KVM's ABI
//! exposes it, and (rust/run.rs) the run loop.

use core::ffi::c_void;
use core::ptr;

use kernel::bindings;
use kernel::page::Page;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow, Mutex};
use kernel::types::ForeignOwnable;
use kernel::uaccess::{UserPtr, UserSlice};

use crate::shim;
use crate::uapi::{self, KvmDtable, KvmRegs, KvmSegment, KvmSregs};
use crate::vm::{read_user, Vm};

/// Pages of the vCPU mmap: `struct kvm_run`, then the PIO data page (KVM_PIO_PAGE_OFFSET 1).
pub(crate) const MMAP_PAGES: usize = 2;

/// An IN exit whose data userspace provides before the next KVM_RUN.
pub(crate) struct PendingIn {
    pub(crate) size: u8,
}

/// The vCPU's architectural state between runs (inside a run the VMCS holds it).
pub(crate) struct VcpuState {
    pub(crate) regs: KvmRegs,
    pub(crate) sregs: KvmSregs,
    pub(crate) pat: u64,
    /// IA32_SYSENTER_CS, _ESP, _EIP.
    pub(crate) sysenter: [u64; 3],
    pub(crate) interruptibility: u64,
    /// An event to inject at the next entry: (interruption information, error code).
    pub(crate) inject: Option<(u64, u64)>,
    pub(crate) pending_in: Option<PendingIn>,
}

impl VcpuState {
    /// The architectural state after RESET (SDM vol. 3A table 10-1), as KVM reports it before
    /// the first KVM_SET_*REGS: real mode at F000:FFF0.
    fn reset(id: u32) -> Self {
        let data = |selector: u16, base: u64| KvmSegment {
            base,
            limit: 0xffff,
            selector,
            type_: 3, // read/write data, accessed
            present: 1,
            s: 1,
            ..KvmSegment::default()
        };
        let cs = KvmSegment { type_: 0xb, ..data(0xf000, 0xffff_0000) };
        let sregs = KvmSregs {
            cs,
            ds: data(0, 0),
            es: data(0, 0),
            fs: data(0, 0),
            gs: data(0, 0),
            ss: data(0, 0),
            tr: KvmSegment { type_: 0xb, s: 0, ..data(0, 0) },
            ldt: KvmSegment { type_: 2, s: 0, ..data(0, 0) },
            gdt: KvmDtable { base: 0, limit: 0xffff, padding: [0; 3] },
            idt: KvmDtable { base: 0, limit: 0xffff, padding: [0; 3] },
            cr0: 0x6000_0010, // CD, NW, ET
            apic_base: 0xfee0_0000 | (1 << 11) | if id == 0 { 1 << 8 } else { 0 },
            ..KvmSregs::default()
        };
        let regs = KvmRegs { rip: 0xfff0, rflags: 0x2, ..KvmRegs::default() };
        Self {
            regs,
            sregs,
            pat: 0x0007_0406_0007_0406, // the power-up PAT (SDM 13.12.4)
            sysenter: [0; 3],
            interruptibility: 0,
            inject: None,
            pending_in: None,
        }
    }
}

/// A vCPU, owned by its fd.
#[pin_data]
pub(crate) struct Vcpu {
    pub(crate) vm: Arc<Vm>,
    pub(crate) id: u32,
    /// `struct kvm_run`, shared with userspace through the mmap.
    pub(crate) run_page: Page,
    /// PIO data (`kvm_run.io.data_offset` points here).
    pub(crate) pio_page: Page,
    /// The VMCS region (VMCLEARed whenever nvmx leaves VMX operation).
    _vmcs: Page,
    pub(crate) vmcs_phys: u64,
    #[pin]
    pub(crate) state: Mutex<VcpuState>,
}

impl Vcpu {
    /// `KVM_CREATE_VCPU`: vCPU `id` of `vm` and its fd.
    pub(crate) fn create(vm: Arc<Vm>, id: usize) -> Result<isize> {
        let id = u32::try_from(id).map_err(|_| EINVAL)?;
        vm.reserve_vcpu_id(id)?;
        let vm2 = vm.clone();
        let made = (|| -> Result<isize> {
            let run_page = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
            let revision = crate::HOST.as_ref().ok_or(ENODEV)?.caps.basic.revision_id();
            let vmcs = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
            let rev = revision.to_le_bytes();
            // SAFETY: 4 bytes from `rev` into our own, unmapped-elsewhere page.
            unsafe { vmcs.write_raw(rev.as_ptr(), 0, rev.len())? };
            let vmcs_phys = shim::page_phys(&vmcs);
            let pio_page = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
            let state = VcpuState::reset(id);
            let vcpu = Arc::pin_init(
                pin_init!(Vcpu {
                    vm: vm2,
                    id,
                    run_page,
                    pio_page,
                    _vmcs: vmcs,
                    vmcs_phys,
                    state <- new_mutex!(state),
                }),
                GFP_KERNEL,
            )?;
            let raw = vcpu.into_foreign();
            let fd = shim::vcpu_fd(raw);
            if fd < 0 {
                // SAFETY: `raw` is from `into_foreign` above and no file took it.
                drop(unsafe { Arc::<Vcpu>::from_foreign(raw) });
                return Err(Error::from_errno(fd));
            }
            Ok(fd as isize)
        })();
        if made.is_err() {
            vm.release_vcpu_id(id);
        }
        made
    }

    fn ioctl(this: ArcBorrow<'_, Vcpu>, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            uapi::KVM_RUN if arg != 0 => Err(EINVAL),
            uapi::KVM_RUN => crate::run::run(&this),
            uapi::KVM_GET_REGS => {
                let regs = this.state.lock().regs;
                write_user(arg, &regs)
            }
            uapi::KVM_SET_REGS => {
                let regs: KvmRegs = read_user(arg)?;
                this.state.lock().regs = regs;
                Ok(0)
            }
            uapi::KVM_GET_SREGS => {
                let sregs = this.state.lock().sregs;
                write_user(arg, &sregs)
            }
            uapi::KVM_SET_SREGS => {
                let sregs: KvmSregs = read_user(arg)?;
                this.state.lock().sregs = sregs;
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }

    fn mmap_page(&self, pgoff: usize) -> *mut bindings::page {
        match pgoff {
            0 => self.run_page.as_ptr(),
            1 => self.pio_page.as_ptr(),
            _ => ptr::null_mut(),
        }
    }
}

fn write_user<T: kernel::transmute::AsBytes>(arg: usize, value: &T) -> Result<isize> {
    UserSlice::new(UserPtr::from_addr(arg), core::mem::size_of::<T>()).writer().write(value)?;
    Ok(0)
}

#[no_mangle]
extern "C" fn nvmx_vcpu_ioctl(vcpu: *mut c_void, cmd: u32, arg: usize) -> isize {
    // SAFETY: the file's private data, an `Arc<Vcpu>` alive until release.
    let this = unsafe { <Arc<Vcpu> as ForeignOwnable>::borrow(vcpu) };
    match Vcpu::ioctl(this, cmd, arg) {
        Ok(v) => v,
        Err(e) => e.to_errno() as isize,
    }
}

#[no_mangle]
extern "C" fn nvmx_vcpu_release(vcpu: *mut c_void) {
    // SAFETY: the file's reference, given back exactly once at release.
    drop(unsafe { <Arc<Vcpu> as ForeignOwnable>::from_foreign(vcpu) });
}

#[no_mangle]
extern "C" fn nvmx_vcpu_mmap_page(vcpu: *mut c_void, pgoff: usize) -> *mut bindings::page {
    // SAFETY: the mapping holds a reference to the file, so its private data is alive.
    let this = unsafe { <Arc<Vcpu> as ForeignOwnable>::borrow(vcpu) };
    this.mmap_page(pgoff)
}
