// SPDX-License-Identifier: GPL-2.0
//! The vCPU file: KVM_CREATE_VCPU's fd, its `struct kvm_run` mmap and its ioctls (one arm
//! per ioctl: the KVM ABI's structs are converted here, rust/kvm_state.rs), KVM_RUN handed
//! to the run loop (rust/run.rs).

use core::ffi::c_void;
use core::ptr;

use kernel::bindings;
use kernel::page::Page;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow};
use kernel::types::ForeignOwnable;
use kernel::uaccess::{UserPtr, UserSlice};

use crate::apic::Mailbox;
use crate::kvm_state;
use crate::nested;
use crate::shim;
use crate::uapi::{self, mp_state, KvmCpuidEntry2, KvmDebugregs, KvmFpu, KvmMsrEntry, KvmRegs, KvmSregs};
use crate::vcpu::{Vcpu, Vpid};
use crate::vcpu_state::VcpuState;
use crate::vm::{read_user, Vm};
use crate::vmx_core::cpuid::{self, CpuidEntry, GuestFeatures};
use crate::vmx_core::debug_regs::DebugRegs;
use crate::vmx_core::mce::{self, Mce};
use crate::vmx_core::mtrr;
use crate::vmx_core::{vcpu_events, xsave};
use crate::vmx_core::guest_msr::{self, Msr, Writer};
use crate::HOST;

/// The next vCPU's status key.
static NEXT_STATUS_KEY: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

impl Vcpu {
    /// `KVM_CREATE_VCPU`: vCPU `id` of `vm` and its fd.
    pub(crate) fn create(vm: Arc<Vm>, id: usize) -> Result<isize> {
        let id = u32::try_from(id).map_err(|_| EINVAL)?;
        vm.reserve_vcpu_id(id)?;
        let vm2 = vm.clone();
        let status_key = NEXT_STATUS_KEY.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let made = (|| -> Result<isize> {
            let run_page = Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?;
            let revision = crate::HOST.as_ref().ok_or(ENODEV)?.caps.basic.revision_id();
            let vmcs = Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?;
            let rev = revision.to_le_bytes();
            // SAFETY: 4 bytes from `rev` into our own, unmapped-elsewhere page.
            unsafe { vmcs.write_raw(rev.as_ptr(), 0, rev.len())? };
            let vmcs_phys = shim::page_phys(&vmcs);
            let vmcs02 = Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?;
            // SAFETY: as above.
            unsafe { vmcs02.write_raw(rev.as_ptr(), 0, rev.len())? };
            let vmcs02_phys = shim::page_phys(&vmcs02);
            let pio_page = Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?;
            let has_lapic = vm2.has_lapic();
            let quirks = !vm2.state.lock().disabled_quirks;
            let stuff = quirks & crate::nested_msrs::QUIRK_STUFF_FEATURE_MSRS != 0;
            let lint0 = quirks & crate::nested_msrs::QUIRK_LINT0_REENABLED != 0;
            let bsp = id == vm2.bsp_vcpu_id();
            let mut state = VcpuState::reset(id, bsp, has_lapic, stuff, lint0, crate::vcpu_state::new_fpu()?);
            let shadow_vmcs = match crate::HOST.as_ref().and_then(|h| h.shadow_bitmaps.as_ref()) {
                Some(_) => Some(crate::shadow_vmcs::ShadowVmcs::new(revision)?),
                None => None,
            };
            state.nested.shadow.region = shadow_vmcs.as_ref().map(|s| s.phys);
            state.tsc_offset = 0u64.wrapping_sub(vm2.tsc_origin);
            let ioctl_lock = shim::IoctlLock::new()?;
            let mailbox = Arc::pin_init(Mailbox::new(id), GFP_KERNEL_ACCOUNT)?;
            if let Some(a) = &state.lapic {
                mailbox.mirror(a);
            }
            // Every vCPU's mailbox is the VM's way to reach it (IPIs, slot changes).
            vm2.add_mailbox(mailbox.clone())?;
            let vcpu = Arc::pin_init(
                pin_init!(Vcpu {
                    vm: vm2,
                    id,
                    run_page,
                    pio_page,
                    _vmcs: vmcs,
                    vmcs_phys,
                    _vmcs02: vmcs02,
                    vmcs02_phys,
                    _shadow_vmcs: shadow_vmcs,
                    mailbox,
                    vpid: Vpid::alloc(crate::HOST.as_ref().is_some_and(|h| h.caps.vpid())),
                    status_key,
                    ioctl_lock,
                    state <- new_mutex!(state),
                }),
                GFP_KERNEL_ACCOUNT,
            )?;
            crate::status::add(status_key, vm.id, id, vm.pid)?;
            vcpu.publish_status();
            let raw = vcpu.into_foreign();
            let fd = shim::vcpu_fd(raw);
            if fd < 0 {
                crate::status::remove(status_key, &Default::default());
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

    /// Publish the vCPU's nested state into the host-wide status list, if it changed.
    /// After every KVM_RUN, whatever it returned: the fields of `struct kvm_run` a VMM reads
    /// after each exit (and writes back with KVM_SET_SREGS: a stale `apic_base` of 0 would
    /// disable the local APIC), as KVM's post_kvm_run_save fills them.
    fn publish_run_summary(&self) {
        let st = self.state.lock();
        let a = &st.arch;
        let ready = st.ready_for_interrupt_injection();
        self.run_page().set_vcpu_summary(a.rflags & (1 << 9) != 0, ready, st.cr8(), st.apic_base, st.nested.guest_mode);
    }

    /// The vCPU's `struct kvm_run` page.
    fn run_page(&self) -> uapi::KvmRunPage {
        // SAFETY: the vCPU's own kvm_run page, allocated with it and freed with it.
        unsafe { uapi::KvmRunPage::new(shim::page_address(&self.run_page)) }
    }

    /// KVM_GET_SREGS' state (taken under the lock, copied out after it).
    fn sregs(&self) -> KvmSregs {
        let st = self.state.lock();
        kvm_state::sregs_to_kvm(&st.arch, st.cr8(), st.apic_base)
    }

    /// The state the vCPU events describe: `st`'s, the VM's event capabilities (`caps`, from
    /// Vm::event_caps, taken before `st` was locked) and the mailbox's NMI and INIT.
    fn event_state(&self, st: &VcpuState, caps: (bool, bool)) -> vcpu_events::EventState {
        let mut s = st.event_state(caps.0, caps.1);
        s.nmi_pending |= self.mailbox.nmi_posted();
        s.init_pending = self.mailbox.init_pending();
        s
    }

    /// KVM_GET_VCPU_EVENTS' state.
    fn vcpu_events(&self) -> uapi::KvmVcpuEvents {
        let caps = self.vm.event_caps();
        let s = self.event_state(&self.state.lock(), caps);
        kvm_state::events_to_kvm(&vcpu_events::get(&s))
    }

    /// KVM_SET_VCPU_EVENTS: EINVAL, and nothing changed, for what KVM refuses.
    fn set_vcpu_events(&self, e: &uapi::KvmVcpuEvents) -> Result {
        let caps = self.vm.event_caps();
        let mut st = self.state.lock();
        let s = self.event_state(&st, caps);
        let n = vcpu_events::set(&s, &kvm_state::events_from_kvm(e)).map_err(|_| EINVAL)?;
        self.mailbox.take_nmi();
        self.mailbox.set_init_pending(n.init_pending);
        st.set_event_state(&n);
        Ok(())
    }

    /// KVM_CAP_SYNC_REGS at the start of KVM_RUN, as KVM's sync_regs: EINVAL for a bit of
    /// `kvm_valid_regs` or `kvm_dirty_regs` outside KVM_SYNC_X86_VALID_FIELDS; then each
    /// dirty part is set as its ioctl would (KVM_SET_REGS, _SREGS, _VCPU_EVENTS, from one
    /// copy of the page) and its dirty bit cleared; a part that ioctl refuses is EINVAL,
    /// and the parts after it stay dirty.
    fn sync_regs_from_user(&self, run: uapi::KvmRunPage) -> Result {
        let (valid, dirty) = run.sync_masks();
        if (valid | dirty) & !uapi::sync::VALID_FIELDS != 0 {
            return Err(EINVAL);
        }
        if dirty & uapi::sync::REGS != 0 {
            kvm_state::regs_from_kvm(&mut self.state.lock().arch, &run.synced_regs());
            run.clear_dirty_regs(uapi::sync::REGS);
        }
        if dirty & uapi::sync::SREGS != 0 {
            self.state.lock().set_sregs(&run.synced_sregs())?;
            run.clear_dirty_regs(uapi::sync::SREGS);
        }
        if dirty & uapi::sync::EVENTS != 0 {
            self.set_vcpu_events(&run.synced_events())?;
            run.clear_dirty_regs(uapi::sync::EVENTS);
        }
        Ok(())
    }

    /// KVM_CAP_SYNC_REGS at the end of KVM_RUN, whatever it returned (KVM's store_regs):
    /// the parts `kvm_valid_regs` asks for, as their KVM_GET ioctls give them.
    fn sync_regs_to_user(&self, run: uapi::KvmRunPage) {
        let (valid, _) = run.sync_masks();
        if valid & uapi::sync::REGS != 0 {
            run.set_synced_regs(&kvm_state::regs_to_kvm(&self.state.lock().arch));
        }
        if valid & uapi::sync::SREGS != 0 {
            run.set_synced_sregs(&self.sregs());
        }
        if valid & uapi::sync::EVENTS != 0 {
            run.set_synced_events(&self.vcpu_events());
        }
    }

    fn publish_status(&self) {
        let mut st = self.state.lock();
        let now = crate::status::Published {
            flags: (if st.features.vmx { crate::status::flags::VMX_EXPOSED } else { 0 })
                | (if st.nested.l1.vmxon.is_some() { crate::status::flags::VMXON } else { 0 })
                | (if st.nested.guest_mode { crate::status::flags::GUEST_MODE } else { 0 }),
            failure: st.nested.last_failure,
        };
        if st.published != Some(now) {
            st.published = Some(now);
            drop(st);
            crate::status::publish(self.status_key, now);
        }
    }

    fn ioctl(this: ArcBorrow<'_, Vcpu>, cmd: u32, arg: usize) -> Result<isize> {
        let _serialized = this.ioctl_lock.lock_killable()?;
        match cmd {
            uapi::KVM_RUN if arg != 0 => Err(EINVAL),
            uapi::KVM_RUN => {
                let run = this.run_page();
                let ran = this.sync_regs_from_user(run).and_then(|()| crate::run::run(&this));
                this.publish_status();
                this.publish_run_summary();
                this.sync_regs_to_user(run);
                ran
            }
            uapi::NVMX_GET_VCPU_STATS => {
                let stats = this.state.lock().stats;
                write_user(arg, &stats)
            }
            uapi::NVMX_GET_ENTRY_FAILURE => {
                let failure = crate::status::failure_uapi(this.state.lock().nested.last_failure);
                write_user(arg, &failure)
            }
            uapi::KVM_GET_REGS => {
                let regs = kvm_state::regs_to_kvm(&this.state.lock().arch);
                write_user(arg, &regs)
            }
            uapi::KVM_SET_REGS => {
                let regs: KvmRegs = read_user(arg)?;
                kvm_state::regs_from_kvm(&mut this.state.lock().arch, &regs);
                Ok(0)
            }
            uapi::KVM_GET_SREGS => write_user(arg, &this.sregs()),
            uapi::KVM_SET_SREGS => {
                let sregs: KvmSregs = read_user(arg)?;
                this.state.lock().set_sregs(&sregs)?;
                Ok(0)
            }
            uapi::KVM_SET_CPUID2 => {
                let set = set_cpuid2(&mut this.state.lock(), arg);
                this.publish_status();
                set
            }
            uapi::KVM_GET_CPUID2 => get_cpuid2(&this.state.lock(), arg),
            uapi::KVM_GET_MSRS => msr_io(&this.vm, &mut this.state.lock(), arg, false),
            uapi::KVM_SET_MSRS => msr_io(&this.vm, &mut this.state.lock(), arg, true),
            uapi::KVM_GET_TSC_KHZ => tsc_khz(),
            uapi::KVM_GET_MP_STATE => write_user(arg, &this.state.lock().mp_state),
            // Without an in-kernel APIC only RUNNABLE exists (KVM: no INIT/SIPI, HLT exits to
            // userspace). With one: RUNNABLE, UNINITIALIZED, INIT_RECEIVED, HALTED.
            uapi::KVM_SET_MP_STATE => {
                let m: u32 = read_user(arg)?;
                let mut st = this.state.lock();
                match m {
                    mp_state::RUNNABLE => {}
                    mp_state::UNINITIALIZED | mp_state::INIT_RECEIVED | mp_state::HALTED
                        if st.lapic.is_some() => {}
                    _ => return Err(EINVAL),
                }
                st.mp_state = m;
                Ok(0)
            }
            // The in-kernel local APIC's registers (EINVAL without one, as KVM).
            uapi::KVM_GET_LAPIC => {
                let st = this.state.lock();
                let a = st.lapic.as_ref().ok_or(EINVAL)?;
                let khz = HOST.as_ref().map_or(1, |h| h.tsc_khz as u64);
                let regs = a.state(crate::vmx_ops::rdtsc().wrapping_add(st.tsc_offset), khz);
                write_user(arg, &regs)
            }
            uapi::KVM_SET_LAPIC => {
                let regs: uapi::KvmLapicState = read_user(arg)?;
                let mut st = this.state.lock();
                let now = crate::vmx_ops::rdtsc().wrapping_add(st.tsc_offset);
                let khz = HOST.as_ref().map_or(1, |h| h.tsc_khz as u64);
                let a = st.lapic.as_mut().ok_or(EINVAL)?;
                a.set_state(&regs, now, khz);
                this.mailbox.mirror(a);
                Ok(0)
            }
            uapi::KVM_GET_DEBUGREGS => {
                let d = this.state.lock().arch.debug;
                write_user(arg, &KvmDebugregs { db: d.db, dr6: d.dr6, dr7: d.dr7, ..KvmDebugregs::default() })
            }
            uapi::KVM_SET_DEBUGREGS => {
                // KVM's rules: no flags, DR6/DR7 bits 63:32 clear (EINVAL), checked before
                // anything changes.
                let regs: KvmDebugregs = read_user(arg)?;
                if regs.flags != 0 {
                    return Err(EINVAL);
                }
                let mut d = DebugRegs { db: regs.db, ..DebugRegs::default() };
                d.write(6, regs.dr6, false).map_err(|_| EINVAL)?;
                d.write(7, regs.dr7, false).map_err(|_| EINVAL)?;
                this.state.lock().arch.debug = d;
                Ok(0)
            }
            // KVM_GET_XSAVE2 copies KVM_CAP_XSAVE2's size, 4096 bytes here like
            // KVM_GET_XSAVE: everything nvmx switches fits struct kvm_xsave.
            uapi::KVM_GET_XSAVE | uapi::KVM_GET_XSAVE2 => {
                let xs = HOST.as_ref().ok_or(ENODEV)?.xsave;
                // 4 KiB: on the heap, not the kernel stack.
                let mut buf = KBox::init(pin_init::init_zeroed::<[u8; xsave::KVM_XSAVE_BYTES]>(), GFP_KERNEL)?;
                {
                    let st = this.state.lock();
                    xs.write_xsave(&st.fpu.0, st.guest_supported_xcr0(), &mut buf);
                }
                UserSlice::new(UserPtr::from_addr(arg), buf.len()).writer().write_slice(&buf[..])?;
                Ok(0)
            }
            uapi::KVM_SET_XSAVE => {
                let h = HOST.as_ref().ok_or(ENODEV)?;
                let mut buf = KBox::init(pin_init::init_zeroed::<[u8; xsave::KVM_XSAVE_BYTES]>(), GFP_KERNEL)?;
                UserSlice::new(UserPtr::from_addr(arg), buf.len()).reader().read_slice(&mut buf[..])?;
                let mut st = this.state.lock();
                h.xsave.read_xsave(&buf, &mut st.fpu.0, h.mxcsr_mask).map_err(|_| EINVAL)?;
                Ok(0)
            }
            uapi::KVM_GET_XCRS => {
                // XCR0 alone (KVM's list), or no XCR at all on a host without XSAVE.
                let mut x = uapi::KvmXcrs::default();
                if HOST.as_ref().ok_or(ENODEV)?.xsave.enabled {
                    x.nr_xcrs = 1;
                    x.xcrs[0] = uapi::KvmXcr { xcr: 0, reserved: 0, value: this.state.lock().xcr0 };
                }
                write_user(arg, &x)
            }
            uapi::KVM_SET_XCRS => {
                // KVM's rules: EINVAL without XSAVE on the host, for flags, more than
                // KVM_MAX_XCRS entries or an XCR0 the guest may not have (xcr0_valid); the
                // first XCR0 entry counts, other XCRs are ignored.
                let x: uapi::KvmXcrs = read_user(arg)?;
                if !HOST.as_ref().ok_or(ENODEV)?.xsave.enabled || x.flags != 0 || x.nr_xcrs > uapi::KVM_MAX_XCRS {
                    return Err(EINVAL);
                }
                let mut st = this.state.lock();
                if let Some(e) = x.xcrs.iter().take(x.nr_xcrs as usize).find(|e| e.xcr == 0) {
                    if !xsave::xcr0_valid(e.value, st.guest_supported_xcr0()) {
                        return Err(EINVAL);
                    }
                    st.xcr0 = e.value;
                }
                Ok(0)
            }
            uapi::KVM_GET_NESTED_STATE => crate::nested_save::get(&this, arg),
            uapi::KVM_SET_NESTED_STATE => crate::nested_save::set(&this, arg),
            uapi::KVM_GET_VCPU_EVENTS => write_user(arg, &this.vcpu_events()),
            uapi::KVM_SET_VCPU_EVENTS => {
                let e: uapi::KvmVcpuEvents = read_user(arg)?;
                this.set_vcpu_events(&e)?;
                Ok(0)
            }
            // An NMI for the vCPU (KVM's kvm_vcpu_ioctl_nmi): pending until it can take it.
            uapi::KVM_NMI => {
                this.state.lock().nmi_pending = true;
                Ok(0)
            }
            uapi::KVM_INTERRUPT => {
                let irq: uapi::KvmInterrupt = read_user(arg)?;
                let mut st = this.state.lock();
                let lapic = st.lapic.is_some();
                st.extint = Some(vcpu_events::queue_interrupt(irq.irq, st.extint, lapic).map_err(|e| match e {
                    vcpu_events::InterruptError::BadVector => EINVAL,
                    vcpu_events::InterruptError::Busy => EEXIST,
                })?);
                Ok(0)
            }
            uapi::KVM_SET_GUEST_DEBUG => {
                let d: uapi::KvmGuestDebug = read_user(arg)?;
                this.state.lock().set_guest_debug(d.control)
            }
            uapi::KVM_X86_SETUP_MCE => {
                let cap: u64 = read_user(arg)?;
                if this.state.lock().mce.setup(cap) { Ok(0) } else { Err(EINVAL) }
            }
            uapi::KVM_X86_SET_MCE => {
                let m: uapi::KvmX86Mce = read_user(arg)?;
                let e = crate::vmx_core::mce::InjectedError {
                    status: m.status,
                    addr: m.addr,
                    misc: m.misc,
                    mcg_status: m.mcg_status,
                    bank: m.bank,
                };
                this.state.lock().inject_mce(&e)
            }
            uapi::KVM_SET_VAPIC_ADDR => {
                // KVM's TPR-access page for guests that patch their TPR accesses (KVM_CAP_VAPIC,
                // which nvmx does not offer). Address 0 turns it off — what a VMM without it
                // passes at every APIC reset; KVM needs an in-kernel APIC (EINVAL).
                let a: uapi::KvmVapicAddr = read_user(arg)?;
                if this.state.lock().lapic.is_none() || a.vapic_addr != 0 {
                    return Err(EINVAL);
                }
                Ok(0)
            }
            uapi::KVM_GET_FPU => write_user(arg, &fpu_to_kvm(&this.state.lock().fpu.0)),
            uapi::KVM_SET_FPU => {
                let fpu: KvmFpu = read_user(arg)?;
                let mask = HOST.as_ref().ok_or(ENODEV)?.mxcsr_mask;
                // FXRSTOR of a reserved MXCSR bit is #GP: refuse it here, not in the host.
                if fpu.mxcsr & !mask != 0 {
                    return Err(EINVAL);
                }
                let mut st = this.state.lock();
                fpu_from_kvm(&mut st.fpu.0, &fpu);
                xsave::mark_legacy_present(&mut st.fpu.0);
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

/// `KVM_GET_TSC_KHZ`: the guest's TSC runs at the host's rate; EIO if the host's rate is
/// unknown (KVM returns -EIO for an unset frequency too).
pub(crate) fn tsc_khz() -> Result<isize> {
    match HOST.as_ref().ok_or(ENODEV)?.tsc_khz {
        0 => Err(EIO),
        khz => Ok(khz as isize),
    }
}

/// `KVM_SET_CPUID2`: more than KVM_MAX_CPUID_ENTRIES is E2BIG; after the first run only the
/// same table is accepted (EINVAL otherwise), as on KVM.
fn set_cpuid2(st: &mut VcpuState, arg: usize) -> Result<isize> {
    let nent: u32 = read_user(arg)?;
    if nent > uapi::KVM_MAX_CPUID_ENTRIES {
        return Err(E2BIG);
    }
    let esize = core::mem::size_of::<KvmCpuidEntry2>();
    let mut r = UserSlice::new(UserPtr::from_addr(arg.wrapping_add(8)), nent as usize * esize).reader();
    let mut table = KVec::with_capacity(nent as usize, GFP_KERNEL_ACCOUNT)?;
    for _ in 0..nent {
        table.push(CpuidEntry::from(r.read::<KvmCpuidEntry2>()?), GFP_KERNEL_ACCOUNT)?;
    }
    let mut features = GuestFeatures::from_cpuid(&table);
    // XSAVE (CR4.OSXSAVE) only where the host has it to switch the state with.
    features.xsave &= HOST.as_ref().is_some_and(|h| h.xsave.enabled);
    if st.ran && !cpuid::same_table(&st.cpuid, &table, &st.cpuid_dynamic(st.arch.cr4)) {
        // Turning VMX (nested virtualization) on or off is refused while the VM has run
        // (only while it is off); other changes get KVM's EINVAL.
        return Err(if features.vmx != st.features.vmx { EBUSY } else { EINVAL });
    }
    st.features = features;
    // The local APIC's timer offers TSC-deadline mode as the guest's CPUID says (KVM).
    if let Some(a) = st.lapic.as_mut() {
        a.set_tsc_deadline_offered(features.tsc_deadline);
    }
    st.cpuid = table;
    nested::cpuid_changed(st);
    Ok(0)
}

/// `KVM_GET_CPUID2`: E2BIG (nothing written) if `nent` is too small, else the entries and
/// the real `nent`.
fn get_cpuid2(st: &VcpuState, arg: usize) -> Result<isize> {
    let nent: u32 = read_user(arg)?;
    if (nent as usize) < st.cpuid.len() {
        return Err(E2BIG);
    }
    let size = 8 + st.cpuid.len() * core::mem::size_of::<KvmCpuidEntry2>();
    let mut w = UserSlice::new(UserPtr::from_addr(arg), size).writer();
    w.write(&[st.cpuid.len() as u32, 0u32])?;
    // With the bits that follow CR4 and XCR0 as they are now, as KVM reports them.
    let dynamic = st.cpuid_dynamic(st.arch.cr4);
    for e in st.cpuid.iter() {
        w.write(&KvmCpuidEntry2::from(&dynamic.apply(e)))?;
    }
    Ok(0)
}

/// KVM's MAX_IO_MSRS: the most entries one KVM_GET/SET_MSRS takes.
const MAX_IO_MSRS: u32 = 256;

/// The entries of a `struct kvm_msrs` at `arg` (E2BIG for KVM's MAX_IO_MSRS or more), and a
/// writer for putting them back.
fn read_msr_entries(arg: usize) -> Result<(KVec<KvmMsrEntry>, kernel::uaccess::UserSliceWriter)> {
    let nmsrs: u32 = read_user(arg)?;
    if nmsrs >= MAX_IO_MSRS {
        return Err(E2BIG);
    }
    let esize = core::mem::size_of::<KvmMsrEntry>();
    let user = UserSlice::new(UserPtr::from_addr(arg.wrapping_add(8)), nmsrs as usize * esize);
    let (mut r, w) = user.reader_writer();
    let mut entries = KVec::with_capacity(nmsrs as usize, GFP_KERNEL_ACCOUNT)?;
    for _ in 0..nmsrs {
        entries.push(r.read::<KvmMsrEntry>()?, GFP_KERNEL_ACCOUNT)?;
    }
    Ok((entries, w))
}

/// `KVM_GET_MSRS` / `KVM_SET_MSRS`: process entries in order and stop at the first MSR
/// nvmx does not have or value it refuses; return how many were processed (KVM's __msr_io).
fn msr_io(vm: &Vm, st: &mut VcpuState, arg: usize, set: bool) -> Result<isize> {
    let (entries, mut w) = read_msr_entries(arg)?;
    let mut entries = entries;
    let mut done = 0;
    if set {
        st.flushed_for = None; // EFER may change paging: as for KVM_SET_SREGS
    }
    for e in entries.iter_mut() {
        // IA32_TSC_DEADLINE: the in-kernel APIC's (0 and ignored without one, as KVM).
        if e.index == crate::vmx_core::lapic::MSR_TSC_DEADLINE {
            match (set, st.lapic.as_mut()) {
                (true, Some(a)) => a.set_tsc_deadline(e.data),
                (true, None) => {}
                (false, a) => e.data = a.map_or(0, |a| a.tsc_deadline()),
            }
            done += 1;
            continue;
        }
        if mtrr::is_mtrr_msr(e.index) {
            if set {
                if !st.mtrrs.write(e.index, e.data, u32::from(st.features.maxphyaddr)) {
                    break;
                }
            } else {
                let Some(v) = st.mtrrs.read(e.index) else { break };
                e.data = v;
            }
            done += 1;
            continue;
        }
        if Mce::is_mce_msr(e.index) {
            if set {
                if !st.mce.write(e.index, e.data, true, false) {
                    break;
                }
            } else {
                let Some(v) = st.mce.read(e.index, true) else { break };
                e.data = v;
            }
            done += 1;
            continue;
        }
        if nested::is_nested_msr(e.index) {
            if set {
                if nested::set_msr(st, e.index, e.data, true).is_err() {
                    break;
                }
                // KVM's reset rule: the VMM's IA32_FEATURE_CONTROL = 0 leaves VMX operation.
                if e.index == nested::MSR_FEATURE_CONTROL && e.data == 0 {
                    vm.with_memory(|eptp| nested::leave_vmx_operation(st, eptp));
                }
            } else {
                let Some(v) = nested::get_msr(st, e.index) else { break };
                e.data = v;
            }
            done += 1;
            continue;
        }
        let Some(msr) = Msr::from_index(e.index) else { break };
        if set {
            let cx = st.msr_write_context(Writer::Host, st.msr(msr), false);
            let Some(v) = guest_msr::check_write(msr, e.data, &cx) else { break };
            st.set_msr(msr, v);
        } else {
            e.data = st.msr(msr);
        }
        done += 1;
    }
    if !set {
        for e in entries.iter() {
            w.write(e)?;
        }
    }
    Ok(done)
}

/// `KVM_GET_MSR_INDEX_LIST` (system fd): E2BIG with the needed count written back if the
/// caller's room is too small, as on KVM.
pub(crate) fn get_msr_index_list(arg: usize) -> Result<isize> {
    let mut list = KVec::new();
    for m in Msr::ALL.into_iter().filter(|m| m.listed()) {
        list.push(m.index(), GFP_KERNEL_ACCOUNT)?;
    }
    // IA32_TSC_DEADLINE and the machine-check MSRs KVM lists (its emulated MSRs; the banks
    // are not listed).
    list.push(crate::vmx_core::lapic::MSR_TSC_DEADLINE, GFP_KERNEL_ACCOUNT)?;
    list.push(mce::MCG_STATUS, GFP_KERNEL_ACCOUNT)?;
    list.push(mce::MCG_CTL, GFP_KERNEL_ACCOUNT)?;
    // With nested VMX: IA32_FEATURE_CONTROL and the IA32_VMX_* MSRs a VMM restores (KVM's
    // emulated MSRs).
    if nested::available() {
        list.push(crate::nested_msrs::MSR_FEATURE_CONTROL, GFP_KERNEL_ACCOUNT)?;
        for i in crate::vmx_core::msr::VMX_SAVED {
            list.push(i, GFP_KERNEL_ACCOUNT)?;
        }
    }
    write_msr_list(arg, &list)
}

/// `KVM_GET_MSR_FEATURE_INDEX_LIST` (system fd): the MSRs `KVM_GET_MSRS` on the system fd
/// reads — the IA32_VMX_* capability MSRs nested guests are offered (none without nested).
pub(crate) fn get_msr_feature_index_list(arg: usize) -> Result<isize> {
    let mut list = KVec::new();
    if nested::available() {
        for i in crate::vmx_core::msr::IA32_VMX_BASIC..=crate::vmx_core::msr::IA32_VMX_VMFUNC {
            list.push(i, GFP_KERNEL_ACCOUNT)?;
        }
    }
    write_msr_list(arg, &list)
}

/// `struct kvm_msr_list`: E2BIG with the needed count written back if the caller's room
/// (`nmsrs`) is too small, as on KVM.
fn write_msr_list(arg: usize, list: &[u32]) -> Result<isize> {
    let n: u32 = read_user(arg)?;
    let count = list.len() as u32;
    let mut w = UserSlice::new(UserPtr::from_addr(arg), 4 + 4 * list.len()).writer();
    w.write(&count)?;
    if n < count {
        return Err(E2BIG);
    }
    for i in list {
        w.write(i)?;
    }
    Ok(0)
}

/// `KVM_GET_MSRS` on the system fd: feature MSRs (the offered IA32_VMX_* values); stops at
/// the first MSR that is not one, returning how many were read (KVM's msr_io).
pub(crate) fn get_feature_msrs(arg: usize) -> Result<isize> {
    let (entries, mut w) = read_msr_entries(arg)?;
    let mut entries = entries;
    // Without nested VMX there is no feature MSR.
    let host = HOST.as_ref().ok_or(ENODEV)?;
    let caps = nested::available().then_some(host.l1_caps);
    let mut done = 0;
    for e in entries.iter_mut() {
        let Some(v) = caps.as_ref().and_then(|c| c.read(e.index)) else { break };
        e.data = v;
        done += 1;
    }
    for e in entries.iter() {
        w.write(e)?;
    }
    Ok(done)
}

fn fpu_to_kvm(b: &[u8; xsave::KVM_XSAVE_BYTES]) -> KvmFpu {
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let mut k = KvmFpu {
        fpr: [[0; 16]; 8],
        fcw: u16_at(0),
        fsw: u16_at(2),
        ftwx: b[4],
        pad1: 0,
        last_opcode: u16_at(6),
        last_ip: u64_at(8),
        last_dp: u64_at(16),
        xmm: [[0; 16]; 16],
        mxcsr: u32::from_le_bytes([b[24], b[25], b[26], b[27]]),
        pad2: 0,
    };
    for (i, r) in k.fpr.iter_mut().enumerate() {
        r.copy_from_slice(&b[32 + 16 * i..48 + 16 * i]);
    }
    for (i, r) in k.xmm.iter_mut().enumerate() {
        r.copy_from_slice(&b[160 + 16 * i..176 + 16 * i]);
    }
    k
}

fn fpu_from_kvm(b: &mut [u8; xsave::KVM_XSAVE_BYTES], k: &KvmFpu) {
    b[0..2].copy_from_slice(&k.fcw.to_le_bytes());
    b[2..4].copy_from_slice(&k.fsw.to_le_bytes());
    b[4] = k.ftwx;
    b[6..8].copy_from_slice(&k.last_opcode.to_le_bytes());
    b[8..16].copy_from_slice(&k.last_ip.to_le_bytes());
    b[16..24].copy_from_slice(&k.last_dp.to_le_bytes());
    b[24..28].copy_from_slice(&k.mxcsr.to_le_bytes());
    for (i, r) in k.fpr.iter().enumerate() {
        b[32 + 16 * i..48 + 16 * i].copy_from_slice(r);
    }
    for (i, r) in k.xmm.iter().enumerate() {
        b[160 + 16 * i..176 + 16 * i].copy_from_slice(r);
    }
}

fn write_user<T: kernel::transmute::AsBytes>(arg: usize, value: &T) -> Result<isize> {
    UserSlice::new(UserPtr::from_addr(arg), core::mem::size_of::<T>()).writer().write(value)?;
    Ok(0)
}

/// The vCPU file's `unlocked_ioctl` (called from rust/shim.c).
///
/// # Safety
///
/// `vcpu` is the file's private data: the pointer `Vcpu::create` made with `into_foreign` from an
/// `Arc<Vcpu>`, and the file is open (its release has not run).
#[no_mangle]
unsafe extern "C" fn nvmx_vcpu_ioctl(vcpu: *mut c_void, cmd: u32, arg: usize) -> isize {
    // SAFETY: by this function's contract, an `Arc<Vcpu>` alive until release.
    let this = unsafe { <Arc<Vcpu> as ForeignOwnable>::borrow(vcpu) };
    match Vcpu::ioctl(this, cmd, arg) {
        Ok(v) => v,
        Err(e) => e.to_errno() as isize,
    }
}

/// The vCPU file's `release`.
///
/// # Safety
///
/// `vcpu` is the file's private data as for [`nvmx_vcpu_ioctl`], and this is the file's
/// last use of it: the reference it holds is given back here, exactly once.
#[no_mangle]
unsafe extern "C" fn nvmx_vcpu_release(vcpu: *mut c_void) {
    // SAFETY: by this function's contract, the file's reference, given back once.
    let this = unsafe { <Arc<Vcpu> as ForeignOwnable>::from_foreign(vcpu) };
    let stats = this.state.lock().stats;
    crate::status::remove(this.status_key, &stats);
    drop(this);
}

/// The page behind offset `pgoff` of the vCPU file's mapping (its `fault` handler).
///
/// # Safety
///
/// `vcpu` is the private data of the file the faulting mapping maps, as for
/// [`nvmx_vcpu_ioctl`]; the mapping holds a reference to that file.
#[no_mangle]
unsafe extern "C" fn nvmx_vcpu_mmap_page(vcpu: *mut c_void, pgoff: usize) -> *mut bindings::page {
    // SAFETY: by this function's contract, the file's private data, alive while mapped.
    let this = unsafe { <Arc<Vcpu> as ForeignOwnable>::borrow(vcpu) };
    this.mmap_page(pgoff)
}
