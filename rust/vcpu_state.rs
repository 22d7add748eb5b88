// SPDX-License-Identifier: GPL-2.0
//! A vCPU's state between runs: its architectural state (rust/core/src/arch_state.rs), the
//! MSRs, FPU, local APIC and nested-VMX state around it, the I/O and MMIO it waits to
//! complete, and RESET/INIT/SIPI.

use kernel::prelude::*;

use crate::kvm_state;
use crate::nested_state::Nested;
use crate::uapi::{mp_state, KvmSregs, NvmxVcpuStats};
use crate::vmx_core::arch_state::{ArchState, Seg};
use crate::vmx_core::cpuid::{self, CpuidEntry, GuestFeatures};
use crate::vmx_core::guest_cr;
use crate::vmx_core::mce::Mce;
use crate::vmx_core::mtrr::Mtrrs;
use crate::vmx_core::vcpu_events::{self, EventState, PendingException};
use crate::vmx_core::guest_msr::{self, apic_base, Msr, WriteContext, Writer};
use crate::vmx_core::insn;
use crate::vmx_core::lapic::Lapic;
use crate::vmx_core::xsave;
use crate::vmx_ops::XsaveArea;

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
    /// The running guest's registers (L2's while L2 runs): owned here outside an IRQs-off
    /// region, by the loaded VMCS inside one (rust/core/src/arch_state.rs).
    pub(crate) arch: ArchState,
    /// IA32_APIC_BASE.
    pub(crate) apic_base: u64,
    /// CR8 as last written, for a vCPU without the in-kernel local APIC (with one, its TPR).
    pub(crate) cr8_value: u64,
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
    /// MSR_PLATFORM_INFO, the VMM's (KVM's value after creation: CPUID faulting offered).
    pub(crate) platform_info: u64,
    /// MSR_MISC_FEATURES_ENABLES (CPUID faulting; 0 after RESET, kept across INIT).
    pub(crate) misc_features: u64,
    /// The guest may read MSR_PLATFORM_INFO (the VM's KVM_CAP_MSR_PLATFORM_INFO, taken at
    /// each KVM_RUN).
    pub(crate) platform_info_readable: bool,
    pub(crate) hwcr: u64,
    /// IA32_BIOS_SIGN_ID as the VMM set it (the guest's writes are ignored).
    pub(crate) ucode_rev: u64,
    /// Guest TSC = host TSC + this (the VMCS TSC offset).
    pub(crate) tsc_offset: u64,
    /// IA32_TSC_ADJUST.
    pub(crate) tsc_adjust: u64,
    /// The guest's x87/SSE/AVX/AVX-512 state (rust/core/src/xsave.rs), loaded into the
    /// registers for each guest stretch.
    pub(crate) fpu: KBox<XsaveArea>,
    /// The guest's XCR0, on the CPU while the guest runs.
    pub(crate) xcr0: u64,
    /// The in-kernel local APIC (VMs with `KVM_CAP_SPLIT_IRQCHIP`).
    pub(crate) lapic: Option<Lapic>,
    /// An NMI waiting for the guest to be able to take it.
    pub(crate) nmi_pending: bool,
    /// An exception the VMM queued as pending (KVM_CAP_EXCEPTION_PAYLOAD), not delivered
    /// yet: [`VcpuState::deliver_pending_exception`] or, while L2 runs and L1 intercepts
    /// it, a VM exit to L1 (nested::pending_exception_exit).
    pub(crate) pending_exception: Option<PendingException>,
    /// The machine-check banks and MSRs (rust/core/src/mce.rs).
    pub(crate) mce: Mce,
    /// The MTRRs (rust/core/src/mtrr.rs).
    pub(crate) mtrrs: Mtrrs,
    /// KVM_SET_GUEST_DEBUG's control (rust/core/src/guest_debug.rs), 0 when off.
    pub(crate) guest_debug: u32,
    /// The length of the INT3 of the last breakpoint exit, for KVM_GUESTDBG_INJECT_BP.
    pub(crate) bp_insn_len: u32,
    /// A triple fault for the next entry (KVM's KVM_REQ_TRIPLE_FAULT): a machine check that
    /// could not be delivered (KVM_X86_SET_MCE), or the VMM's (KVM_SET_VCPU_EVENTS with
    /// KVM_CAP_X86_TRIPLE_FAULT_EVENT). A shutdown exit; while L2 runs, a triple-fault VM
    /// exit to L1 (nested::triple_fault_exit), as KVM's nested_vmx_triple_fault.
    pub(crate) triple_fault_pending: bool,
    /// An EOI the VMM's I/O APIC must see, to report when the instruction is done.
    pub(crate) eoi_exit: Option<u8>,
    /// The vector of KVM_INTERRUPT not delivered yet: with the in-kernel local APIC the
    /// ExtINT of the VMM's PIC (KVM's pending_external_vector), without one the VMM's
    /// interrupt (rust/core/src/vcpu_events.rs, `queue_interrupt`).
    pub(crate) extint: Option<u8>,
    /// `kvm_run.request_interrupt_window` as this KVM_RUN found it: exit with
    /// KVM_EXIT_IRQ_WINDOW_OPEN as soon as the VMM could inject an ExtINT.
    pub(crate) irq_window_requested: bool,
    /// vCPU 0 under KVM_X86_QUIRK_LINT0_REENABLED: its LINT0 is ExtINT after RESET and INIT.
    pub(crate) bsp_lint0_extint: bool,
    /// `KVM_MP_STATE_*`: runnable, halted (in-kernel HLT), or an application processor
    /// waiting for INIT / SIPI. Only RUNNABLE exists without the in-kernel local APIC.
    pub(crate) mp_state: u32,
    /// (CPU, EPT pointer, memory generation) of the last INVEPT for this vCPU: while they
    /// stay the same, no TLB entry the vCPU could use is stale (rust/run.rs).
    pub(crate) flushed_for: Option<(u32, u64, u64)>,
    /// What was last published to the status list (rust/status.rs).
    pub(crate) published: Option<crate::status::Published>,
    /// Nested VMX: L1's VMX operation, VMCS12, whether L2 runs (rust/nested.rs).
    pub(crate) nested: Nested,
    /// Path-length counters (`NVMX_GET_VCPU_STATS`).
    pub(crate) stats: NvmxVcpuStats,
}

/// The hardware MSRs nvmx loads with guest values around each guest stretch.
pub(crate) const SYSCALL_MSRS: [Msr; 5] = [Msr::Star, Msr::Lstar, Msr::Cstar, Msr::Fmask, Msr::KernelGsBase];

/// The FPU after RESET as KVM sets it up: FCW 0x37f (all exceptions masked, 64-bit
/// precision), MXCSR 0x1f80, every register empty, the extended state initial.
pub(crate) fn new_fpu() -> Result<KBox<XsaveArea>> {
    let mut fpu = KBox::init(pin_init::init_zeroed::<XsaveArea>(), GFP_KERNEL_ACCOUNT)?;
    xsave::reset_area(&mut fpu.0);
    Ok(fpu)
}

impl VcpuState {
    /// CR8: the in-kernel local APIC's TPR[7:4], or (without one) the value last written.
    pub(crate) fn cr8(&self) -> u64 {
        self.lapic.as_ref().map_or(self.cr8_value, |a| a.cr8())
    }

    /// Whether an ExtINT from the VMM's PIC would be taken now (KVM's
    /// kvm_apic_accept_pic_intr; always without an in-kernel local APIC).
    pub(crate) fn accepts_pic(&self) -> bool {
        let hw_enabled = self.apic_base & guest_msr::apic_base::ENABLE != 0;
        self.lapic.as_ref().is_none_or(|l| l.accepts_pic_interrupt(hw_enabled))
    }

    /// The KVM_INTERRUPT vector the vCPU would take before any APIC interrupt (KVM's
    /// kvm_cpu_has_extint / kvm_cpu_get_extint): ExtINT beats the APIC's priorities.
    pub(crate) fn deliverable_extint(&self) -> Option<u8> {
        self.extint.filter(|_| self.accepts_pic())
    }

    /// The external interrupt the vCPU would take next: the VMM's ExtINT first, then the
    /// local APIC's highest deliverable interrupt while the APIC is globally enabled (KVM's
    /// kvm_cpu_get_interrupt order).
    pub(crate) fn pending_interrupt(&self) -> Option<PendingInterrupt> {
        if let Some(v) = self.deliverable_extint() {
            return Some(PendingInterrupt::ExtInt(v));
        }
        if self.apic_base & guest_msr::apic_base::ENABLE == 0 {
            return None;
        }
        self.lapic.as_ref()?.deliverable().map(PendingInterrupt::Apic)
    }

    /// Take `p` (from [`Self::pending_interrupt`]) for delivery: the ExtINT is consumed, an
    /// APIC interrupt moves from IRR to ISR.
    pub(crate) fn acknowledge(&mut self, p: PendingInterrupt) {
        match p {
            PendingInterrupt::ExtInt(_) => self.extint = None,
            PendingInterrupt::Apic(v) => {
                if let Some(apic) = self.lapic.as_mut() {
                    apic.acknowledge(v);
                }
            }
        }
    }

    /// The XCR0 bits this guest may set (KVM's guest_supported_xcr0): its CPUID.(0DH,0)
    /// within what the host switches.
    pub(crate) fn guest_supported_xcr0(&self) -> u64 {
        crate::HOST.as_ref().map_or(0, |h| h.xsave.guest_supported(cpuid::lookup(&self.cpuid, 0xd, 0)))
    }

    /// The CPUID bits that follow the vCPU's state now, for a guest CR4 of `cr4`.
    pub(crate) fn cpuid_dynamic(&self, cr4: u64) -> cpuid::Dynamic {
        let xs = crate::HOST.as_ref().map_or(xsave::XsaveHost::legacy(), |h| h.xsave);
        cpuid::Dynamic {
            osxsave: cr4 & guest_cr::CR4_OSXSAVE != 0,
            ospke: cr4 & guest_cr::CR4_PKE != 0,
            xsave_size: xs.required_size(self.xcr0, false),
            xsave_compacted_size: xs.required_size(self.xcr0, true),
        }
    }

    /// Whether L1's exception bitmap (with the #PF error-code mask/match rule, SDM 26.2)
    /// intercepts the pending exception `p`.
    pub(crate) fn l1_intercepts_exception(&self, p: &PendingException) -> bool {
        self.nested.vmcs12.as_ref().is_some_and(|v| {
            crate::vmx_core::nested_exit::exception_wanted(v, p.vector.into(), p.error_code.map_or(0, u64::from))
        })
    }

    /// Before an entry: a pending exception is delivered — its payload into CR2 or DR6, the
    /// exception into the event the entry injects — unless an event is being injected
    /// already (it waits for that one), or L2 runs and L1 intercepts it (the entry's
    /// region makes it a VM exit to L1 instead, nested::pending_exception_exit).
    pub(crate) fn deliver_pending_exception(&mut self) {
        let Some(p) = self.pending_exception else { return };
        if self.arch.event.is_some() || (self.nested.guest_mode && self.l1_intercepts_exception(&p)) {
            return;
        }
        self.pending_exception = None;
        (self.arch.debug.dr6, self.arch.cr2) = p.deliver_payload(self.arch.debug.dr6, self.arch.cr2);
        self.arch.event = Some(p.event());
    }

    /// `kvm_run.ready_for_interrupt_injection` for the state between runs (rust/core's
    /// `ready_for_interrupt_injection`).
    pub(crate) fn ready_for_interrupt_injection(&self) -> bool {
        let a = &self.arch;
        vcpu_events::ready_for_interrupt_injection(
            a.rflags, a.interruptibility, a.event.is_some(), self.accepts_pic(), self.extint.is_some())
    }

    /// MOV to CR8 / KVM_SET_SREGS: the TPR of the in-kernel APIC (SDM 11.8.6.1).
    pub(crate) fn set_cr8(&mut self, cr8: u64) {
        self.cr8_value = cr8 & 0xf;
        if let Some(a) = self.lapic.as_mut() {
            a.set_cr8(cr8);
        }
    }

    /// The architectural state after RESET (SDM vol. 3A table 10-1), as KVM reports it before
    /// the first KVM_SET_*REGS: real mode at F000:FFF0. `bsp`: the VM's bootstrap processor
    /// (KVM_SET_BOOT_CPU_ID).
    pub(crate) fn reset(id: u32, bsp: bool, lapic: bool, stuff_vmx_msrs: bool, lint0_reenabled: bool, fpu: KBox<XsaveArea>) -> Self {
        Self {
            bsp_lint0_extint: lint0_reenabled && bsp,
            eoi_exit: None,
            extint: None,
            irq_window_requested: false,
            mce: Mce::default(),
            mtrrs: Mtrrs::default(),
            guest_debug: 0,
            bp_insn_len: 1,
            triple_fault_pending: false,
            arch: ArchState::reset(),
            apic_base: 0xfee0_0000 | (1 << 11) | if bsp { apic_base::BSP } else { 0 },
            cr8_value: 0,
            pending_in: None,
            pending_mmio: None,
            pending_ins: None,
            cpuid: KVec::new(),
            features: GuestFeatures::from_cpuid(&[]),
            ran: false,
            l1d_flush_pending: true,
            syscall_msrs: [0; 5],
            misc_enable: guest_msr::MISC_ENABLE_RESET,
            platform_info: guest_msr::PLATFORM_INFO_CPUID_FAULT,
            misc_features: 0,
            platform_info_readable: true,
            hwcr: 0,
            ucode_rev: guest_msr::UCODE_REV_RESET,
            tsc_offset: 0,
            tsc_adjust: 0,
            fpu,
            xcr0: xsave::XCR0_RESET,
            lapic: lapic.then(|| Self::reset_lapic(id, lint0_reenabled && bsp)),
            nmi_pending: false,
            pending_exception: None,
            // With an in-kernel APIC, application processors wait for INIT/SIPI (KVM).
            mp_state: if lapic && !bsp { mp_state::UNINITIALIZED } else { mp_state::RUNNABLE },
            flushed_for: None,
            published: None,
            nested: Nested::new(stuff_vmx_msrs),
            stats: NvmxVcpuStats::default(),
        }
    }

    /// The local APIC after RESET (KVM's kvm_lapic_reset).
    fn reset_lapic(id: u32, lint0_extint: bool) -> Lapic {
        let a = Lapic::new(id);
        if lint0_extint { a.with_lint0_extint() } else { a }
    }

    /// INIT (SDM 10.1, table 10-1 "INIT" column, as KVM's kvm_vcpu_reset(init_event)):
    /// registers as after RESET but the APIC base and the MSRs kept; the local APIC's
    /// registers reset, its ID, x2APIC mode and CPUID-offered timer modes kept; an
    /// application processor then waits for a SIPI.
    pub(crate) fn init(&mut self, id: u32) {
        let _ = id;
        let apic_base = self.apic_base;
        self.arch = self.arch.init();
        self.pending_in = None;
        self.pending_mmio = None;
        self.pending_ins = None;
        self.nmi_pending = false;
        self.pending_exception = None;
        self.extint = None;
        self.flushed_for = None;
        if let Some(a) = &mut self.lapic {
            a.init();
            if self.bsp_lint0_extint {
                *a = a.with_lint0_extint();
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
        self.arch.sipi(vector);
        self.mp_state = mp_state::RUNNABLE;
    }

    /// What a write by `writer` of an MSR whose value is `current` depends on, with guest
    /// paging on or off (`paging`): the one place the vCPU's side of WriteContext is filled.
    pub(crate) fn msr_write_context(&self, writer: Writer, current: u64, paging: bool) -> WriteContext {
        WriteContext { features: self.features, writer, current, paging, platform_info: self.platform_info }
    }

    /// Whether the guest's RDMSR of `msr` is allowed (else #GP(0), as KVM's for
    /// MSR_PLATFORM_INFO with KVM_CAP_MSR_PLATFORM_INFO off).
    pub(crate) fn guest_may_read(&self, msr: Msr) -> bool {
        msr != Msr::PlatformInfo || self.platform_info_readable
    }

    /// The value of `msr` outside a run (inside one, rust/run.rs reads the VMCS first).
    pub(crate) fn msr(&self, msr: Msr) -> u64 {
        match msr {
            Msr::Tsc => crate::vmx_ops::rdtsc().wrapping_add(self.tsc_offset),
            Msr::TscAdjust => self.tsc_adjust,
            Msr::ApicBase => self.apic_base,
            Msr::SysenterCs => self.arch.sysenter[0],
            Msr::SysenterEsp => self.arch.sysenter[1],
            Msr::SysenterEip => self.arch.sysenter[2],
            Msr::MiscEnable => self.misc_enable,
            Msr::Hwcr => self.hwcr,
            Msr::UcodeRev => self.ucode_rev,
            Msr::PlatformInfo => self.platform_info,
            Msr::MiscFeaturesEnables => self.misc_features,
            Msr::Pat => self.arch.pat,
            Msr::Efer => self.arch.efer,
            Msr::FsBase => self.arch.segs[Seg::Fs as usize].base,
            Msr::GsBase => self.arch.segs[Seg::Gs as usize].base,
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
                let old = self.apic_base;
                self.apic_base = v;
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
            Msr::SysenterCs => self.arch.sysenter[0] = v,
            Msr::SysenterEsp => self.arch.sysenter[1] = v,
            Msr::SysenterEip => self.arch.sysenter[2] = v,
            Msr::MiscEnable => self.misc_enable = v,
            Msr::Hwcr => self.hwcr = v,
            Msr::UcodeRev => self.ucode_rev = v,
            Msr::PlatformInfo => self.platform_info = v,
            Msr::MiscFeaturesEnables => self.misc_features = v,
            Msr::Pat => self.arch.pat = v,
            Msr::Efer => self.arch.efer = v,
            Msr::FsBase => self.arch.segs[Seg::Fs as usize].base = v,
            Msr::GsBase => self.arch.segs[Seg::Gs as usize].base = v,
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
    pub(crate) fn set_sregs(&mut self, s: &KvmSregs) -> Result {
        let f = &self.features;
        if !guest_cr::sregs_valid(f, s.cr0, s.cr4, s.efer, s.cs.l != 0) {
            return Err(EINVAL);
        }
        let cx = self.msr_write_context(Writer::Host, self.apic_base, false);
        if guest_msr::check_write(Msr::ApicBase, s.apic_base, &cx).is_none() {
            return Err(EINVAL);
        }
        if s.interrupt_bitmap.iter().any(|&w| w != 0) {
            return Err(EINVAL);
        }
        let apic_base = s.apic_base;
        self.arch = kvm_state::arch_with_sregs(&self.arch, s);
        // New paging state from outside the guest: its TLB entries (tagged with the VPID,
        // not with CR3) must go, as KVM_REQ_TLB_FLUSH_GUEST does on KVM.
        self.flushed_for = None;
        self.set_msr(Msr::ApicBase, apic_base);
        self.set_cr8(s.cr8);
        Ok(())
    }
}


impl VcpuState {
    /// The state KVM_GET/SET_VCPU_EVENTS describe (the mailbox's NMI and INIT are the
    /// caller's to add).
    pub(crate) fn event_state(&self, payload_enabled: bool, triple_fault_enabled: bool) -> EventState {
        EventState {
            pending_exception: self.pending_exception,
            payload_enabled,
            event: self.arch.event,
            interruptibility: self.arch.interruptibility,
            nmi_pending: self.nmi_pending,
            init_pending: false,
            triple_fault_enabled,
            triple_fault_pending: self.triple_fault_pending,
        }
    }

    /// `KVM_X86_SET_MCE`: log the error, and deliver a #MC or shut down as KVM decides. A
    /// #MC replaces a hardware exception waiting to be injected (KVM's rule for a benign
    /// exception after another); an interrupt or NMI waiting goes back to the APIC or the
    /// pending NMI, to be delivered after it. EINVAL for a bank beyond the count or a status
    /// without VAL.
    pub(crate) fn inject_mce(&mut self, e: &crate::vmx_core::mce::InjectedError) -> kernel::error::Result<isize> {
        use crate::vmx_core::exit::{intr_kind, InterruptionInfo};
        use crate::vmx_core::mce::Outcome;
        let cr4_mce = self.arch.cr4 & (1 << 6) != 0;
        match self.mce.inject(e, cr4_mce).ok_or(kernel::error::code::EINVAL)? {
            Outcome::Logged => {}
            Outcome::TripleFault => self.triple_fault_pending = true,
            Outcome::Exception => {
                if let Some(old) = self.arch.event {
                    let info = InterruptionInfo(old.info);
                    match info.kind() {
                        intr_kind::EXTERNAL => {
                            if let Some(a) = self.lapic.as_mut() {
                                a.request(info.vector());
                            }
                        }
                        intr_kind::NMI => self.nmi_pending = true,
                        _ => {}
                    }
                }
                self.arch.event = Some(crate::vmx_core::arch_state::Event {
                    info: InterruptionInfo::event(intr_kind::HW_EXCEPTION, 18, false).0,
                    ..Default::default()
                });
            }
        }
        Ok(0)
    }

    /// `KVM_SET_GUEST_DEBUG`: EINVAL for what nvmx does not offer (hardware breakpoints,
    /// BLOCKIRQ); EBUSY for an injection while an exception waits, as KVM. KVM_GUESTDBG_
    /// INJECT_DB/BP queue the exception (INT3's length is the last breakpoint exit's).
    pub(crate) fn set_guest_debug(&mut self, requested: u32) -> kernel::error::Result<isize> {
        use crate::vmx_core::exit::{intr_kind, InterruptionInfo};
        use crate::vmx_core::guest_debug as gd;
        let control = gd::control(requested).ok_or(kernel::error::code::EINVAL)?;
        if requested & (gd::INJECT_DB | gd::INJECT_BP) != 0 {
            let exception_waits = self.arch.event.is_some_and(|e| {
                matches!(InterruptionInfo(e.info).kind(), intr_kind::HW_EXCEPTION | intr_kind::SW_EXCEPTION | intr_kind::PRIV_SW_EXCEPTION)
            });
            if exception_waits {
                return Err(kernel::error::code::EBUSY);
            }
            self.arch.event = Some(if requested & gd::INJECT_DB != 0 {
                crate::vmx_core::arch_state::Event { info: InterruptionInfo::event(intr_kind::HW_EXCEPTION, 1, false).0, ..Default::default() }
            } else {
                crate::vmx_core::arch_state::Event {
                    info: InterruptionInfo::event(intr_kind::SW_EXCEPTION, 3, false).0,
                    error_code: 0,
                    insn_len: self.bp_insn_len,
                }
            });
        }
        self.guest_debug = control;
        Ok(0)
    }

    /// Store what KVM_SET_VCPU_EVENTS decided (the INIT goes to the mailbox).
    pub(crate) fn set_event_state(&mut self, s: &EventState) {
        self.pending_exception = s.pending_exception;
        self.arch.event = s.event;
        self.arch.interruptibility = s.interruptibility;
        self.nmi_pending = s.nmi_pending;
        self.triple_fault_pending = s.triple_fault_pending;
    }
}

/// Where the vCPU's next external interrupt comes from ([`VcpuState::pending_interrupt`]).
#[derive(Clone, Copy)]
pub(crate) enum PendingInterrupt {
    /// The VMM's PIC (KVM_INTERRUPT).
    ExtInt(u8),
    /// The in-kernel local APIC.
    Apic(u8),
}

impl PendingInterrupt {
    pub(crate) fn vector(self) -> u8 {
        match self {
            PendingInterrupt::ExtInt(v) | PendingInterrupt::Apic(v) => v,
        }
    }
}
