// SPDX-License-Identifier: GPL-2.0
//! `KVM_RUN`: the run loop.
//!
//! Each pass enters an IRQs-off region (Documentation/nvmx.rst, "Why IRQs-off regions only"): CR4.VMXE, VMXON, VMCLEAR + VMPTRLD of
//! the vCPU's VMCS, the whole VMCS written from the vCPU state, INVEPT, then VMLAUNCH. Exits
//! nvmx can finish without the host (CPUID, CR0/CR4 writes, MSR accesses) are handled there
//! and the guest resumed; anything else leaves the region — guest state read back, VMCLEAR,
//! VMXOFF, host state and CR4 restored — before interrupts are enabled again, either to let
//! the host run (external interrupt, NMI, reschedule, signal) or to return to userspace.

use kernel::interrupt::LocalInterruptDisabled;
use kernel::prelude::*;

use crate::shim::{self, pr_err_ratelimited, HostState};
use crate::uapi::{exit as kvm_exit, mp_state, KvmRunPage};
use crate::vmcs::{CurrentVmcs, LoadedVmcs};
use crate::guest_regs::{
    advance_rip, cpu_mode, guest_cr0, guest_cr4, inject, read_reg, skip_instruction, write_reg, CR0_CD,
    CR0_NW, CR0_OWNED, GP_VECTOR, UD_VECTOR,
};
use crate::guest_memory::{copy_guest, AccessError, GuestMemory};
use crate::msr_route::{check_guest_wrmsr, MsrHome};
use crate::vmx_core::arch_state::{self, Rows, Seg, Vmcs, EVENT_VALID};
use crate::vmx_core::{guest_debug, vcpu_events};
use crate::vmx_core::ioeventfd;
use crate::vmx_core::mce::Mce;
use crate::vmx_core::mtrr;
use crate::vmx_core::nested_switch::{L0Controls, L1Intercepts};
use crate::vmx_core::segment::AccessRights;
use crate::vcpu::Vcpu;
use crate::vcpu_state::{PendingIn, PendingIns, PendingMmio, VcpuState, SYSCALL_MSRS};
use crate::vmx_core::insn::{self, CpuMode, Decoded, Gpr};
use crate::vmx_core::paging::PagingRegs;
use crate::vmx_core::controls::{cr0, cr4, entry, pin, primary};
use crate::vmx_core::cpuid;
use crate::vmx_core::xsave;
use crate::vmx_core::exception;
use crate::vmx_core::debug_regs::{DrAccess, DrFault};
use crate::vmx_core::guest_cr;
use crate::vmx_core::guest_msr::{Msr, Writer};
use crate::vmx_core::lapic::{reg as lapic_reg, ApicError, Delivery, Destination, WriteEffect};
use crate::vmx_core::exit::{
    intr_kind, merge_in, reason, string_io_addr_mask, string_io_batch, string_reg_add, CrAccess, ExitReason,
    InterruptionInfo, IoQualification,
};
use crate::vmx_core::field_table as f;
use crate::vmx_core::host::{self, GuestControls, HostCaps};
use crate::vmx_ops::{self, VmFail};
use crate::{nested, nested_ept, HOST};

/// EFER.LME / EFER.LMA.
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// CR4 bits whose every change exits, whatever the guest's CPUID: VMXE (held by VMX
/// operation) and the bits with IA-32e-mode rules (PAE, LA57, PCIDE). The bits the guest's
/// CPUID does not offer are added per vCPU, so that setting one exits and becomes #GP.
const CR4_OWNED: u64 = cr4::VMXE | cr4::PAE | guest_cr::CR4_LA57 | guest_cr::CR4_PCIDE;
/// KVM_INTERNAL_ERROR_* suberrors.
const INTERNAL_ERROR_EMULATION: u32 = 1;
const INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: u32 = 4;
/// KVM_INTERNAL_ERROR_SIMUL_EX: an exception while another event was being delivered.
const INTERNAL_ERROR_SIMUL_EX: u32 = 2;
/// KVM_INTERNAL_ERROR_DELIVERY_EV: an exit during event delivery that nvmx cannot resolve.
const INTERNAL_ERROR_DELIVERY_EV: u32 = 3;
/// Budget of one guest stretch in TSC ticks when the VMX-preemption timer is active: the
/// guest leaves the CPU to the host at least this often, whether or not host interrupts turn
/// into VM exits (Bochs, for one, does not while the guest runs with RFLAGS.IF=0 after a host
/// that also had IF=0).
const PREEMPTION_TSC_BUDGET: u64 = 4_000_000;
const RFLAGS_IF: u64 = 1 << 9;
/// EPT-violation exit qualification bit 1: the access was a data write (SDM table 28-7).
const EPT_VIOLATION_WRITE: u64 = 1 << 1;
/// IA32_PRED_CMD.IBPB and IA32_FLUSH_CMD.L1D_FLUSH.
const MSR_IA32_PRED_CMD: u32 = 0x49;
const PRED_CMD_IBPB: u64 = 1;
const MSR_IA32_FLUSH_CMD: u32 = 0x10b;
const L1D_FLUSH: u64 = 1;
/// IA32_DEBUGCTL, and DR7 as a VM exit leaves it.
const MSR_IA32_DEBUGCTL: u32 = 0x1d9;
const DR7_RESET: u64 = 0x400;

/// Why the region was left.
enum Leave {
    /// The host needs the CPU (interrupt, NMI, reschedule): enter again afterwards.
    Host { nmi: bool },
    /// The guest halted with nothing to deliver (in-kernel local APIC): sleep until an
    /// interrupt is posted or the APIC timer is due, then enter again.
    Halt,
    /// Return to userspace with this exit.
    User(UserExit),
    /// A nested VM entry or exit (`st.nested.switch`): switch between VMCS01 and VMCS02
    /// (handled inside the region, never seen by the run loop).
    Nested,
}

/// An exit to userspace, written into `struct kvm_run`.
enum UserExit {
    Io { is_in: bool, size: u8, port: u16, data: u32 },
    /// INS/OUTS: `count` items in the PIO page (OUTS: already copied there).
    StringIo { is_in: bool, size: u8, port: u16, count: u32 },
    Mmio { gpa: u64, size: u8, is_write: bool, data: u64 },
    Hlt,
    Shutdown,
    FailEntry { reason: u64, cpu: u32 },
    Internal { suberror: u32, data: [u64; 5], ndata: u32 },
    /// The guest's EOI of a vector that a level-triggered I/O APIC route sent.
    IoapicEoi(u8),
    /// KVM_EXIT_DEBUG (KVM_SET_GUEST_DEBUG): a single step (1) or an INT3 (3) at `pc`.
    Debug { exception: u32, pc: u64, dr6: u64, dr7: u64 },
    /// KVM_EXIT_IRQ_WINDOW_OPEN: the VMM asked for it and may inject an ExtINT now.
    IrqWindowOpen,
}

/// `KVM_RUN` on `vcpu`.
pub(crate) fn run(vcpu: &Vcpu) -> Result<isize> {
    let host = HOST.as_ref().ok_or(ENODEV)?;
    let mut st = vcpu.state.lock();
    // SAFETY: the vCPU's own kvm_run page, allocated with it.
    let run = unsafe { KvmRunPage::new(shim::page_address(&vcpu.run_page)) };
    let pio = shim::page_address(&vcpu.pio_page);

    // Finish an IN whose data userspace has put into the PIO page.
    if let Some(PendingIn { size }) = st.pending_in.take() {
        // SAFETY: the PIO page is ours, mapped for userspace which may write it concurrently:
        // a torn value is the VMM's own doing and harms only its guest.
        let data = unsafe { (pio as *const u32).read_volatile() };
        st.arch.gprs[0] = merge_in(st.arch.gprs[0], data, size);
    }
    // Finish an INS batch: as many items as the (possibly changed) RCX still asks for go
    // from the PIO page to ES:RDI, then RDI and RCX move on; the instruction completes when
    // RCX reaches 0, else it runs again (and exits again for the next batch).
    if let Some(ins) = st.pending_ins.take() {
        vcpu.vm.with_memory(|eptp| complete_ins(&mut st, &ins, pio, eptp));
    }
    // Finish an MMIO read with the data userspace put into kvm_run.mmio.data.
    if let Some(PendingMmio { dst, dst_size, size, extend }) = st.pending_mmio.take() {
        let data = run.mmio_data();
        let reg = &mut st.arch.gprs[usize::from(dst.reg() & 15)];
        *reg = insn::load(*reg, dst, dst_size, size, extend, data);
    }

    st.irq_window_requested = run.request_interrupt_window();
    st.platform_info_readable = vcpu.vm.platform_info_readable();
    loop {
        // KVM returns EINTR for immediate_exit without touching exit_reason: a client that
        // completes an I/O this way still sees its last exit (the selftests' ucalls do).
        if run.immediate_exit() {
            return Err(EINTR);
        }
        if current!().signal_pending() {
            run.set_exit_reason(kvm_exit::INTR);
            return Err(EINTR);
        }
        if st.lapic.is_some() && !wait_until_runnable(host, vcpu, &mut st) {
            run.set_exit_reason(kvm_exit::INTR);
            return Err(EINTR);
        }
        // The VMM asked for an interrupt window that is already open (KVM exits after one
        // entry that runs no instruction; nvmx does not enter at all).
        if st.irq_window_requested && !st.nested.guest_mode && st.ready_for_interrupt_injection() {
            report(run, pio, &mut st, UserExit::IrqWindowOpen);
            return Ok(0);
        }
        // A VMX abort outside a region (a nested exit while completing INS): L1's shutdown;
        // so is a pending triple fault outside guest mode (in guest mode it is L1's VM exit,
        // nested::triple_fault_exit).
        let triple_fault = st.triple_fault_pending && !st.nested.guest_mode;
        if st.nested.take_vmx_abort() || triple_fault {
            st.triple_fault_pending = false;
            report(run, pio, &mut st, UserExit::Shutdown);
            return Ok(0);
        }
        st.deliver_pending_exception();
        nested::prepare_region(&mut st)?;
        let (generation, eptp) = vcpu.vm.current_ept();
        let leave = {
            let irqs_off = kernel::interrupt::local_interrupt_disable();
            region(&irqs_off, host, vcpu, &mut st, eptp, generation)
        };
        match leave? {
            Leave::Host { .. } => shim::cond_resched(),
            // mp_state says HALTED or that an INIT arrived: wait_until_runnable takes over.
            Leave::Halt => {}
            Leave::User(exit) => {
                st.stats.user_exits += 1;
                report(run, pio, &mut st, exit);
                return Ok(0);
            }
            Leave::Nested => {}
        }
    }
}

/// With an in-kernel local APIC: take INIT and SIPI, then sleep while the vCPU cannot run —
/// halted with nothing it can take (RFLAGS.IF = 1 and a deliverable interrupt, or an NMI),
/// or an application processor waiting for INIT/SIPI. The APIC timer bounds the sleep.
/// False if a signal ended it (KVM_RUN fails with EINTR; the state stays, so the next
/// KVM_RUN goes on waiting, as KVM's does).
fn wait_until_runnable(host: &crate::HostInfo, vcpu: &Vcpu, st: &mut VcpuState) -> bool {
    loop {
        let (init, sipi) = vcpu.mailbox.take_init_sipi();
        if init {
            st.init(vcpu.id);
        }
        if let Some(v) = sipi {
            st.sipi(v);
        }
        let now = vmx_ops::rdtsc().wrapping_add(st.tsc_offset);
        if st.mp_state == mp_state::HALTED && collect_events(vcpu, st, now, st.arch.rflags & RFLAGS_IF != 0) {
            st.mp_state = mp_state::RUNNABLE;
        }
        if st.mp_state == mp_state::RUNNABLE {
            return true;
        }
        let timeout_ms = st.lapic.as_ref().and_then(|a| a.timer_ticks_left(now)).map(|left| {
            left / u64::from(host.tsc_khz.max(1)) + 1
        });
        if !vcpu.mailbox.wait(timeout_ms) {
            return false;
        }
    }
}

/// Fill `struct kvm_run` for an exit to userspace.
fn report(run: KvmRunPage, pio: *mut u8, st: &mut VcpuState, exit: UserExit) {
    match exit {
        UserExit::Io { is_in, size, port, data } => {
            run.set_io(is_in, size, port, 1);
            if is_in {
                st.pending_in = Some(PendingIn { size });
            } else {
                // SAFETY: the first 4 bytes of our PIO page.
                unsafe { (pio as *mut u32).write_volatile(data) };
            }
        }
        UserExit::StringIo { is_in, size, port, count } => run.set_io(is_in, size, port, count),
        UserExit::Mmio { gpa, size, is_write, data } => run.set_mmio(gpa, size as u32, is_write, data),
        UserExit::Hlt => run.set_exit_reason(kvm_exit::HLT),
        UserExit::Shutdown => run.set_exit_reason(kvm_exit::SHUTDOWN),
        UserExit::FailEntry { reason, cpu } => run.set_fail_entry(reason, cpu),
        UserExit::Internal { suberror, data, ndata } => run.set_internal(suberror, &data, ndata),
        UserExit::IoapicEoi(vector) => run.set_ioapic_eoi(vector),
        UserExit::Debug { exception, pc, dr6, dr7 } => run.set_debug(exception, pc, dr6, dr7),
        UserExit::IrqWindowOpen => run.set_exit_reason(kvm_exit::IRQ_WINDOW_OPEN),
    }
}

/// One IRQs-off region: enter VMX operation, run the guest until something needs the host
/// or userspace, leave VMX operation. Interrupts must be disabled by the caller.
fn region(irqs_off: &LocalInterruptDisabled, host: &crate::HostInfo, vcpu: &Vcpu, st: &mut VcpuState, eptp: u64, generation: u64) -> Result<Leave> {
    let cpu = shim::this_cpu();
    let vmxon = *host.vmxon_phys.get(cpu as usize).ok_or(EIO)?;
    let cr4_before = vmx_ops::read_cr4();
    let cr4_vmx = host::cpu_entry_cr4(&host.caps, vmx_ops::read_cr0(), cr4_before).map_err(|r| {
        pr_err_ratelimited!("cpu{cpu}: {}\n", format_args!("{r}"));
        Error::from_errno(-r.errno())
    })?;
    let hs = HostState::save();
    // A VM exit sets DR7 to 0x400 and clears IA32_DEBUGCTL (SDM 28.5.1): the host's hardware
    // breakpoints (ptrace watchpoints, perf) and branch recording are put back below.
    let host_dr7 = vmx_ops::read_dr7();
    let host_debugctl = if host.has_debugctl { vmx_ops::rdmsr(MSR_IA32_DEBUGCTL) } else { 0 };
    // The guest's DR0-DR3 and DR6 go on the CPU only when its DR7 enables a breakpoint
    // (KVM's switch_db_regs): the host's are kept and put back, with the host's breakpoints
    // off (DR7 0x400) before any guest address is in DR0-DR3.
    let host_dbs = st.arch.debug.breakpoints_enabled().then(|| {
        let saved = [0u8, 1, 2, 3, 6].map(vmx_ops::read_dr);
        // SAFETY: DR7 = 0x400 first (no breakpoint enabled in the host), then the guest's
        // addresses and status (DR6 with its fixed bits, debug_regs.rs).
        unsafe {
            vmx_ops::write_dr7(DR7_RESET);
            for (n, v) in [0u8, 1, 2, 3].into_iter().zip(st.arch.debug.db) {
                vmx_ops::write_dr(n, v);
            }
            vmx_ops::write_dr(6, st.arch.debug.dr6);
        }
        saved
    });
    // The guest's extended state and XCR0 go on the CPU for the region, in a kernel-mode
    // FPU section: the task's own state is saved and comes back on its way to userspace.
    // XRSTOR runs under the host's XCR0 (the area's XSTATE_BV may name components the
    // guest's XCR0 leaves out), then XSETBV gives the guest its own.
    let fpu_section = shim::KernelFpu::begin(irqs_off);
    let xs = &host.xsave;
    // SAFETY: the area passed read_xsave's checks (or XSAVE wrote it); in the FPU section.
    unsafe { vmx_ops::xrstor(&st.fpu, xs.enabled, xs.supported) };
    if xs.enabled && st.xcr0 != xs.host_xcr0 {
        // SAFETY: xcr0_valid within the host's XCR0 (XSETBV exit, KVM_SET_XCRS); the host's
        // is written back below, still IRQs off.
        unsafe { vmx_ops::xsetbv0(st.xcr0) };
    }
    // The guest's SYSCALL MSRs replace the host's for the region (IRQs are off, so nothing
    // else in the kernel sees or uses them meanwhile).
    let host_msrs = SYSCALL_MSRS.map(|m| vmx_ops::rdmsr(m.index()));
    for (m, v) in SYSCALL_MSRS.iter().zip(st.syscall_msrs) {
        // SAFETY: values checked by guest_msr::check_write; the host's are put back below.
        unsafe { vmx_ops::wrmsr(m.index(), v) };
    }
    // CR2 is not in the VMCS: the guest's is loaded for the region and read back after it
    // (the host's own matters only inside its page-fault handler, which IRQs-off code
    // touching only pinned and direct-mapped memory never enters).
    // SAFETY: IRQs off; CR2 is restored to nothing the host relies on.
    unsafe { vmx_ops::write_cr2(st.arch.cr2) };
    st.ran = true;
    st.l1d_flush_pending = true;
    // Another vCPU ran here last: its branch predictions must not steer this one (IBPB,
    // as KVM does when a CPU switches VMCS; VMCS01/VMCS02 of one vCPU are one vCPU).
    if host.mitigations.ibpb_on_vcpu_switch {
        if let Some(last) = host.last_vcpu.get(cpu as usize) {
            if last.swap(vcpu.status_key, core::sync::atomic::Ordering::Relaxed) != vcpu.status_key {
                // SAFETY: IA32_PRED_CMD exists (the kernel's X86_FEATURE_IBPB); IBPB only.
                unsafe { vmx_ops::wrmsr(MSR_IA32_PRED_CMD, PRED_CMD_IBPB) };
            }
        }
    }
    vcpu.mailbox.set_running(Some((cpu, generation)));
    // SAFETY: IRQs are off until CR4 is restored below; only VMXE changes.
    unsafe { vmx_ops::write_cr4(cr4_vmx) };
    // SAFETY: VMXE set, IRQs off, this CPU's own VMXON region.
    let result = match unsafe { vmx_ops::vmxon(vmxon) } {
        Err(e) => {
            pr_err_ratelimited!("cpu{cpu}: VMXON failed ({e:?})\n");
            Err(EIO)
        }
        // A slot change between current_ept() and set_running() above saw this vCPU not
        // running and did not wait for it: go round again with the new generation (the
        // generation is bumped before the slot side looks at running vCPUs, so one of the
        // two always sees the other).
        Ok(()) if vcpu.vm.memory_generation.load(core::sync::atomic::Ordering::SeqCst) != generation => {
            st.stats.vmx_regions += 1;
            // SAFETY: VMXON succeeded above; no VMCS was loaded.
            if let Err(e) = unsafe { vmx_ops::vmxoff() } {
                pr_err_ratelimited!("cpu{cpu}: VMXOFF failed ({e:?})\n");
            }
            Ok(Leave::Host { nmi: false })
        }
        Ok(()) => {
            st.stats.vmx_regions += 1;
            let r = in_vmx(irqs_off, host, vcpu, st, eptp, generation, &hs, cpu);
            // SAFETY: VMXON succeeded above in this region; the VMCS was cleared by in_vmx.
            if let Err(e) = unsafe { vmx_ops::vmxoff() } {
                pr_err_ratelimited!("cpu{cpu}: VMXOFF failed ({e:?})\n");
            }
            r
        }
    };
    vcpu.mailbox.set_running(None);
    st.arch.cr2 = vmx_ops::read_cr2();
    // SWAPGS in the guest changes KERNEL_GS_BASE without an exit: read all of them back.
    for (i, m) in SYSCALL_MSRS.iter().enumerate() {
        st.syscall_msrs[i] = vmx_ops::rdmsr(m.index());
        // SAFETY: the host's own values, read above.
        unsafe { vmx_ops::wrmsr(m.index(), host_msrs[i]) };
    }
    if xs.enabled && st.xcr0 != xs.host_xcr0 {
        // SAFETY: the host's own XCR0, read at load (Linux does not change it afterwards).
        unsafe { vmx_ops::xsetbv0(xs.host_xcr0) };
    }
    vmx_ops::xsave(&mut st.fpu, xs.enabled, xs.supported);
    drop(fpu_section);
    if let Some(saved) = host_dbs {
        // A #DB in the guest set DR6 bits; DR0-DR3 only change through MOV DR, which exits.
        st.arch.debug.set_dr6_from_cpu(vmx_ops::read_dr(6));
        for (n, v) in [0u8, 1, 2, 3, 6].into_iter().zip(saved) {
            // SAFETY: the host's own values, read above; DR7 is still 0x400 (a VM exit set
            // it) until the host's own is put back below.
            unsafe { vmx_ops::write_dr(n, v) };
        }
    }
    if host_dr7 != DR7_RESET {
        // SAFETY: the host's own DR7, read above.
        unsafe { vmx_ops::write_dr7(host_dr7) };
    }
    if host_debugctl != 0 {
        // SAFETY: the host's own IA32_DEBUGCTL, read above.
        unsafe { vmx_ops::wrmsr(MSR_IA32_DEBUGCTL, host_debugctl) };
    }
    hs.restore();
    // SAFETY: still IRQs off; back to the value the kernel's shadow holds.
    unsafe { vmx_ops::write_cr4(cr4_before) };
    if let Ok(Leave::Host { nmi: true }) = result {
        shim::deliver_host_nmi();
    }
    result
}

/// In VMX root operation: load the VMCS (VMCS01 for L1, VMCS02 while L2 runs), run, read
/// the guest state back, VMCLEAR. A nested VM entry or exit (rust/nested.rs) switches from
/// one VMCS to the other without leaving VMX operation.
fn in_vmx(
    irqs_off: &LocalInterruptDisabled,
    host: &crate::HostInfo,
    vcpu: &Vcpu,
    st: &mut VcpuState,
    eptp: u64,
    generation: u64,
    hs: &HostState,
    cpu: u32,
) -> Result<Leave> {
    // Which of VMCS01 / VMCS02 has been written whole in this region.
    let mut written = [false; 2];
    // The region's preemption-timer budget runs across nested switches (guest_loop).
    let region_start = vmx_ops::rdtsc();
    loop {
        let l2 = st.nested.guest_mode;
        // L2 under L1's EPT needs EPT02 with spare tables, which only process context can
        // provide (rust/nested_ept.rs): leave, the run loop prepares them and comes back.
        if st.nested.l2_eptp12().is_some() && !st.nested.shadow_ept.as_ref().is_some_and(|s| s.ready()) {
            return Ok(Leave::Host { nmi: false });
        }
        let vmcs = if l2 { vcpu.vmcs02_phys } else { vcpu.vmcs_phys };
        // SAFETY (all VMX instructions in this function): VMX root operation with IRQs off;
        // the VMCS regions are this vCPU's, which only this thread (holding the vCPU lock)
        // touches.
        unsafe {
            vmx_ops::vmclear(vmcs).map_err(|_| EIO)?;
            vmx_ops::vmptrld(vmcs).map_err(|_| EIO)?;
        }
        let leave = {
            // SAFETY: VMX root operation (region()'s VMXON) with this vCPU's VMCS just made
            // current; the token ends with this block, before the VMCLEAR below.
            let cur = &unsafe { LoadedVmcs::new(irqs_off) };
            // VMCS02 is VMCS01's setup for L2's state, with L1's VMCS12 controls merged in; it
            // has no VPID of its own (rust/nested.rs).
            let what = if written[l2 as usize] { VmcsWrite::Guest } else { VmcsWrite::All };
            written[l2 as usize] = true;
            let result = write_vmcs(cur, &host.caps, &host.controls, st, eptp, hs, if l2 { 0 } else { vcpu.vpid.0 }, what, l2)
                .and_then(|()| if l2 { nested::merge_vmcs02(cur, st, &l0_controls(&host.caps, &host.controls, st, eptp), eptp) } else { Ok(()) });
            let (prev_cr0, prev_cr4) = (st.arch.cr0, st.arch.cr4);
            // Writing VMCS01's controls turns VMCS shadowing off; shadow_vmcs::before_l1 turns it
            // on for L1 (VMCS01 written again in the region keeps it as it was).
            if !l2 && what == VmcsWrite::All {
                st.nested.shadow.active = false;
            }
            let leave = match result {
                Err(field) => {
                    pr_err_ratelimited!("VMWRITE of field {field:#x} failed\n");
                    Leave::User(UserExit::Internal {
                        suberror: INTERNAL_ERROR_EMULATION,
                        data: [field as u64, 0, 0, 0, 0],
                        ndata: 1,
                    })
                }
                Ok(()) => {
                    // TLB entries derived from an EPT are tagged with its EPTP (and the VPID):
                    // they can be stale only if this vCPU last ran on another CPU (where its guest
                    // may have invalidated since), or with another EPT or memory generation (an
                    // EPT's tables are freed with it, and a new one may reuse their addresses), or
                    // after a nested transition changed L1's CR3 without a MOV. Then INVEPT;
                    // otherwise the vCPU keeps its TLB across regions.
                    let now = (cpu, eptp, generation);
                    let single = host.caps.ept_vpid.invept_single_context();
                    let eptp12 = st.nested.l2_eptp12();
                    if let (Some(eptp12), Some(shadow)) = (eptp12, st.nested.shadow_ept.as_mut()) {
                        // EPT02's translations: from this EPT12 and this L0 memory generation,
                        // and invalidated on this CPU since they last changed.
                        shadow.use_for(eptp12, generation);
                        if shadow.flushed_for != Some((cpu, generation)) {
                            // SAFETY: VMX root operation.
                            if unsafe { vmx_ops::invept(shadow.eptp, single) }.is_ok() {
                                shadow.flushed_for = Some((cpu, generation));
                            }
                        }
                    } else if st.flushed_for != Some(now) {
                        // SAFETY: VMX root operation.
                        if unsafe { vmx_ops::invept(eptp, single) }.is_ok() {
                            st.flushed_for = Some(now);
                        }
                    }
                    guest_loop(cur, vcpu, st, cpu, eptp, generation, region_start)
                }
            };
            read_back(cur, st);
            // What L1 wrote into the shadow VMCS without an exit goes into VMCS12 before the
            // region ends: outside a region VMCS12 is the whole truth (KVM_GET_NESTED_STATE).
            if !l2 {
                crate::shadow_vmcs::pull(cur, st, vcpu.vmcs_phys);
            }
            if l2 {
                nested::fix_l2_readback(cur, st, prev_cr0, prev_cr4, CR0_OWNED, l0_cr4_mask(&host.caps, st));
            }
            leave
        };
        // SAFETY: see above.
        unsafe { vmx_ops::vmclear(vmcs).map_err(|_| EIO)? };
        match leave {
            Leave::Nested => {
                nested::apply_switch(st, eptp, MsrHome::Region);
                // A VMX abort (an MSR list failed at a nested exit): L1 is in shutdown.
                if st.nested.take_vmx_abort() {
                    return Ok(Leave::User(UserExit::Shutdown));
                }
                // As after an exit handled for the guest (guest_loop).
                if host_waits(vcpu, generation) {
                    return Ok(Leave::Host { nmi: false });
                }
            }
            other => return Ok(other),
        }
    }
}

/// The CR4 bits L0 owns for a vCPU: VMXE and the IA-32e-mode bits, the fixed-1 bits of VMX
/// operation, and what the guest's CPUID does not offer.
fn l0_cr4_mask(caps: &HostCaps, st: &VcpuState) -> u64 {
    CR4_OWNED | caps.cr4_fixed.fixed0 | !guest_cr::cr4_allowed(&st.features)
}

/// What of the current VMCS [`write_vmcs`] writes. A VMCS keeps its contents through
/// VMCLEAR and VMPTRLD, so within one region (one CPU, one task, one EPT) the host state and
/// L0's fixed controls written at a VMCS's first load stay valid: a nested switch back to it
/// writes only what changes. For VMCS02 that is the guest state and the merge, which writes
/// every control it derives from L0's and VMCS12's (nested_switch::merge_vmcs02).
#[derive(Clone, Copy, PartialEq, Eq)]
enum VmcsWrite {
    /// First load in this region: everything.
    All,
    /// Loaded before in this region: the guest state.
    Guest,
}

/// L0's controls for L2's state as [`write_vmcs`] wrote them into VMCS02, without reading
/// them back: the merge's starting point.
fn l0_controls(caps: &HostCaps, c: &GuestControls, st: &VcpuState, eptp: u64) -> L0Controls {
    let a = &st.arch;
    L0Controls {
        pin: c.pin,
        primary: c.primary,
        secondary: c.secondary,
        cr0_mask: CR0_OWNED,
        cr4_mask: l0_cr4_mask(caps, st),
        cr0_shadow: a.cr0,
        cr4_shadow: a.cr4,
        guest_cr0: arch_state::hw_cr0(a.cr0, caps.cr0_fixed.fixed0, true),
        cr0_fixed0: caps.cr0_fixed.fixed0,
        tsc_offset: st.tsc_offset,
        eptp,
    }
}

/// Write controls, host state and guest state into the current VMCS (as `what` says).
fn write_vmcs(cur: &LoadedVmcs<'_>, 
    caps: &HostCaps,
    c: &GuestControls,
    st: &VcpuState,
    eptp: u64,
    hs: &HostState,
    vpid: u16,
    what: VmcsWrite,
    vmcs02: bool,
) -> core::result::Result<(), u32> {
    if what != VmcsWrite::Guest {
        write_controls(cur, caps, c, st, eptp, vpid)?;
    }
    if what == VmcsWrite::All {
        write_host_state(cur, hs)?;
    }
    write_guest_state(cur, caps, c, st, vmcs02)
}

/// L0's controls (SDM 25.6-25.8), the same for the vCPU's whole life but for VMCS02's merge.
fn write_controls(cur: &LoadedVmcs<'_>, caps: &HostCaps, c: &GuestControls, st: &VcpuState, eptp: u64, vpid: u16) -> core::result::Result<(), u32> {
    cur.w(f::PIN_BASED_VM_EXEC_CONTROL, c.pin)?;
    cur.w(f::CPU_BASED_VM_EXEC_CONTROL, c.primary)?;
    let vpid_ctl = if vpid != 0 { crate::vmx_core::controls::secondary::ENABLE_VPID } else { 0 };
    cur.w(f::SECONDARY_VM_EXEC_CONTROL, c.secondary | vpid_ctl)?;
    if vpid != 0 {
        cur.w(f::VIRTUAL_PROCESSOR_ID, vpid)?;
    }
    cur.w(f::VM_EXIT_CONTROLS, c.exit)?;
    // #DB, #AC and #MC always exit (rust/core/src/exception.rs says why).
    cur.w(f::EXCEPTION_BITMAP, exception::l0_exception_bitmap(st.guest_debug & guest_debug::USE_SW_BP != 0))?;
    for field in [f::PAGE_FAULT_ERROR_CODE_MASK, f::PAGE_FAULT_ERROR_CODE_MATCH,
                  f::CR3_TARGET_COUNT, f::VM_EXIT_MSR_STORE_COUNT, f::VM_EXIT_MSR_LOAD_COUNT,
                  f::VM_ENTRY_MSR_LOAD_COUNT] {
        cur.w(field, 0)?;
    }
    cur.w(f::EPT_POINTER, eptp)?;
    cur.w(f::VMCS_LINK_POINTER, u64::MAX)?;
    cur.w(f::CR0_GUEST_HOST_MASK, CR0_OWNED)?;
    cur.w(f::CR4_GUEST_HOST_MASK, l0_cr4_mask(caps, st))
}

/// Host state: this CPU, this task (SDM 27.2.2/27.2.3: selectors with RPL 0 and TI 0), the
/// same for the whole region.
fn write_host_state(cur: &LoadedVmcs<'_>, hs: &HostState) -> core::result::Result<(), u32> {
    let (cs, ss, tr) = vmx_ops::host_selectors();
    cur.w(f::HOST_CR0, vmx_ops::read_cr0())?;
    cur.w(f::HOST_CR3, vmx_ops::read_cr3())?;
    cur.w(f::HOST_CR4, vmx_ops::read_cr4())?;
    cur.w(f::HOST_CS_SELECTOR, cs)?;
    cur.w(f::HOST_SS_SELECTOR, ss)?;
    for field in [f::HOST_DS_SELECTOR, f::HOST_ES_SELECTOR, f::HOST_FS_SELECTOR, f::HOST_GS_SELECTOR] {
        cur.w(field, 0)?;
    }
    cur.w(f::HOST_TR_SELECTOR, tr)?;
    cur.w(f::HOST_FS_BASE, hs.fs_base)?;
    cur.w(f::HOST_GS_BASE, hs.gs_base)?;
    cur.w(f::HOST_TR_BASE, hs.tr_base)?;
    cur.w(f::HOST_GDTR_BASE, hs.gdt_base)?;
    cur.w(f::HOST_IDTR_BASE, hs.idt_base)?;
    // A 32-bit field: the selector the MSR's low bits hold (SDM 25.5).
    cur.w(f::HOST_IA32_SYSENTER_CS, vmx_ops::rdmsr(0x174) as u32)?;
    cur.w(f::HOST_IA32_SYSENTER_ESP, vmx_ops::rdmsr(0x175))?;
    cur.w(f::HOST_IA32_SYSENTER_EIP, vmx_ops::rdmsr(0x176))?;
    cur.w(f::HOST_IA32_EFER, vmx_ops::rdmsr(0xc000_0080))?;
    cur.w(f::HOST_IA32_PAT, vmx_ops::rdmsr(0x277))?;
    cur.w(f::HOST_RIP, vmx_ops::vmx_exit_rip())
}

/// The vCPU's state through the guest-state table, the hardware's view of CR0/CR4 over it,
/// and what depends on the state (the IA-32e mode entry control, the event to inject, the
/// TSC offset).
fn write_guest_state(cur: &LoadedVmcs<'_>, caps: &HostCaps, c: &GuestControls, st: &VcpuState, vmcs02: bool) -> core::result::Result<(), u32> {
    let a = &st.arch;
    let mut vmcs = CurrentVmcs::new(cur);
    a.store(&mut vmcs, Rows::FOR_HARDWARE);
    let entry_ctl = c.entry | if a.long_mode() { entry::IA32E_MODE_GUEST } else { 0 };
    let event = a.event.unwrap_or_default().for_entry(a.cr0 & crate::vmx_core::controls::cr0::PE != 0);
    vmcs.put(f::VM_ENTRY_CONTROLS, entry_ctl);
    vmcs.put(f::VM_ENTRY_INTR_INFO_FIELD, event.info);
    vmcs.put(f::VM_ENTRY_EXCEPTION_ERROR_CODE, event.error_code);
    vmcs.put(f::VM_ENTRY_INSTRUCTION_LEN, event.insn_len);
    // Hardware CR0: the guest's, with NE forced and CD/NW cleared (the shadow shows the
    // guest's own value); unrestricted guest lifts the PE/PG requirement of CR0_FIXED0. In
    // VMCS02 the merge writes CR0 and the read shadows with L1's bits, and L2's TSC offset.
    if !vmcs02 {
        vmcs.put(f::GUEST_CR0, arch_state::hw_cr0(a.cr0, caps.cr0_fixed.fixed0, true));
        vmcs.put(f::CR0_READ_SHADOW, a.cr0);
        vmcs.put(f::CR4_READ_SHADOW, a.cr4);
        vmcs.put(f::TSC_OFFSET, st.tsc_offset);
    }
    vmcs.put(f::GUEST_CR4, a.cr4 | caps.cr4_fixed.fixed0);
    // TF is the VMM's while it single-steps the guest; under an STI or MOV-SS shadow the
    // step the shadow delays is pending (BS).
    let rflags = guest_debug::hardware_rflags(a.rflags | arch_state::RFLAGS_FIXED, st.guest_debug);
    vmcs.put(f::GUEST_RFLAGS, rflags);
    vmcs.put(f::GUEST_IA32_DEBUGCTL, 0);
    vmcs.put(f::GUEST_ACTIVITY_STATE, 0);
    vmcs.put(f::GUEST_PENDING_DBG_EXCEPTIONS, guest_debug::pending_debug_exceptions(rflags, a.interruptibility));
    if c.pin & crate::vmx_core::controls::pin::PREEMPTION_TIMER != 0 {
        vmcs.put(f::VMX_PREEMPTION_TIMER_VALUE, u32::try_from(PREEMPTION_TSC_BUDGET >> caps.misc.preemption_timer_rate()).unwrap_or(u32::MAX));
    }
    vmcs.finish()
}

/// Copy the guest state out of the current VMCS into the vCPU state: the table, then the
/// guest's view of CR0/CR4 (owned bits from the read shadows) and the event not yet
/// delivered.
fn read_back(cur: &LoadedVmcs<'_>, st: &mut VcpuState) {
    let vmcs = CurrentVmcs::new(cur);
    let a = &mut st.arch;
    a.load(&vmcs, Rows::ALL);
    a.rflags = guest_debug::visible_rflags(a.rflags, st.guest_debug);
    a.cr0 = arch_state::guest_view(a.cr0, cur.r(f::CR0_READ_SHADOW), CR0_OWNED);
    a.cr4 = arch_state::guest_view(a.cr4, cur.r(f::CR4_READ_SHADOW), cur.r(f::CR4_GUEST_HOST_MASK));
    // VM exits clear the valid bit of the entry interruption field (SDM 28.2.5): a valid one
    // now was set after the last exit and has not been delivered yet.
    let info = cur.r(f::VM_ENTRY_INTR_INFO_FIELD);
    a.event = (info & EVENT_VALID != 0).then(|| arch_state::Event {
        info,
        error_code: cur.r(f::VM_ENTRY_EXCEPTION_ERROR_CODE),
        insn_len: cur.r(f::VM_ENTRY_INSTRUCTION_LEN),
    });
}

/// Whether the host waits for the region to end: the scheduler, or a change of the VM's
/// memory (the slot ioctl waits for every vCPU on the old generation to leave).
fn host_waits(vcpu: &Vcpu, generation: u64) -> bool {
    shim::need_resched() || vcpu.vm.memory_generation.load(core::sync::atomic::Ordering::Relaxed) != generation
}

/// What a handled exit asks for.
enum Next {
    Resume,
    Leave(Leave),
}

/// Run the guest until an exit must leave the region.
fn guest_loop(cur: &LoadedVmcs<'_>, vcpu: &Vcpu, st: &mut VcpuState, cpu: u32, eptp: u64, generation: u64, start: u64) -> Leave {
    let mut gprs = st.arch.gprs;
    let mut launched = false;
    let timer = HOST.as_ref().and_then(|h| {
        (h.controls.pin & crate::vmx_core::controls::pin::PREEMPTION_TIMER != 0)
            .then(|| h.caps.misc.preemption_timer_rate())
    });
    let leave = loop {
        // An INIT resets the vCPU: leave, so that the run loop applies it to the state.
        if st.lapic.is_some() && vcpu.mailbox.init_pending() {
            break Leave::Halt;
        }
        // While L2 runs, an NMI or interrupt for L1 with L1's NMI or external-interrupt
        // exiting is a VM exit to L1 (SDM 26.2), not an event for L2 — after an event being
        // injected into L2 was delivered: as on the CPU, where an interrupt cannot arrive in
        // the middle of a delivery (and KVM, which blocks nested events while one needs
        // reinjection), the entry delivers it and a VMX-preemption timer of 0 exits right
        // after (SDM 26.7.4), before L2's first instruction.
        let mut exit_after_delivery = false;
        if st.nested.guest_mode {
            if st.lapic.is_some() {
                let now = vmx_ops::rdtsc().wrapping_add(st.tsc_offset);
                collect_events(vcpu, st, now, false);
            }
            if InterruptionInfo(cur.r(f::VM_ENTRY_INTR_INFO_FIELD)).valid() {
                exit_after_delivery = st.triple_fault_pending || nested::l1_event_pending(st);
            } else if let Some(info) = nested::triple_fault_exit(st)
                .or_else(|| nested::pending_exception_exit(st))
                .or_else(|| nested::l1_event_exit(st))
            {
                st.nested.switch = Some(nested::Switch::Exit(info));
                break Leave::Nested;
            }
        }
        // Without an in-kernel APIC: the VMM's KVM_INTERRUPT, KVM_NMI and interrupt window.
        if st.lapic.is_some() || st.nmi_pending || st.extint.is_some() || st.irq_window_requested {
            prepare_events(cur, vcpu, st);
        }
        // The work before the entry comes first, the timer is armed last: it counts from
        // the entry, and a deadline (L1's for L2) must not move by what ran in between (the
        // software L1D flush alone is thousands of instructions).
        if !st.nested.guest_mode {
            crate::shadow_vmcs::before_l1(cur, st, vcpu.vmcs_phys);
        }
        if core::mem::take(&mut st.l1d_flush_pending) {
            l1d_flush();
        }
        // The whole region, not each guest stretch, gets the budget: a guest whose exits
        // nvmx handles in the kernel (and that restarts the timer at every entry) must
        // still give the CPU back, and a slot change waiting for it must see it leave
        // (Bochs does not turn the kick's IPI into an exit while the guest has IF = 0).
        let used = vmx_ops::rdtsc().wrapping_sub(start);
        if launched && used >= PREEMPTION_TSC_BUDGET {
            break Leave::Host { nmi: false };
        }
        if let Some(rate) = timer {
            // The first entry of a region may come after the budget already ran out.
            let mut ticks = PREEMPTION_TSC_BUDGET.saturating_sub(used);
            let now = vmx_ops::rdtsc().wrapping_add(st.tsc_offset);
            if let Some(left) = st.lapic.as_ref().and_then(|a| a.timer_ticks_left(now)) {
                ticks = ticks.min(left);
            }
            // L1's VMX-preemption timer for L2 runs on the same hardware timer.
            if let Some(d) = st.nested.l1_timer_deadline.filter(|_| st.nested.guest_mode) {
                ticks = ticks.min(d.saturating_sub(vmx_ops::rdtsc()));
            }
            if exit_after_delivery {
                ticks = 0;
            }
            cur.set(f::VMX_PREEMPTION_TIMER_VALUE, u32::try_from(ticks >> rate).unwrap_or(u32::MAX));
        }
        // SAFETY: IRQs off, VMX operation, current VMCS fully written by write_vmcs.
        let ran = unsafe { vmx_ops::vmx_run(&mut gprs, launched) };
        if let Err(VmFail::Valid | VmFail::Invalid) = ran {
            let err = cur.r(f::VM_INSTRUCTION_ERROR);
            // The CPU refused VMCS02 at the first entry after VMLAUNCH/VMRESUME: L1 gets
            // that VMfail (what L1 could get wrong was checked before; rust/nested.rs).
            if st.nested.guest_mode && st.nested.l1_at_entry.is_some() {
                st.nested.switch = Some(nested::Switch::EntryVmFail(err));
                break Leave::Nested;
            }
            break Leave::User(UserExit::Internal {
                suberror: INTERNAL_ERROR_EMULATION,
                data: [u64::from(launched), u64::from(err), 0, 0, 0],
                ndata: 2,
            });
        }
        launched = true;
        st.stats.exits += 1;
        if st.nested.guest_mode {
            st.stats.l2_exits += 1;
            if !ExitReason(cur.r(f::VM_EXIT_REASON)).entry_failed() {
                st.nested.l1_at_entry = None;
            }
            // The CPU's timer reaching L1's deadline is L1's preemption-timer exit; before
            // it, the timer exit is L0's own (its budget, the APIC timer).
            if ExitReason(cur.r(f::VM_EXIT_REASON)).basic() == reason::PREEMPTION_TIMER {
                if st.nested.l1_timer_expired(vmx_ops::rdtsc()) {
                    st.nested.switch = Some(nested::Switch::Exit(nested::exit_info_from_vmcs(cur)));
                    break Leave::Nested;
                }
            }
            // An exit L1 asked for goes to L1 with its exit information, IDT-vectoring
            // information included (L1 re-injects, not nvmx).
            if let Some(info) = nested::reflect(cur, st, &gprs, eptp) {
                st.nested.switch = Some(nested::Switch::Exit(info));
                break Leave::Nested;
            }
        }
        // An IRET that unblocked NMIs and then faulted runs again: NMIs stay blocked until
        // it completes (with virtual NMIs; L1 does this itself for the exits it gets).
        if cur.r(f::PIN_BASED_VM_EXEC_CONTROL) & pin::VIRTUAL_NMIS != 0
            && vcpu_events::nmi_unblocked_by_faulting_iret(
                ExitReason(cur.r(f::VM_EXIT_REASON)).basic(),
                cur.r(f::VM_EXIT_INTR_INFO),
                cur.r(f::EXIT_QUALIFICATION),
                cur.r(f::IDT_VECTORING_INFO_FIELD),
            )
        {
            cur.set(f::GUEST_INTERRUPTIBILITY_INFO, cur.r(f::GUEST_INTERRUPTIBILITY_INFO) | vcpu_events::BLOCKING_NMI);
        }
        requeue_vectoring_event(cur);
        let requeued = if st.nested.guest_mode { cur.r(f::VM_ENTRY_INTR_INFO_FIELD) } else { 0 };
        // An instruction nvmx completes under TF gets the single step the CPU did not see
        // (KVM's robust single-step): what it was before, where it was.
        let stepping = !st.nested.guest_mode && cur.r(f::GUEST_RFLAGS) & guest_debug::RFLAGS_TF != 0
            && ExitReason(cur.r(f::VM_EXIT_REASON)).basic() != reason::EXCEPTION_NMI;
        let rip_at_exit = cur.r(f::GUEST_RIP);
        match handle_exit(cur, vcpu, &mut gprs, st, cpu, eptp) {
            Next::Resume => {
                if stepping && cur.r(f::GUEST_RIP) != rip_at_exit && !InterruptionInfo(cur.r(f::VM_ENTRY_INTR_INFO_FIELD)).valid() {
                    match guest_debug::after_completed(st.guest_debug) {
                        guest_debug::Step::ExitToVmm => {
                            let dr6 = guest_debug::DR6_BS | guest_debug::DR6_ACTIVE_LOW;
                            break Leave::User(UserExit::Debug { exception: 1, pc: linear_rip(cur), dr6, dr7: cur.r(f::GUEST_DR7) });
                        }
                        guest_debug::Step::GuestDb => deliver_db(cur, st, guest_debug::DR6_BS),
                    }
                }
                if let Some(v) = st.eoi_exit.take() {
                    break Leave::User(UserExit::IoapicEoi(v));
                }
                if !st.nested.guest_mode && vmm_irq_window_open(cur, st) {
                    break Leave::User(UserExit::IrqWindowOpen);
                }
                // An exception nvmx raised in L2 while doing something for it is L1's if
                // L1's exception bitmap says so, as one the CPU raised would have been.
                if st.nested.guest_mode {
                    if let Some(info) = nested::raised_exception_exit(cur, st, requeued) {
                        st.nested.switch = Some(nested::Switch::Exit(info));
                        break Leave::Nested;
                    }
                }
                if host_waits(vcpu, generation) {
                    break Leave::Host { nmi: false };
                }
            }
            Next::Leave(l) => break l,
        }
    };
    // RSP is the VMCS's: read_back takes it.
    st.arch.gprs = gprs;
    leave
}

/// Flush L1D before VM entry where the host has L1TF (mitigation.rs): IA32_FLUSH_CMD, or
/// reading a buffer twice the size of L1D through the cache (KVM's software flush: the TLB
/// first, then every line). Done at the first entry of each IRQs-off region, i.e. after
/// host code (interrupts, other tasks) ran on the CPU — KVM's `vmentry_l1d_flush=cond`.
/// Within a region nvmx touches only this VM's own state and memory between entries (L1
/// and L2 are one trust domain: L1 reads L2's memory anyway).
fn l1d_flush() {
    let Some(host) = HOST.as_ref() else { return };
    match host.mitigations.l1d_flush {
        crate::vmx_core::mitigation::L1dFlush::None => {}
        // SAFETY: IA32_FLUSH_CMD exists (the kernel's X86_FEATURE_FLUSH_L1D); it only flushes.
        crate::vmx_core::mitigation::L1dFlush::Msr => unsafe { vmx_ops::wrmsr(MSR_IA32_FLUSH_CMD, L1D_FLUSH) },
        crate::vmx_core::mitigation::L1dFlush::Software => {
            let pages = &host.l1d_flush_pages;
            for p in pages.iter() {
                // SAFETY: a page the module owns, in the direct map; a read.
                let _ = unsafe { (shim::page_address(p) as *const u8).read_volatile() };
            }
            for p in pages.iter() {
                let base = shim::page_address(p) as *const u8;
                for off in (0..kernel::page::PAGE_SIZE).step_by(64) {
                    // SAFETY: as above, within the page.
                    let _ = unsafe { base.add(off).read_volatile() };
                }
            }
        }
    }
}

/// An event whose delivery a VM exit interrupted (IDT-vectoring information, SDM 28.2.4)
/// is delivered again at the next entry (SDM 29.2.3), as hardware would have.
fn requeue_vectoring_event(cur: &LoadedVmcs<'_>) {
    let info = InterruptionInfo(cur.r(f::IDT_VECTORING_INFO_FIELD));
    if !info.valid() {
        return;
    }
    // Bit 12 (NMI unblocking / undefined here) is not part of the entry format.
    cur.set(f::VM_ENTRY_INTR_INFO_FIELD, info.with_nmi_unblocking(false).0);
    cur.set(f::VM_ENTRY_EXCEPTION_ERROR_CODE, cur.r(f::IDT_VECTORING_ERROR_CODE));
    cur.set(f::VM_ENTRY_INSTRUCTION_LEN, cur.r(f::VM_EXIT_INSTRUCTION_LEN));
}

/// Take what other vCPUs posted (IRR bits, an NMI) into the local APIC and run its timer at
/// guest TSC `now`; then whether the vCPU has an event it can take: an NMI, or — when its
/// RFLAGS.IF is set (`if_set`) — a deliverable interrupt. What wakes it from HLT.
fn collect_events(vcpu: &Vcpu, st: &mut VcpuState, now: u64, if_set: bool) -> bool {
    let (posted, nmi) = vcpu.mailbox.take();
    st.nmi_pending |= nmi;
    let extint = st.deliverable_extint().is_some();
    let Some(apic) = st.lapic.as_mut() else { return st.nmi_pending || (if_set && extint) };
    apic.merge_posted(&posted);
    apic.poll_timer(now);
    st.nmi_pending || (if_set && (extint || apic.deliverable().is_some()))
}

/// Before an entry: merge what other vCPUs posted, run the APIC timer, and inject the
/// highest-priority event the guest can take now — an NMI, the ExtINT of the VMM's PIC
/// (KVM_INTERRUPT), then the in-kernel APIC's highest deliverable interrupt — or ask for an
/// interrupt-window exit (SDM 26.7.5) for one it cannot take yet, and for the VMM's
/// `request_interrupt_window`.
fn prepare_events(cur: &LoadedVmcs<'_>, vcpu: &Vcpu, st: &mut VcpuState) {
    // While L2 runs, L1's events were collected and turned into exits where L1 asked
    // (guest_loop, nested::l1_event_exit) just before: collecting again here could find one
    // that arrived since and hand it to L2 — what L1 intercepts never goes to L2.
    let l1 = st.nested.guest_mode.then(|| st.nested.vmcs12.as_ref().map(|v| L1Intercepts::of(v))).flatten();
    if !st.nested.guest_mode {
        let now = vmx_ops::rdtsc().wrapping_add(st.tsc_offset);
        collect_events(vcpu, st, now, false);
    }
    let (l1_nmi, l1_interrupts) = l1.map_or((false, false), |i| (i.nmi, i.interrupts));
    if InterruptionInfo(cur.r(f::VM_ENTRY_INTR_INFO_FIELD)).valid() {
        return; // an event is already being injected
    }
    let blocking = cur.r(f::GUEST_INTERRUPTIBILITY_INFO);
    let mut windows = 0;
    let mut injected = false;
    if st.nmi_pending && !l1_nmi {
        if vcpu_events::nmi_window_open(blocking) {
            st.nmi_pending = false;
            cur.set(f::VM_ENTRY_INTR_INFO_FIELD, InterruptionInfo::event(intr_kind::NMI, 2, false).0);
            injected = true;
        } else if cur.r(f::PIN_BASED_VM_EXEC_CONTROL) & pin::VIRTUAL_NMIS != 0 {
            // Exit as soon as the guest can take it: after its IRET (SDM 26.7.6).
            windows |= primary::NMI_WINDOW_EXITING;
        }
    }
    let window_open = vcpu_events::interrupt_window_open(cur.r(f::GUEST_RFLAGS), blocking);
    // The VMM waits to inject an ExtINT (KVM's kvm_cpu_accept_dm_intr: none queued, the
    // APIC takes them): exit when the guest opens its window.
    let vmm_waits = st.irq_window_requested && st.extint.is_none() && st.accepts_pic() && !l1_interrupts;
    let want = if l1_interrupts { None } else { st.pending_interrupt() };
    match want {
        Some(p) if window_open && !injected => {
            st.acknowledge(p);
            cur.set(f::VM_ENTRY_INTR_INFO_FIELD, InterruptionInfo::event(intr_kind::EXTERNAL, p.vector(), false).0);
        }
        Some(_) => windows |= primary::INTR_WINDOW_EXITING,
        None if vmm_waits => windows |= primary::INTR_WINDOW_EXITING,
        None => {}
    }
    // While L2 runs, VMCS02 keeps the windows L1 asked for in VMCS12: their exits are L1's
    // (rust/core/src/nested_exit.rs), the others nvmx's own.
    let l1_windows = if st.nested.guest_mode {
        st.nested.vmcs12.as_ref().map_or(0, |v| v.get(f::CPU_BASED_VM_EXEC_CONTROL) & WINDOW_EXITS)
    } else {
        0
    };
    let prim = cur.r(f::CPU_BASED_VM_EXEC_CONTROL);
    cur.set(f::CPU_BASED_VM_EXEC_CONTROL, (prim & !WINDOW_EXITS) | windows | l1_windows);
    if let Some(apic) = st.lapic.as_ref() {
        vcpu.mailbox.mirror(apic);
    }
}

/// The event-window exits (SDM 26.7.5, 26.7.6).
const WINDOW_EXITS: u32 = primary::INTR_WINDOW_EXITING | primary::NMI_WINDOW_EXITING;

/// After an exit handled in the kernel: whether the VMM asked for an interrupt window
/// and could now inject an ExtINT (KVM's dm_request_for_irq_injection and
/// kvm_vcpu_ready_for_interrupt_injection), so KVM_RUN must return KVM_EXIT_IRQ_WINDOW_OPEN.
fn vmm_irq_window_open(cur: &LoadedVmcs<'_>, st: &VcpuState) -> bool {
    st.irq_window_requested
        && vcpu_events::ready_for_interrupt_injection(
            cur.r(f::GUEST_RFLAGS),
            cur.r(f::GUEST_INTERRUPTIBILITY_INFO) as u32,
            InterruptionInfo(cur.r(f::VM_ENTRY_INTR_INFO_FIELD)).valid(),
            st.accepts_pic(),
            st.extint.is_some(),
        )
}

/// RDMSR/WRMSR of the x2APIC range 0x800..=0x8ff: `Some(result)` if the in-kernel APIC
/// handles it (Ok: done; Err: #GP), `None` if there is no such register here at all.
fn x2apic_msr(vcpu: &Vcpu, st: &mut VcpuState, index: u32, write: Option<u64>) -> Option<Result<u64, ApicError>> {
    let offset = crate::vmx_core::lapic::x2apic_offset(index)?;
    let tsc_khz = HOST.as_ref().map_or(1, |h| h.tsc_khz as u64);
    let now = vmx_ops::rdtsc().wrapping_add(st.tsc_offset);
    let apic = st.lapic.as_mut()?;
    if !apic.x2apic {
        return Some(Err(ApicError::Gp));
    }
    let effect = match write {
        None if offset == lapic_reg::ICR => return Some(Ok(apic.icr64())),
        None => return Some(apic.read(offset, now, tsc_khz).map(u64::from)),
        Some(v) if offset == lapic_reg::ICR => apic.write_icr64(v),
        // The other x2APIC registers are 32 bits: the upper half must be zero.
        Some(v) if v >> 32 != 0 => Err(ApicError::Gp),
        Some(v) => apic.write(offset, v as u32, now, tsc_khz),
    };
    Some(effect.and_then(|e| apply_apic_effect(vcpu, st, e)).map(|()| 0))
}

/// Carry out what an APIC write asks: self-IPIs here, the rest through the mailboxes.
fn apply_apic_effect(vcpu: &Vcpu, st: &mut VcpuState, e: WriteEffect) -> Result<(), ApicError> {
    let ipi = match e {
        WriteEffect::Ipi(ipi) => ipi,
        WriteEffect::Eoi(v) => {
            // The VMM's I/O APIC hears of it after the instruction (KVM_EXIT_IOAPIC_EOI).
            if vcpu.vm.routes.lock().wants_eoi(v, &vcpu.mailbox) {
                st.eoi_exit = Some(v);
            }
            return Ok(());
        }
        WriteEffect::None => {
            if let Some(a) = &st.lapic {
                vcpu.mailbox.mirror(a);
            }
            return Ok(());
        }
    };
    match ipi.delivery {
        Delivery::Fixed(v) if ipi.dest == Destination::Myself => {
            if let Some(a) = st.lapic.as_mut() {
                if a.enabled() {
                    a.request(v);
                }
            }
        }
        _ => {
            let boxes = vcpu.vm.mailboxes.lock();
            crate::apic::send(&boxes, &vcpu.mailbox, ipi);
        }
    }
    Ok(())
}

fn handle_exit(cur: &LoadedVmcs<'_>, vcpu: &Vcpu, g: &mut [u64; 16], st: &mut VcpuState, cpu: u32, eptp: u64) -> Next {
    let exit = ExitReason(cur.r(f::VM_EXIT_REASON));
    if exit.entry_failed() {
        // A machine check during VM entry (SDM 27.8) is the host's, then the VMM's failure.
        if exit.basic() == reason::MCE_DURING_VMENTRY {
            shim::machine_check();
        }
        return Next::Leave(Leave::User(UserExit::FailEntry { reason: u64::from(exit.0), cpu }));
    }
    let q = cur.r(f::EXIT_QUALIFICATION);
    match exit.basic() {
        reason::EXTERNAL_INTERRUPT => Next::Leave(Leave::Host { nmi: false }),
        // Always leave: only with interrupts enabled can the host take what is pending
        // (a timer that wakes a task, a signal's kick); need_resched() and signals change
        // only then.
        reason::PREEMPTION_TIMER => Next::Leave(Leave::Host { nmi: false }),
        reason::EXCEPTION_NMI => {
            let info = cur.r(f::VM_EXIT_INTR_INFO);
            if InterruptionInfo(info).kind() == intr_kind::NMI {
                Next::Leave(Leave::Host { nmi: true })
            } else {
                intercepted_exception(cur, st, exit.0, info, q, cpu)
            }
        }
        reason::TRIPLE_FAULT => Next::Leave(Leave::User(UserExit::Shutdown)),
        reason::HLT => {
            skip_instruction(cur);
            if st.lapic.is_none() {
                return Next::Leave(Leave::User(UserExit::Hlt));
            }
            // In-kernel APIC: HLT waits in the kernel (KVM_MP_STATE_HALTED) for an
            // interrupt the guest can take (RFLAGS.IF = 1) or an NMI.
            let now = vmx_ops::rdtsc().wrapping_add(st.tsc_offset);
            if collect_events(vcpu, st, now, cur.r(f::GUEST_RFLAGS) & RFLAGS_IF != 0) {
                return Next::Resume;
            }
            st.mp_state = mp_state::HALTED;
            Next::Leave(Leave::Halt)
        }
        // prepare_events injects what the window was for, or asks again.
        reason::INTERRUPT_WINDOW | reason::NMI_WINDOW => Next::Resume,
        // WBINVD/WBNOINVD (WBINVD exiting) and INVD: done, as on KVM. The guest may not
        // write back or throw away the host's caches (INVD would lose other tasks' dirty
        // lines), and no guest device does non-coherent DMA that would need a flush. The
        // CPL check (#GP at CPL > 0) comes before the exit (SDM 26.1.1).
        reason::WBINVD | reason::INVD => {
            skip_instruction(cur);
            Next::Resume
        }
        reason::CPUID => {
            // CPUID faulting (MSR_MISC_FEATURES_ENABLES) outside ring 0: #GP(0).
            if crate::vmx_core::guest_msr::cpuid_faults(st.misc_features, AccessRights(cur.r(f::GUEST_SS_AR_BYTES)).dpl()) {
                inject(cur, GP_VECTOR, Some(0));
                return Next::Resume;
            }
            // The vCPU's table from KVM_SET_CPUID2, with KVM's out-of-range rule and the
            // bits that follow CR4 and XCR0.
            let dynamic = st.cpuid_dynamic(guest_cr4(cur));
            let [a, b, c, d] = cpuid::guest_cpuid(&st.cpuid, g[0] as u32, g[1] as u32, &dynamic);
            [g[0], g[3], g[1], g[2]] = [a as u64, b as u64, c as u64, d as u64];
            skip_instruction(cur);
            Next::Resume
        }
        // XSETBV (SDM vol. 2D; KVM's kvm_emulate_xsetbv): the CPU raised #UD for
        // CR4.OSXSAVE = 0 before the exit; CPL > 0, an XCR other than XCR0 or a value
        // xcr0_valid refuses is #GP(0). The new XCR0 goes on the CPU at once: the region
        // keeps the guest's there until it ends.
        reason::XSETBV => {
            let value = (g[0] & 0xffff_ffff) | (g[2] << 32);
            let cpl = AccessRights(cur.r(f::GUEST_SS_AR_BYTES)).dpl();
            let xs = HOST.as_ref().map(|h| h.xsave);
            match xs {
                Some(xs) if xs.enabled && cpl == 0 && g[1] as u32 == 0 && xsave::xcr0_valid(value, st.guest_supported_xcr0()) => {
                    st.xcr0 = value;
                    // SAFETY: valid within what the host switches, so within its XCR0; the
                    // region puts the host's back before it ends.
                    unsafe { vmx_ops::xsetbv0(value) };
                    skip_instruction(cur);
                }
                _ => inject(cur, GP_VECTOR, Some(0)),
            }
            Next::Resume
        }
        reason::CR_ACCESS => match CrAccess::decode(q) {
            CrAccess::MovTo { cr: 0, gpr } => {
                let v = read_reg(cur, g, gpr);
                let old = guest_cr0(cur);
                match guest_cr::mov_to_cr0(old, v, cur.r(f::GUEST_IA32_EFER), guest_cr4(cur)) {
                    Some(v) => {
                        set_guest_cr0(cur, v);
                        skip_instruction(cur);
                    }
                    None => inject(cur, GP_VECTOR, Some(0)),
                }
                Next::Resume
            }
            CrAccess::MovTo { cr: 4, gpr } => {
                let v = read_reg(cur, g, gpr);
                let long = cur.r(f::GUEST_IA32_EFER) & EFER_LMA != 0;
                // Bits the guest's CPUID does not offer (VMXE among them while nested is
                // not offered) are #GP(0).
                match guest_cr::mov_to_cr4(&st.features, guest_cr4(cur), v, long, cur.r(f::GUEST_CR3)) {
                    Some(v) => {
                        cur.set(f::CR4_READ_SHADOW, v);
                        cur.set(f::GUEST_CR4, v | cr4::VMXE);
                        skip_instruction(cur);
                    }
                    None => inject(cur, GP_VECTOR, Some(0)),
                }
                Next::Resume
            }
            // CR8 is the local APIC's TPR[7:4] (SDM 11.8.6); bits 63:4 are reserved.
            CrAccess::MovTo { cr: 8, gpr } => {
                let v = read_reg(cur, g, gpr);
                if v >> 4 != 0 {
                    inject(cur, GP_VECTOR, Some(0));
                    return Next::Resume;
                }
                st.set_cr8(v);
                if let Some(a) = &st.lapic {
                    vcpu.mailbox.mirror(a);
                }
                skip_instruction(cur);
                Next::Resume
            }
            CrAccess::MovFrom { cr: 8, gpr } => {
                write_reg(cur, g, gpr, st.cr8());
                skip_instruction(cur);
                Next::Resume
            }
            _ => internal(INTERNAL_ERROR_EMULATION, [u64::from(exit.0), q, 0]),
        },
        // MOV to/from DRn at CPL 0 (the CPU raises #GP for CPL > 0 before exiting).
        reason::DR_ACCESS => {
            let a = DrAccess::decode(q);
            let de = guest_cr4(cur) & cr4::DE != 0;
            let bits64 = cpu_mode(cur) == CpuMode::Bits64;
            let loaded = sync_guest_dr6(st);
            let done = if a.read {
                st.arch.debug.read(a.dr, de).map(|v| write_reg(cur, g, a.gpr, if bits64 { v } else { v & 0xffff_ffff }))
            } else {
                let v = read_reg(cur, g, a.gpr);
                st.arch.debug.write(a.dr, if bits64 { v } else { v & 0xffff_ffff }, de)
            };
            match done {
                Ok(()) => {
                    cur.set(f::GUEST_DR7, st.arch.debug.dr7);
                    skip_instruction(cur);
                    // DR0-DR3/DR6 are put on the CPU (or taken off) at region entry: leave
                    // and come back if a write changed what must be there.
                    if !a.read && (loaded || st.arch.debug.breakpoints_enabled()) {
                        return Next::Leave(Leave::Host { nmi: false });
                    }
                }
                Err(DrFault::Ud) => inject(cur, UD_VECTOR, None),
                Err(DrFault::Gp) => inject(cur, GP_VECTOR, Some(0)),
            }
            Next::Resume
        }
        reason::IO_INSTRUCTION => {
            let io = IoQualification(q);
            if io.is_string() {
                return string_io(cur, vcpu, g, st, eptp, io, u64::from(exit.0), q);
            }
            skip_instruction(cur);
            let size = io.size();
            // An OUT that hits an ioeventfd signals it and is done (KVM's PIO bus).
            let mask = u64::MAX >> (64 - 8 * u32::from(size));
            if !io.is_in() && vcpu.vm.ioeventfd_write(ioeventfd::Bus::Pio, u64::from(io.port()), u32::from(size), g[0] & mask) {
                return Next::Resume;
            }
            Next::Leave(Leave::User(UserExit::Io { is_in: io.is_in(), size, port: io.port(), data: g[0] as u32 }))
        }
        reason::RDMSR | reason::WRMSR if crate::vmx_core::lapic::x2apic_offset(g[1] as u32).is_some() => {
            let write = (exit.basic() == reason::WRMSR).then(|| (g[0] & 0xffff_ffff) | (g[2] << 32));
            // L2's TPR under L1's virtualize x2APIC mode, else the vCPU's own x2APIC.
            let done = match nested::x2apic_virtual_msr(st, eptp, g[1] as u32, write) {
                Some(nested::VirtualMsr::BelowThreshold) => {
                    skip_instruction(cur);
                    let info = nested::ExitInfo { reason: reason::TPR_BELOW_THRESHOLD.into(), ..Default::default() };
                    st.nested.switch = Some(nested::Switch::Exit(info));
                    return Next::Leave(Leave::Nested);
                }
                Some(nested::VirtualMsr::Done(result)) => Some(result),
                None => x2apic_msr(vcpu, st, g[1] as u32, write),
            };
            match done {
                Some(Ok(v)) => {
                    if write.is_none() {
                        [g[0], g[2]] = [v & 0xffff_ffff, v >> 32];
                    }
                    skip_instruction(cur);
                    Next::Resume
                }
                Some(Err(ApicError::Unsupported)) => {
                    internal(INTERNAL_ERROR_EMULATION, [u64::from(exit.0), g[1], write.unwrap_or(0)])
                }
                Some(Err(ApicError::Gp)) | None => {
                    inject(cur, GP_VECTOR, Some(0));
                    Next::Resume
                }
            }
        }
        // The machine-check MSRs (rust/core/src/mce.rs). A guest's non-zero MCi_STATUS write
        // needs AMD's McStatusWrEn in a guest of AMD's vendor, which nvmx guests are not.
        reason::RDMSR | reason::WRMSR if Mce::is_mce_msr(g[1] as u32) => {
            let index = g[1] as u32;
            let ok = if exit.basic() == reason::RDMSR {
                st.mce.read(index, false).map(|v| [g[0], g[2]] = [v & 0xffff_ffff, v >> 32]).is_some()
            } else {
                st.mce.write(index, (g[0] & 0xffff_ffff) | (g[2] << 32), false, false)
            };
            if ok {
                skip_instruction(cur);
            } else {
                inject(cur, GP_VECTOR, Some(0));
            }
            Next::Resume
        }
        // IA32_TSC_DEADLINE (the guest's TSC values): the in-kernel APIC's; 0 and ignored
        // without one, as on KVM.
        reason::RDMSR | reason::WRMSR if g[1] as u32 == crate::vmx_core::lapic::MSR_TSC_DEADLINE => {
            if exit.basic() == reason::RDMSR {
                let v = st.lapic.as_ref().map_or(0, |a| a.tsc_deadline());
                [g[0], g[2]] = [v & 0xffff_ffff, v >> 32];
            } else if let Some(a) = st.lapic.as_mut() {
                a.set_tsc_deadline((g[0] & 0xffff_ffff) | (g[2] << 32));
            }
            skip_instruction(cur);
            Next::Resume
        }
        // The MTRRs: storage, the same rules for the guest and the VMM (KVM's).
        reason::RDMSR | reason::WRMSR if mtrr::is_mtrr_msr(g[1] as u32) => {
            let index = g[1] as u32;
            let ok = if exit.basic() == reason::RDMSR {
                st.mtrrs.read(index).map(|v| [g[0], g[2]] = [v & 0xffff_ffff, v >> 32]).is_some()
            } else {
                let maxphyaddr = u32::from(st.features.maxphyaddr);
                st.mtrrs.write(index, (g[0] & 0xffff_ffff) | (g[2] << 32), maxphyaddr)
            };
            if ok {
                skip_instruction(cur);
            } else {
                inject(cur, GP_VECTOR, Some(0));
            }
            Next::Resume
        }
        reason::RDMSR | reason::WRMSR if nested::is_nested_msr(g[1] as u32) => {
            let index = g[1] as u32;
            let ok = if exit.basic() == reason::RDMSR {
                nested::get_msr(st, index).map(|v| [g[0], g[2]] = [v & 0xffff_ffff, v >> 32]).is_some()
            } else {
                nested::set_msr(st, index, (g[0] & 0xffff_ffff) | (g[2] << 32), false).is_ok()
            };
            if ok {
                skip_instruction(cur);
            } else {
                inject(cur, GP_VECTOR, Some(0));
            }
            Next::Resume
        }
        reason::RDMSR => {
            // An MSR nvmx does not have is #GP(0), as KVM does for one it does not know.
            match Msr::from_index(g[1] as u32).filter(|&m| st.guest_may_read(m)) {
                Some(m) => {
                    let v = live_msr(cur, st, m);
                    [g[0], g[2]] = [v & 0xffff_ffff, v >> 32];
                    skip_instruction(cur);
                }
                None => inject(cur, GP_VECTOR, Some(0)),
            }
            Next::Resume
        }
        reason::WRMSR => {
            let value = (g[0] & 0xffff_ffff) | (g[2] << 32);
            let checked = Msr::from_index(g[1] as u32)
                .and_then(|m| check_guest_wrmsr(st, m, value, live_msr(cur, st, m), cur.r(f::GUEST_CR0)).map(|v| (m, v)));
            match checked {
                Some((m, v)) => {
                    set_live_msr(cur, st, m, v);
                    skip_instruction(cur);
                }
                None => inject(cur, GP_VECTOR, Some(0)),
            }
            Next::Resume
        }
        // L2's VMREAD/VMWRITE that L1's VMCS shadowing lets through (nested::reflect sent
        // the others to L1): on the shadow VMCS12.
        reason::VMREAD | reason::VMWRITE if st.nested.guest_mode => {
            match nested::l2_vmcs_access(cur, st, g, eptp, exit.basic(), q) {
                nested::Handled::Resume => Next::Resume,
                nested::Handled::Switch => Next::Leave(Leave::Nested),
                nested::Handled::Unsupported(d) => internal(INTERNAL_ERROR_EMULATION, [u64::from(exit.0), q, d]),
            }
        }
        b if exit.is_vmx_instruction() => {
            // VMX not exposed to this guest (CPUID.1:ECX.VMX = 0): #UD (SDM 31.3). L2's VMX
            // instructions never get here (they go to L1), but for the VMREAD/VMWRITE above.
            if !st.features.vmx || !nested::available() {
                inject(cur, UD_VECTOR, None);
                return Next::Resume;
            }
            // L1's writes into the shadow VMCS first: the instruction acts on VMCS12.
            crate::shadow_vmcs::pull(cur, st, vcpu.vmcs_phys);
            match nested::vmx_instruction(cur, st, g, eptp, b, q) {
                nested::Handled::Resume => Next::Resume,
                nested::Handled::Switch => Next::Leave(Leave::Nested),
                nested::Handled::Unsupported(d) => internal(INTERNAL_ERROR_EMULATION, [u64::from(exit.0), q, d]),
            }
        }
        reason::EPT_VIOLATION if st.nested.l2_eptp12().is_some() => {
            l2_ept_violation(cur, vcpu, g, st, eptp, u64::from(exit.0), q, cpu)
        }
        reason::EPT_VIOLATION | reason::EPT_MISCONFIG => {
            let gpa = cur.r(f::GUEST_PHYSICAL_ADDRESS);
            // A first write to a dirty-logged page: now dirty and writable; retry.
            if q & EPT_VIOLATION_WRITE != 0 && crate::ept::log_write(eptp, gpa) {
                return Next::Resume;
            }
            // Every other slot page is mapped: this is an access outside every slot, MMIO.
            mmio(cur, vcpu, g, st, eptp, gpa, u64::from(exit.0), q, cpu)
        }
        _ => internal(INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, [u64::from(exit.0), q, 0]),
    }
}

/// An EPT violation of EPT02 (L2 under L1's EPT): filled from EPT12 and L0's EPT, reflected
/// to L1 when EPT12 does not allow the access, or L1's MMIO.
fn l2_ept_violation(cur: &LoadedVmcs<'_>, vcpu: &Vcpu, g: &mut [u64; 16], st: &mut VcpuState, eptp: u64, reason_: u64, q: u64, cpu: u32) -> Next {
    let gpa = cur.r(f::GUEST_PHYSICAL_ADDRESS);
    let (Some(eptp12), caps, maxphyaddr) = (st.nested.l2_eptp12(), st.nested.caps.ept_vpid, st.features.maxphyaddr) else {
        return internal(INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, [reason_, q, gpa]);
    };
    let Some(shadow) = st.nested.shadow_ept.as_mut() else {
        return Next::Leave(Leave::Host { nmi: false });
    };
    match shadow.violation(cur, eptp, eptp12, caps, maxphyaddr, gpa, q) {
        nested_ept::Fault::Resume => {
            st.stats.ept02_fills += 1;
            Next::Resume
        }
        nested_ept::Fault::Refill => Next::Leave(Leave::Host { nmi: false }),
        nested_ept::Fault::Reflect(info) => {
            // The event L2 was delivering (requeued for VMCS02) is L1's to re-inject now.
            st.nested.switch = Some(nested::Switch::Exit(info));
            Next::Leave(Leave::Nested)
        }
        nested_ept::Fault::Mmio(l1_gpa) => mmio(cur, vcpu, g, st, eptp, l1_gpa, reason_, q, cpu),
        nested_ept::Fault::Unreadable(table) => internal(INTERNAL_ERROR_EMULATION, [reason_, gpa, table]),
    }
}

/// The running guest's memory (`eptp`: L0's EPT; L2 under L1's EPT goes through EPT12).
pub(crate) fn guest_memory(st: &VcpuState, eptp: u64) -> GuestMemory {
    match st.nested.l2_eptp12() {
        Some(eptp12) => GuestMemory::Nested {
            eptp01: eptp,
            eptp12,
            caps: st.nested.caps.ept_vpid,
            maxphyaddr: st.features.maxphyaddr,
        },
        _ => GuestMemory::Ept(eptp),
    }
}

/// The PIO page as a byte slice.
fn pio_slice<'a>(pio: *mut u8) -> &'a mut [u8] {
    // SAFETY: the PIO page is 4096 bytes owned by the vCPU; userspace may write it
    // concurrently, which only changes the data its own guest gets.
    unsafe { core::slice::from_raw_parts_mut(pio, 4096) }
}

/// INS/OUTS (SDM vol. 2B): a batch of items (rust/core/src/exit.rs, string_io_batch) goes
/// through the PIO page. OUTS copies from the guest now; INS is finished by the next
/// KVM_RUN (complete_ins). REP with RCX = 0 does nothing.
fn string_io(cur: &LoadedVmcs<'_>, vcpu: &Vcpu, g: &mut [u64; 16], st: &mut VcpuState, eptp: u64, io: IoQualification, reason_: u64, q: u64) -> Next {
    // The address size is in the instruction-information field where the CPU reports it
    // for INS/OUTS (IA32_VMX_BASIC[54]); otherwise it is the code segment's default (an
    // address-size prefix would go unseen: refuse nothing, but it cannot be honoured).
    let has_info = HOST.as_ref().is_some_and(|h| h.caps.basic.ins_outs_info());
    let mask = if has_info {
        string_io_addr_mask(u64::from(cur.r(f::VMX_INSTRUCTION_INFO)))
    } else {
        match cpu_mode(cur) {
            CpuMode::Bits64 => u64::MAX,
            CpuMode::Bits32 => 0xffff_ffff,
            CpuMode::Bits16 => 0xffff,
        }
    };
    let rep = io.is_rep();
    let count = if rep { g[1] & mask } else { 1 };
    if count == 0 {
        skip_instruction(cur);
        return Next::Resume;
    }
    let size = io.size();
    let df = cur.r(f::GUEST_RFLAGS) & arch_state::RFLAGS_DF != 0;
    let linear = cur.r(f::GUEST_LINEAR_ADDRESS);
    let n = string_io_batch(count, size, linear, df);
    let insn_len = u64::from(cur.r(f::VM_EXIT_INSTRUCTION_LEN));
    if io.is_in() {
        st.pending_ins = Some(PendingIns { size, count: n, rep, df, addr_mask: mask, insn_len });
        // RIP stays on the instruction until the last batch completes.
        return Next::Leave(Leave::User(UserExit::StringIo { is_in: true, size, port: io.port(), count: n as u32 }));
    }
    let regs = PagingRegs { cr0: cur.r(f::GUEST_CR0), cr3: cur.r(f::GUEST_CR3), cr4: cur.r(f::GUEST_CR4), efer: cur.r(f::GUEST_IA32_EFER) };
    let buf = pio_slice(shim::page_address(&vcpu.pio_page));
    let step = if df { -(size as i64) } else { size as i64 };
    for k in 0..n as usize {
        let la = linear.wrapping_add((k as i64 * step) as u64);
        let item = &mut buf[k * size as usize..(k + 1) * size as usize];
        match copy_guest(&regs, guest_memory(st, eptp), la, item, false) {
            Ok(()) => {}
            // L2 reading through L1's EPT where it may not: L1's EPT violation (the CPU
            // would have faulted before the I/O).
            Err(AccessError::Ept12(d)) => {
                st.nested.switch = Some(nested::Switch::Exit(d.exit_info()));
                return Next::Leave(Leave::Nested);
            }
            Err(AccessError::Unmapped) => return internal(INTERNAL_ERROR_EMULATION, [reason_, q, la]),
        }
    }
    g[6] = string_reg_add(g[6], n as i64 * step, mask); // RSI
    let done = if rep {
        g[1] = string_reg_add(g[1], -(n as i64), mask);
        g[1] & mask == 0
    } else {
        true
    };
    if done {
        skip_instruction(cur);
    }
    Next::Leave(Leave::User(UserExit::StringIo { is_in: false, size, port: io.port(), count: n as u32 }))
}

/// The second half of an INS batch (see string_io), outside the region: guest memory is
/// reached through the vCPU's saved paging registers and the VM's current EPT.
fn complete_ins(st: &mut VcpuState, ins: &PendingIns, pio: *mut u8, eptp: u64) {
    let mask = ins.addr_mask;
    let n = if ins.rep { ins.count.min(st.arch.gprs[1] & mask) } else { 1 };
    let long = st.arch.long_mode() && st.arch.seg(Seg::Cs).long();
    let es_base = if long { 0 } else { st.arch.seg(Seg::Es).base };
    let regs = PagingRegs { cr0: st.arch.cr0, cr3: st.arch.cr3, cr4: st.arch.cr4, efer: st.arch.efer };
    let buf = pio_slice(pio);
    let size = ins.size as usize;
    let step = if ins.df { -(ins.size as i64) } else { ins.size as i64 };
    for k in 0..n as usize {
        let rdi = string_reg_add(st.arch.gprs[7], k as i64 * step, mask);
        let la = es_base.wrapping_add(rdi);
        // An unmapped destination ends the batch; the guest sees the items written so far.
        // L2 writing through L1's EPT where it may not is L1's EPT violation, after the
        // port was read (KVM's order).
        match copy_guest(&regs, guest_memory(st, eptp), la, &mut buf[k * size..(k + 1) * size], true) {
            Ok(()) => {}
            Err(AccessError::Ept12(d)) => {
                st.nested.switch = Some(nested::Switch::Exit(d.exit_info()));
                nested::apply_switch(st, eptp, MsrHome::Process);
                return;
            }
            Err(AccessError::Unmapped) => return,
        }
    }
    st.arch.gprs[7] = string_reg_add(st.arch.gprs[7], n as i64 * step, mask);
    let done = if ins.rep {
        st.arch.gprs[1] = string_reg_add(st.arch.gprs[1], -(n as i64), mask);
        st.arch.gprs[1] & mask == 0
    } else {
        true
    };
    if done {
        st.arch.rip = st.arch.rip.wrapping_add(ins.insn_len);
        st.arch.interruptibility &= !3;
    }
}

/// Fetch up to 15 bytes of the instruction at CS:RIP through the guest's paging and the EPT;
/// returns how many could be read (fewer if a page of it is gone).
fn fetch_instruction(cur: &LoadedVmcs<'_>, mem: GuestMemory, buf: &mut [u8; 15]) -> usize {
    let regs = PagingRegs {
        cr0: cur.r(f::GUEST_CR0),
        cr3: cur.r(f::GUEST_CR3),
        cr4: cur.r(f::GUEST_CR4),
        efer: cur.r(f::GUEST_IA32_EFER),
    };
    let mode = cpu_mode(cur);
    let rip = cur.r(f::GUEST_RIP);
    let linear = if mode == CpuMode::Bits64 { rip } else { cur.r(f::GUEST_CS_BASE).wrapping_add(rip) & 0xffff_ffff };
    for (i, b) in buf.iter_mut().enumerate() {
        if copy_guest(&regs, mem, linear.wrapping_add(i as u64), core::slice::from_mut(b), false).is_err() {
            return i;
        }
    }
    buf.len()
}

/// The whole register holding operand `r_` (for AH..BH: RAX..RBX; insn::load/store pick
/// the byte).
fn read_gpr(cur: &LoadedVmcs<'_>, g: &[u64; 16], r_: Gpr) -> u64 {
    read_reg(cur, g, r_.reg())
}

fn write_gpr(cur: &LoadedVmcs<'_>, g: &mut [u64; 16], r_: Gpr, v: u64) {
    write_reg(cur, g, r_.reg(), v);
}

/// An access to `gpa`, outside every slot: decode the instruction, then either emulate it
/// on the in-kernel xAPIC page or hand it to userspace as KVM_EXIT_MMIO. An instruction
/// nvmx does not decode is KVM_EXIT_INTERNAL_ERROR (emulation) with the exit reason,
/// qualification, GPA and the first 8 instruction bytes.
fn mmio(cur: &LoadedVmcs<'_>, vcpu: &Vcpu, g: &mut [u64; 16], st: &mut VcpuState, eptp: u64, gpa: u64, reason_: u64, q: u64, cpu: u32) -> Next {
    let vectoring = cur.r(f::IDT_VECTORING_INFO_FIELD);
    if InterruptionInfo(vectoring).valid() {
        // The guest was delivering an event through MMIO (its IDT, say): nothing to
        // emulate; KVM reports the same (kvm_prepare_event_vectoring_exit).
        return Next::Leave(Leave::User(UserExit::Internal {
            suberror: INTERNAL_ERROR_DELIVERY_EV,
            data: [vectoring.into(), reason_, q, gpa, cpu as u64],
            ndata: 5,
        }));
    }
    let mut bytes = [0u8; 15];
    let n = fetch_instruction(cur, guest_memory(st, eptp), &mut bytes);
    let decoded = insn::decode(&bytes[..n], cpu_mode(cur));
    let head = u64::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]]);
    let fail = || Next::Leave(Leave::User(UserExit::Internal {
        suberror: INTERNAL_ERROR_EMULATION,
        data: [reason_, q, gpa, head, n as u64],
        ndata: 5,
    }));
    let (len, size, write_data) = match decoded {
        Decoded::Read { len, size, .. } => (len, size, None),
        Decoded::WriteReg { len, size, src } => (len, size, Some(insn::store(read_gpr(cur, g, src), src, size))),
        Decoded::WriteImm { len, size, value } => (len, size, Some(value)),
        Decoded::Unsupported => return fail(),
    };
    let apic_page = st.apic_base & !0xfff;
    let xapic = st.lapic.as_ref().is_some_and(|a| !a.x2apic)
        && st.apic_base & crate::vmx_core::guest_msr::apic_base::ENABLE != 0;
    if xapic && gpa & !0xfff == apic_page {
        let offset = (gpa & 0xfff) as u32;
        if size != 4 || offset % 16 != 0 {
            return fail();
        }
        let tsc_khz = HOST.as_ref().map_or(1, |h| h.tsc_khz as u64);
        let now = vmx_ops::rdtsc().wrapping_add(st.tsc_offset);
        let Some(apic) = st.lapic.as_mut() else { return fail() };
        match (decoded, write_data) {
            (Decoded::Read { dst, dst_size, extend, .. }, _) => {
                // Reserved xAPIC registers read as 0.
                let v = apic.read(offset, now, tsc_khz).unwrap_or(0);
                let old = read_gpr(cur, g, dst);
                write_gpr(cur, g, dst, insn::load(old, dst, dst_size, 4, extend, v as u64));
            }
            (_, Some(v)) => match apic.write(offset, v as u32, now, tsc_khz) {
                Ok(effect) => match apply_apic_effect(vcpu, st, effect) {
                    Ok(()) => {}
                    Err(_) => return fail(),
                },
                // Reserved xAPIC registers ignore writes.
                Err(ApicError::Gp) => {}
                Err(ApicError::Unsupported) => return fail(),
            },
            _ => return fail(),
        }
        advance_rip(cur, len as u64);
        return Next::Resume;
    }
    advance_rip(cur, len as u64);
    // A write that hits an ioeventfd signals it and is done (KVM's MMIO bus).
    if let Some(v) = write_data {
        if vcpu.vm.ioeventfd_write(ioeventfd::Bus::Mmio, gpa, u32::from(size), v) {
            return Next::Resume;
        }
    }
    if let Decoded::Read { dst, dst_size, extend, .. } = decoded {
        st.pending_mmio = Some(PendingMmio { dst, dst_size, size, extend });
    }
    Next::Leave(Leave::User(UserExit::Mmio { gpa, size, is_write: write_data.is_some(), data: write_data.unwrap_or(0) }))
}


/// The VMCS field that holds `msr` while the guest runs, if one does.
fn msr_field(msr: Msr) -> Option<crate::vmx_core::field::Field> {
    Some(match msr {
        Msr::SysenterCs => f::GUEST_SYSENTER_CS.field(),
        Msr::SysenterEsp => f::GUEST_SYSENTER_ESP.field(),
        Msr::SysenterEip => f::GUEST_SYSENTER_EIP.field(),
        Msr::Pat => f::GUEST_IA32_PAT.field(),
        Msr::Efer => f::GUEST_IA32_EFER.field(),
        Msr::FsBase => f::GUEST_FS_BASE.field(),
        Msr::GsBase => f::GUEST_GS_BASE.field(),
        _ => return None,
    })
}

/// An MSR's value inside the region: from the VMCS or the loaded hardware MSR where it
/// lives during the run, else from the vCPU state.
fn live_msr(cur: &LoadedVmcs<'_>, st: &VcpuState, msr: Msr) -> u64 {
    // L2 reads its own TSC (KVM: the current offset), L1's and L2's offsets together.
    if msr == Msr::Tsc && st.nested.guest_mode {
        return vmx_ops::rdtsc().wrapping_add(cur.r(f::TSC_OFFSET));
    }
    if let Some(field) = msr_field(msr) {
        cur.read_raw(field)
    } else if SYSCALL_MSRS.contains(&msr) {
        vmx_ops::rdmsr(msr.index())
    } else {
        st.msr(msr)
    }
}

fn set_live_msr(cur: &LoadedVmcs<'_>, st: &mut VcpuState, msr: Msr, v: u64) {
    if let Some(field) = msr_field(msr) {
        cur.set_raw(field, v);
    } else if SYSCALL_MSRS.contains(&msr) {
        // SAFETY: checked by guest_msr::check_write; the region restores the host's value.
        unsafe { vmx_ops::wrmsr(msr.index(), v) };
    } else {
        st.set_msr_by(msr, v, Writer::Guest);
        // A write of L2's that L1 lets through sets L1's TSC (KVM's semantics, which
        // nested_tsc_adjust_test checks); L2's offset follows.
        if let Msr::Tsc | Msr::TscAdjust = msr {
            let offset = if st.nested.guest_mode { nested::vmcs02_tsc_offset(st) } else { st.tsc_offset };
            cur.set(f::TSC_OFFSET, offset);
        }
    }
}

/// Whether the guest's DR6 is on the CPU (while its DR7 enables a breakpoint, region());
/// if so, `st.arch.debug.dr6` takes what a #DB in the guest may have set there since.
fn sync_guest_dr6(st: &mut VcpuState) -> bool {
    let loaded = st.arch.debug.breakpoints_enabled();
    if loaded {
        st.arch.debug.set_dr6_from_cpu(vmx_ops::read_dr(6));
    }
    loaded
}

/// An exception exit of one of the vectors nvmx always intercepts (exception.rs): #DB and
/// #AC go back to the guest that raised them, #MC to the host's handler.
fn intercepted_exception(cur: &LoadedVmcs<'_>, st: &mut VcpuState, reason_: u32, info: u32, q: u64, cpu: u32) -> Next {
    let ac = exception::AcContext {
        cpl: AccessRights(cur.r(f::GUEST_SS_AR_BYTES)).dpl(),
        cr0: guest_cr0(cur),
        rflags: cur.r(f::GUEST_RFLAGS),
    };
    let decided = exception::decide(u64::from(info), q, u64::from(cur.r(f::VM_EXIT_INSTRUCTION_LEN)), &ac);
    // An exception while the CPU delivered another event (IDT-vectoring information valid):
    // nvmx, like KVM, does not emulate the double delivery — the VMM gets
    // KVM_INTERNAL_ERROR_SIMUL_EX with KVM's four data words. This is where a guest whose
    // #AC delivery raises #AC again (a misaligned ring-3 handler stack) ends.
    let vectoring = cur.r(f::IDT_VECTORING_INFO_FIELD);
    if InterruptionInfo(vectoring).valid() && decided != exception::Intercepted::MachineCheck {
        return Next::Leave(Leave::User(UserExit::Internal {
            suberror: INTERNAL_ERROR_SIMUL_EX,
            data: [vectoring.into(), info.into(), cur.r(f::VM_EXIT_INTR_ERROR_CODE).into(), u64::from(cpu), 0],
            ndata: 4,
        }));
    }
    match decided {
        // The VMM single-steps the guest: every #DB is its own (KVM's handle_exception_nmi).
        exception::Intercepted::Debug { payload, .. } if st.guest_debug & guest_debug::SINGLESTEP != 0 => {
            let dr6 = payload | guest_debug::DR6_ACTIVE_LOW;
            Next::Leave(Leave::User(UserExit::Debug { exception: 1, pc: linear_rip(cur), dr6, dr7: cur.r(f::GUEST_DR7) }))
        }
        exception::Intercepted::Debug { payload, skip } => {
            if let Some(len) = skip {
                advance_rip(cur, len);
            }
            deliver_db(cur, st, payload);
            Next::Resume
        }
        // INT3 is intercepted only for the VMM's software breakpoints (KVM_GUESTDBG_USE_SW_BP);
        // KVM_GUESTDBG_INJECT_BP gives it back with this length.
        exception::Intercepted::Breakpoint { insn_len } => {
            st.bp_insn_len = insn_len as u32;
            let dr6 = guest_debug::DR6_ACTIVE_LOW;
            Next::Leave(Leave::User(UserExit::Debug { exception: 3, pc: linear_rip(cur), dr6, dr7: cur.r(f::GUEST_DR7) }))
        }
        exception::Intercepted::AlignmentCheck => {
            // The image a fault pushes has RF set (SDM vol. 3A 18.3.1.1), as KVM injects it.
            cur.set(f::GUEST_RFLAGS, cur.r(f::GUEST_RFLAGS) | exception::RFLAGS_RF);
            inject(cur, exception::AC_VECTOR as u64, Some(cur.r(f::VM_EXIT_INTR_ERROR_CODE)));
            Next::Resume
        }
        exception::Intercepted::MachineCheck => {
            shim::machine_check();
            Next::Resume
        }
        exception::Intercepted::ForeignAlignmentCheck | exception::Intercepted::Unexpected => {
            internal(INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, [reason_.into(), info.into(), q])
        }
    }
}

/// The guest's linear RIP (CS base + RIP), as KVM_EXIT_DEBUG reports it.
fn linear_rip(cur: &LoadedVmcs<'_>) -> u64 {
    cur.r(f::GUEST_CS_BASE).wrapping_add(cur.r(f::GUEST_RIP))
}

/// Deliver a #DB with `payload` (DR6 bits in the pending-debug-exceptions format) to the
/// guest: its DR6 as the CPU would have left it, DR7.GD cleared (SDM vol. 3B 18.2.4), as KVM
/// does when it injects one.
fn deliver_db(cur: &LoadedVmcs<'_>, st: &mut VcpuState, payload: u64) {
    let loaded = sync_guest_dr6(st);
    st.arch.debug.dr6 = exception::dr6_after_db(st.arch.debug.dr6, payload);
    if loaded {
        // SAFETY: the guest's DR6 (with its fixed bits) while the guest's are loaded.
        unsafe { vmx_ops::write_dr(6, st.arch.debug.dr6) };
    }
    cur.set(f::GUEST_DR7, cur.r(f::GUEST_DR7) & !exception::DR7_GD);
    inject(cur, exception::DB_VECTOR as u64, None);
}

fn internal(suberror: u32, data: [u64; 3]) -> Next {
    let [a, b, c] = data;
    Next::Leave(Leave::User(UserExit::Internal { suberror, data: [a, b, c, 0, 0], ndata: 3 }))
}

/// MOV to CR0: the guest owns everything but NE/CD/NW/PG. A PG change with EFER.LME set
/// switches IA-32e mode (SDM 10.8.5): EFER.LMA and the entry control follow.
fn set_guest_cr0(cur: &LoadedVmcs<'_>, v: u64) {
    cur.set(f::CR0_READ_SHADOW, v);
    cur.set(f::GUEST_CR0, (v | cr0::NE) & !(CR0_CD | CR0_NW));
    let efer = cur.r(f::GUEST_IA32_EFER);
    if efer & EFER_LME != 0 {
        let lma = v & cr0::PG != 0;
        let new_efer = if lma { efer | EFER_LMA } else { efer & !EFER_LMA };
        cur.set(f::GUEST_IA32_EFER, new_efer);
        let ctl = cur.r(f::VM_ENTRY_CONTROLS);
        let ctl = if lma { ctl | entry::IA32E_MODE_GUEST } else { ctl & !entry::IA32E_MODE_GUEST };
        cur.set(f::VM_ENTRY_CONTROLS, ctl);
    }
}
