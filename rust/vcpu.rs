// SPDX-License-Identifier: GPL-2.0
//! A vCPU: its fd with the `struct kvm_run` mmap, its architectural state as KVM's ABI
//! exposes it, and (rust/run.rs) the run loop.

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

use kernel::bindings;
use kernel::page::Page;
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow, Mutex};
use kernel::types::ForeignOwnable;
use kernel::uaccess::{UserPtr, UserSlice};

use crate::apic::Mailbox;
use crate::nested::{self, Nested};
use crate::shim;
use crate::uapi::{self, mp_state, NvmxVcpuStats, KvmCpuidEntry2, KvmDebugregs, KvmDtable, KvmFpu, KvmMsrEntry, KvmRegs, KvmSegment, KvmSregs};
use crate::vm::{read_user, Vm};
use crate::vmx_core::cpuid::{self, CpuidEntry, GuestFeatures};
use crate::vmx_core::debug_regs::DebugRegs;
use crate::vmx_core::guest_cr;
use crate::vmx_core::guest_msr::{self, apic_base, Msr, WriteContext, Writer};
use crate::vmx_core::insn;
use crate::vmx_core::lapic::Lapic;
use crate::vmx_ops::FxArea;
use crate::HOST;

/// VPIDs in use, one bit each (VPID 0 is the host's and never handed out).
static VPIDS: [AtomicU64; 1024] = [const { AtomicU64::new(0) }; 1024];

/// A vCPU's VPID (SDM 29.1): its guest-linear TLB entries are tagged with it, so they
/// survive VM exits and need no flush while the vCPU stays on one CPU with one EPT.
pub(crate) struct Vpid(pub(crate) u16);

impl Vpid {
    /// A free VPID, or VPID 0 (VPID not used: every entry and exit flushes) when the CPU
    /// has no VPID or all 65535 are taken.
    fn alloc(supported: bool) -> Self {
        if supported {
            for (w, word) in VPIDS.iter().enumerate() {
                let mut cur = word.load(Ordering::Relaxed);
                loop {
                    let free = !cur & if w == 0 { !1 } else { u64::MAX };
                    if free == 0 {
                        break;
                    }
                    let bit = free.trailing_zeros();
                    match word.compare_exchange(cur, cur | (1 << bit), Ordering::AcqRel, Ordering::Relaxed) {
                        Ok(_) => return Vpid((w * 64 + bit as usize) as u16),
                        Err(now) => cur = now,
                    }
                }
            }
        }
        Vpid(0)
    }
}

impl Drop for Vpid {
    fn drop(&mut self) {
        if self.0 != 0 {
            VPIDS[self.0 as usize / 64].fetch_and(!(1 << (self.0 % 64)), Ordering::AcqRel);
        }
    }
}

/// Pages of the vCPU mmap: `struct kvm_run`, then the PIO data page (KVM_PIO_PAGE_OFFSET 1).
pub(crate) const MMAP_PAGES: usize = 2;

/// An IN exit whose data userspace provides before the next KVM_RUN.
pub(crate) struct PendingIn {
    pub(crate) size: u8,
}

/// A (REP) INS batch whose data userspace puts into the PIO page before the next KVM_RUN.
pub(crate) struct PendingIns {
    pub(crate) size: u8,
    pub(crate) count: u64,
    pub(crate) rep: bool,
    pub(crate) df: bool,
    pub(crate) addr_mask: u64,
    pub(crate) insn_len: u64,
}

/// An MMIO read whose data userspace provides in `kvm_run.mmio.data` before the next
/// KVM_RUN: where the value goes.
pub(crate) struct PendingMmio {
    pub(crate) dst: insn::Gpr,
    pub(crate) dst_size: u8,
    pub(crate) size: u8,
    pub(crate) extend: insn::Extend,
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
    pub(crate) pending_mmio: Option<PendingMmio>,
    pub(crate) pending_ins: Option<PendingIns>,
    /// The guest's CPUID (`KVM_SET_CPUID2`; empty until then, as on KVM) and what it offers.
    pub(crate) cpuid: KVec<CpuidEntry>,
    pub(crate) features: GuestFeatures,
    /// Whether the vCPU has entered the guest once (CPUID is frozen from then on).
    pub(crate) ran: bool,
    /// Host code ran since the last VM entry (a new IRQs-off region): the next entry
    /// flushes L1D where the host needs that (rust/run.rs, l1d_flush).
    pub(crate) l1d_flush_pending: bool,
    /// MSRs switched around each guest stretch (rust/run.rs): STAR, LSTAR, CSTAR, FMASK,
    /// KERNEL_GS_BASE, in [`SYSCALL_MSRS`] order.
    pub(crate) syscall_msrs: [u64; 5],
    pub(crate) misc_enable: u64,
    pub(crate) hwcr: u64,
    /// Guest TSC = host TSC + this (the VMCS TSC offset).
    pub(crate) tsc_offset: u64,
    /// IA32_TSC_ADJUST.
    pub(crate) tsc_adjust: u64,
    /// The guest's x87/SSE state, loaded into the FPU for each guest stretch.
    pub(crate) fpu: FxArea,
    /// The host's FPU registers while the guest's are loaded.
    pub(crate) host_fpu: FxArea,
    /// DR0-DR3, DR6, DR7 (every MOV DR exits; rust/run.rs puts them on the CPU while a
    /// breakpoint is enabled).
    pub(crate) debug: DebugRegs,
    /// The in-kernel local APIC (VMs with `KVM_CAP_SPLIT_IRQCHIP`).
    pub(crate) lapic: Option<Lapic>,
    /// An NMI waiting for the guest to be able to take it.
    pub(crate) nmi_pending: bool,
    /// `KVM_MP_STATE_*`: runnable, halted (in-kernel HLT), or an application processor
    /// waiting for INIT / SIPI. Only RUNNABLE exists without the in-kernel local APIC.
    pub(crate) mp_state: u32,
    /// (CPU, EPT pointer, memory generation) of the last INVEPT for this vCPU: while they
    /// stay the same, no TLB entry the vCPU could use is stale (rust/run.rs).
    pub(crate) flushed_for: Option<(u32, u64, u64)>,
    /// What was last published to the status list (rust/status.rs).
    pub(crate) published: Option<crate::status::Published>,
    /// VM-entry instruction length of `inject` (software interrupts and exceptions).
    pub(crate) inject_len: u64,
    /// Nested VMX: L1's VMX operation, VMCS12, whether L2 runs (rust/nested.rs).
    pub(crate) nested: Nested,
    /// Path-length counters (`NVMX_GET_VCPU_STATS`).
    pub(crate) stats: NvmxVcpuStats,
}

/// The hardware MSRs nvmx loads with guest values around each guest stretch.
pub(crate) const SYSCALL_MSRS: [Msr; 5] = [Msr::Star, Msr::Lstar, Msr::Cstar, Msr::Fmask, Msr::KernelGsBase];

/// The FPU after RESET as KVM sets it up: FCW 0x37f (all exceptions masked, 64-bit
/// precision), MXCSR 0x1f80, every register empty.
fn fpu_reset() -> FxArea {
    let mut fx = FxArea([0; 512]);
    fx.0[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
    fx.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
    fx
}

impl VcpuState {
    /// CR8: the in-kernel local APIC's TPR[7:4], or (without one) the value last written.
    pub(crate) fn cr8(&self) -> u64 {
        self.lapic.as_ref().map_or(self.sregs.cr8, |a| a.cr8())
    }

    /// MOV to CR8 / KVM_SET_SREGS: the TPR of the in-kernel APIC (SDM 11.8.6.1).
    pub(crate) fn set_cr8(&mut self, cr8: u64) {
        self.sregs.cr8 = cr8 & 0xf;
        if let Some(a) = self.lapic.as_mut() {
            a.set_cr8(cr8);
        }
    }

    /// The architectural state after RESET (SDM vol. 3A table 10-1), as KVM reports it before
    /// the first KVM_SET_*REGS: real mode at F000:FFF0.
    fn reset(id: u32, lapic: bool, stuff_vmx_msrs: bool) -> Self {
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
            pending_mmio: None,
            pending_ins: None,
            cpuid: KVec::new(),
            features: GuestFeatures::from_cpuid(&[]),
            ran: false,
            l1d_flush_pending: true,
            syscall_msrs: [0; 5],
            misc_enable: guest_msr::MISC_ENABLE_RESET,
            hwcr: 0,
            tsc_offset: 0,
            tsc_adjust: 0,
            fpu: fpu_reset(),
            host_fpu: FxArea([0; 512]),
            debug: DebugRegs::default(),
            lapic: lapic.then(|| Lapic::new(id)),
            nmi_pending: false,
            // With an in-kernel APIC, application processors wait for INIT/SIPI (KVM).
            mp_state: if lapic && id != 0 { mp_state::UNINITIALIZED } else { mp_state::RUNNABLE },
            flushed_for: None,
            published: None,
            inject_len: 0,
            nested: Nested::new(stuff_vmx_msrs),
            stats: NvmxVcpuStats::default(),
        }
    }

    /// INIT (SDM 10.1, table 10-1 "INIT" column, as KVM's kvm_vcpu_reset(init_event)):
    /// registers as after RESET but the APIC base and the MSRs kept; the local APIC reset
    /// keeping its ID and x2APIC mode; an application processor then waits for a SIPI.
    pub(crate) fn init(&mut self, id: u32) {
        let fresh = VcpuState::reset(id, self.lapic.is_some(), false);
        let apic_base = self.sregs.apic_base;
        self.regs = fresh.regs;
        self.sregs = KvmSregs { apic_base, ..fresh.sregs };
        self.interruptibility = 0;
        self.inject = None;
        self.pending_in = None;
        self.pending_mmio = None;
        self.pending_ins = None;
        self.nmi_pending = false;
        self.flushed_for = None;
        self.debug = DebugRegs::default();
        if let Some(a) = &mut self.lapic {
            let x2 = a.x2apic;
            *a = Lapic::new(a.id);
            if x2 {
                a.enter_x2apic();
            }
        }
        self.mp_state = if apic_base & apic_base::BSP != 0 { mp_state::RUNNABLE } else { mp_state::INIT_RECEIVED };
    }

    /// A start-up IPI: only a vCPU waiting after INIT starts, in real mode at
    /// `vector`:0000 (CS = vector << 8, base vector << 12; SDM 10.4.4).
    pub(crate) fn sipi(&mut self, vector: u8) {
        if self.mp_state != mp_state::INIT_RECEIVED {
            return;
        }
        self.sregs.cs.selector = (vector as u16) << 8;
        self.sregs.cs.base = (vector as u64) << 12;
        self.regs.rip = 0;
        self.mp_state = mp_state::RUNNABLE;
    }

    /// The value of `msr` outside a run (inside one, rust/run.rs reads the VMCS first).
    pub(crate) fn msr(&self, msr: Msr) -> u64 {
        match msr {
            Msr::Tsc => crate::vmx_ops::rdtsc().wrapping_add(self.tsc_offset),
            Msr::TscAdjust => self.tsc_adjust,
            Msr::ApicBase => self.sregs.apic_base,
            Msr::SysenterCs => self.sysenter[0],
            Msr::SysenterEsp => self.sysenter[1],
            Msr::SysenterEip => self.sysenter[2],
            Msr::MiscEnable => self.misc_enable,
            Msr::Hwcr => self.hwcr,
            Msr::Pat => self.pat,
            Msr::Efer => self.sregs.efer,
            Msr::FsBase => self.sregs.fs.base,
            Msr::GsBase => self.sregs.gs.base,
            m => SYSCALL_MSRS.iter().position(|&s| s == m).map_or(0, |i| self.syscall_msrs[i]),
        }
    }

    /// Store a checked value of `msr` written by `writer` (the TSC and TSC_ADJUST move
    /// together for the guest's writes, guest_msr::tsc_write).
    pub(crate) fn set_msr_by(&mut self, msr: Msr, v: u64, writer: Writer) {
        if let Msr::Tsc | Msr::TscAdjust = msr {
            let host = crate::vmx_ops::rdtsc();
            (self.tsc_offset, self.tsc_adjust) =
                guest_msr::tsc_write(msr, writer, self.tsc_offset, self.tsc_adjust, host, v);
        } else {
            self.set_msr(msr, v);
        }
    }

    /// Store a checked value of `msr` outside a run (the VMM's view for the TSC).
    pub(crate) fn set_msr(&mut self, msr: Msr, v: u64) {
        match msr {
            Msr::Tsc | Msr::TscAdjust => self.set_msr_by(msr, v, Writer::Host),
            Msr::ApicBase => {
                let old = self.sregs.apic_base;
                self.sregs.apic_base = v;
                if let Some(a) = &mut self.lapic {
                    // SDM 11.12.5: setting EXTD enters x2APIC mode (logical ID derived from
                    // the ID); clearing EN leaves it.
                    if v & apic_base::EXTD != 0 && old & apic_base::EXTD == 0 {
                        a.enter_x2apic();
                    } else if v & apic_base::EXTD == 0 {
                        a.x2apic = false;
                    }
                }
            }
            Msr::SysenterCs => self.sysenter[0] = v,
            Msr::SysenterEsp => self.sysenter[1] = v,
            Msr::SysenterEip => self.sysenter[2] = v,
            Msr::MiscEnable => self.misc_enable = v,
            Msr::Hwcr => self.hwcr = v,
            Msr::Pat => self.pat = v,
            Msr::Efer => self.sregs.efer = v,
            Msr::FsBase => self.sregs.fs.base = v,
            Msr::GsBase => self.sregs.gs.base = v,
            m => {
                if let Some(i) = SYSCALL_MSRS.iter().position(|&s| s == m) {
                    self.syscall_msrs[i] = v;
                }
            }
        }
    }

    /// `KVM_SET_SREGS`: KVM's validity rules (kvm_is_valid_sregs, kvm_apic_set_base), all
    /// checked before anything changes. A pending interrupt in `interrupt_bitmap` would need
    /// interrupt injection, which nvmx does not have yet: EINVAL rather than dropping it.
    fn set_sregs(&mut self, s: &KvmSregs) -> Result {
        let f = &self.features;
        if !guest_cr::sregs_valid(f, s.cr0, s.cr4, s.efer, s.cs.l != 0) {
            return Err(EINVAL);
        }
        let cx = WriteContext { features: *f, writer: Writer::Host, current: self.sregs.apic_base, paging: false };
        if guest_msr::check_write(Msr::ApicBase, s.apic_base, &cx).is_none() {
            return Err(EINVAL);
        }
        if s.interrupt_bitmap.iter().any(|&w| w != 0) {
            return Err(EINVAL);
        }
        let apic_base = s.apic_base;
        self.sregs = KvmSregs { apic_base: self.sregs.apic_base, ..*s };
        // New paging state from outside the guest: its TLB entries (tagged with the VPID,
        // not with CR3) must go, as KVM_REQ_TLB_FLUSH_GUEST does on KVM.
        self.flushed_for = None;
        self.set_msr(Msr::ApicBase, apic_base);
        self.set_cr8(s.cr8);
        Ok(())
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
    /// VMCS02: the VMCS the CPU runs L2 on (rust/nested.rs), VMCLEARed like the other.
    _vmcs02: Page,
    pub(crate) vmcs02_phys: u64,
    /// The shadow VMCS of L1's VMREAD/VMWRITE (rust/shadow_vmcs.rs), if the host shadows.
    _shadow_vmcs: Option<crate::shadow_vmcs::ShadowVmcs>,
    /// What other vCPUs post to this one's local APIC.
    pub(crate) mailbox: Arc<Mailbox>,
    pub(crate) vpid: Vpid,
    /// The vCPU's entry in the host-wide status list (rust/status.rs); unique for the
    /// module's life, so it also names the vCPU a CPU last entered (IBPB, rust/run.rs).
    pub(crate) status_key: u64,
    /// Serializes the vCPU's ioctls; a task waiting here can be killed (KVM's vcpu->mutex).
    /// `state` is then taken uncontended by the ioctls.
    ioctl_lock: shim::IoctlLock,
    #[pin]
    pub(crate) state: Mutex<VcpuState>,
}

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
            let stuff = vm2.state.lock().disabled_quirks & nested::QUIRK_STUFF_FEATURE_MSRS == 0;
            let mut state = VcpuState::reset(id, has_lapic, stuff);
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
                crate::status::remove(status_key);
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
                let ran = crate::run::run(&this);
                this.publish_status();
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
                let regs = this.state.lock().regs;
                write_user(arg, &regs)
            }
            uapi::KVM_SET_REGS => {
                let regs: KvmRegs = read_user(arg)?;
                this.state.lock().regs = regs;
                Ok(0)
            }
            uapi::KVM_GET_SREGS => {
                let st = this.state.lock();
                let sregs = KvmSregs { cr8: st.cr8(), ..st.sregs };
                drop(st);
                write_user(arg, &sregs)
            }
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
            uapi::KVM_GET_MSRS => msr_io(&mut this.state.lock(), arg, false),
            uapi::KVM_SET_MSRS => msr_io(&mut this.state.lock(), arg, true),
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
                let d = this.state.lock().debug;
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
                this.state.lock().debug = d;
                Ok(0)
            }
            uapi::KVM_GET_FPU => write_user(arg, &fpu_to_kvm(&this.state.lock().fpu)),
            uapi::KVM_SET_FPU => {
                let fpu: KvmFpu = read_user(arg)?;
                let mask = HOST.as_ref().ok_or(ENODEV)?.mxcsr_mask;
                // FXRSTOR of a reserved MXCSR bit is #GP: refuse it here, not in the host.
                if fpu.mxcsr & !mask != 0 {
                    return Err(EINVAL);
                }
                fpu_from_kvm(&mut this.state.lock().fpu, &fpu);
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
    let features = GuestFeatures::from_cpuid(&table);
    if st.ran && !cpuid::same_table(&st.cpuid, &table) {
        // Turning VMX (nested virtualization) on or off is refused while the VM has run
        // (issue 5: only while it is off); other changes get KVM's EINVAL.
        return Err(if features.vmx != st.features.vmx { EBUSY } else { EINVAL });
    }
    st.features = features;
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
    for e in st.cpuid.iter() {
        w.write(&KvmCpuidEntry2::from(e))?;
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
fn msr_io(st: &mut VcpuState, arg: usize, set: bool) -> Result<isize> {
    let (entries, mut w) = read_msr_entries(arg)?;
    let mut entries = entries;
    let mut done = 0;
    if set {
        st.flushed_for = None; // EFER may change paging: as for KVM_SET_SREGS
    }
    for e in entries.iter_mut() {
        if nested::is_nested_msr(e.index) {
            if set {
                if nested::set_msr(st, e.index, e.data, true).is_err() {
                    break;
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
            let cx = WriteContext { features: st.features, writer: Writer::Host, current: st.msr(msr), paging: false };
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
    for m in Msr::ALL {
        list.push(m.index(), GFP_KERNEL_ACCOUNT)?;
    }
    // With nested VMX: IA32_FEATURE_CONTROL and the IA32_VMX_* MSRs (KVM's emulated MSRs).
    if nested::available() {
        list.push(nested::MSR_FEATURE_CONTROL, GFP_KERNEL_ACCOUNT)?;
        for i in crate::vmx_core::msr::IA32_VMX_BASIC..=crate::vmx_core::msr::IA32_VMX_VMFUNC {
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

fn fpu_to_kvm(fx: &FxArea) -> KvmFpu {
    let b = &fx.0;
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

fn fpu_from_kvm(fx: &mut FxArea, k: &KvmFpu) {
    let b = &mut fx.0;
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
    let this = unsafe { <Arc<Vcpu> as ForeignOwnable>::from_foreign(vcpu) };
    crate::status::remove(this.status_key);
    drop(this);
}

#[no_mangle]
extern "C" fn nvmx_vcpu_mmap_page(vcpu: *mut c_void, pgoff: usize) -> *mut bindings::page {
    // SAFETY: the mapping holds a reference to the file, so its private data is alive.
    let this = unsafe { <Arc<Vcpu> as ForeignOwnable>::borrow(vcpu) };
    this.mmap_page(pgoff)
}
