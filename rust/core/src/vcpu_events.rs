// SPDX-License-Identifier: GPL-2.0
//! `KVM_GET_VCPU_EVENTS`/`KVM_SET_VCPU_EVENTS` (Documentation/virt/kvm/api.rst 4.31, 4.32):
//! the events a vCPU has in flight, as KVM reports and accepts them
//! (arch/x86/kvm/x86.c, kvm_vcpu_ioctl_x86_{get,set}_vcpu_events).
//!
//! nvmx's vCPU has one event to inject at the next entry ([`Event`], the VM-entry
//! interruption information), its interruptibility state (SDM 25.4.2, table 25-3), an NMI
//! waiting to be injected, and — from a VMM with `KVM_CAP_EXCEPTION_PAYLOAD` — an exception
//! that is pending rather than injected ([`PendingException`]): not delivered yet, so that
//! while L2 runs L1's exception bitmap decides whether it becomes a VM exit to L1, and its
//! payload (a #PF's CR2, a #DB's DR6 bits) reaches the guest only on delivery. KVM's
//! separate exception, interrupt and NMI slots map onto the one event: only one is ever
//! injected at an entry. nvmx has no SMM and no triple-fault event
//! (KVM_CAP_X86_TRIPLE_FAULT_EVENT), which KVM reports and refuses as it does with those off.

use super::arch_state::Event;
use super::exit::{intr_kind, InterruptionInfo};

/// `KVM_VCPUEVENT_VALID_NMI_PENDING`.
pub const VALID_NMI_PENDING: u32 = 1;
/// `KVM_VCPUEVENT_VALID_SIPI_VECTOR`.
pub const VALID_SIPI_VECTOR: u32 = 2;
/// `KVM_VCPUEVENT_VALID_SHADOW`.
pub const VALID_SHADOW: u32 = 4;
/// `KVM_VCPUEVENT_VALID_SMM`.
pub const VALID_SMM: u32 = 8;
/// `KVM_VCPUEVENT_VALID_PAYLOAD`.
pub const VALID_PAYLOAD: u32 = 16;
/// `KVM_VCPUEVENT_VALID_TRIPLE_FAULT`.
pub const VALID_TRIPLE_FAULT: u32 = 32;

/// `KVM_X86_SHADOW_INT_MOV_SS`.
pub const SHADOW_MOV_SS: u8 = 1;
/// `KVM_X86_SHADOW_INT_STI`.
pub const SHADOW_STI: u8 = 2;

/// Interruptibility state bits (SDM table 25-3).
const BLOCKING_STI: u32 = 1;
const BLOCKING_MOV_SS: u32 = 2;
/// Blocking by NMI (virtual-NMI blocking with "virtual NMIs", SDM 25.4.2).
pub const BLOCKING_NMI: u32 = 8;

const NMI_VECTOR: u8 = 2;

/// `struct kvm_vcpu_events` without its padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuEvents {
    /// exception.injected.
    pub exception_injected: bool,
    /// exception.nr.
    pub exception_nr: u8,
    /// exception.has_error_code.
    pub exception_has_error_code: bool,
    /// exception.pending.
    pub exception_pending: bool,
    /// exception.error_code.
    pub exception_error_code: u32,
    /// interrupt.injected.
    pub interrupt_injected: bool,
    /// interrupt.nr.
    pub interrupt_nr: u8,
    /// interrupt.soft.
    pub interrupt_soft: bool,
    /// interrupt.shadow ([`SHADOW_STI`], [`SHADOW_MOV_SS`]).
    pub interrupt_shadow: u8,
    /// nmi.injected.
    pub nmi_injected: bool,
    /// nmi.pending (a count).
    pub nmi_pending: u8,
    /// nmi.masked.
    pub nmi_masked: bool,
    /// sipi_vector.
    pub sipi_vector: u32,
    /// `KVM_VCPUEVENT_VALID_*`.
    pub flags: u32,
    /// smi.smm.
    pub smm: bool,
    /// smi.pending.
    pub smi_pending: bool,
    /// smi.smm_inside_nmi.
    pub smm_inside_nmi: bool,
    /// smi.latched_init.
    pub latched_init: bool,
    /// triple_fault.pending.
    pub triple_fault_pending: bool,
    /// exception_has_payload.
    pub exception_has_payload: bool,
    /// exception_payload.
    pub exception_payload: u64,
}

/// An exception queued by the VMM and not yet delivered (KVM's pending exception).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingException {
    /// Vector (0-31, not NMI).
    pub vector: u8,
    /// Error code, as the VMM gave it (KVM reports it back whole; delivery and a VM exit
    /// carry bits 15:0, all VMX has room for, SDM 26.2.1.3).
    pub error_code: Option<u32>,
    /// Payload: the faulting address of a #PF (CR2), the DR6 bits of a #DB in the format of
    /// the pending-debug-exceptions field.
    pub payload: Option<u64>,
}

/// DR6 bits that read 1 when inactive (the fixed-1 bits and RTM), SDM 18.2.3.
pub const DR6_ACTIVE_LOW: u64 = 0xffff_0ff0;
/// DR6.B0-B3.
const DR6_TRAP_BITS: u64 = 0xf;
/// DR6.BT.
pub const DR6_BT: u64 = 1 << 15;
/// #DB and #PF, the two exceptions with a payload.
pub const DB_VECTOR: u8 = 1;
/// See [`DB_VECTOR`].
pub const PF_VECTOR: u8 = 14;

impl PendingException {
    /// Delivery of the payload into the guest's registers (KVM's
    /// kvm_deliver_exception_payload): a #PF's CR2; a #DB's DR6 — B0-B3 cleared, the fixed
    /// bits set, the payload's active-high bits set and its active-low ones (RTM) cleared,
    /// bit 12 (reserved in DR6) clear. `(dr6, cr2)` in, `(dr6, cr2)` out.
    pub fn deliver_payload(&self, dr6: u64, cr2: u64) -> (u64, u64) {
        match (self.vector, self.payload) {
            (PF_VECTOR, Some(p)) => (dr6, p),
            (DB_VECTOR, Some(p)) => {
                let mut d = (dr6 & !DR6_TRAP_BITS) | DR6_ACTIVE_LOW | p;
                d ^= p & DR6_ACTIVE_LOW;
                (d & !(1 << 12), cr2)
            }
            _ => (dr6, cr2),
        }
    }

    /// The event the next VM entry injects for it.
    pub fn event(&self) -> Event {
        Event {
            info: InterruptionInfo::event(intr_kind::HW_EXCEPTION, self.vector, self.error_code.is_some()).0,
            error_code: self.error_code.unwrap_or(0),
            insn_len: 0,
        }
    }

    /// The exit qualification of the VM exit to L1 it becomes (SDM 28.2.1; KVM's
    /// nested_vmx_inject_exception_vmexit): for a #PF the faulting address, for a #DB the
    /// debug-exception bits (without a payload: from CR2 and DR6 as they are), else 0.
    pub fn exit_qualification(&self, dr6: u64, cr2: u64) -> u64 {
        match self.vector {
            PF_VECTOR => self.payload.unwrap_or(cr2),
            DB_VECTOR => self.payload.unwrap_or((dr6 & !DR6_BT) ^ DR6_ACTIVE_LOW),
            _ => 0,
        }
    }
}

/// The part of a vCPU's state the events describe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventState {
    /// An exception queued by the VMM, not delivered yet.
    pub pending_exception: Option<PendingException>,
    /// `KVM_CAP_EXCEPTION_PAYLOAD` is on for the VM: pending and injected exceptions are
    /// told apart, with payloads.
    pub payload_enabled: bool,
    /// The event injected at the next entry.
    pub event: Option<Event>,
    /// Guest interruptibility state.
    pub interruptibility: u32,
    /// An NMI waits for the guest to be able to take it.
    pub nmi_pending: bool,
    /// An INIT arrived and was not taken yet.
    pub init_pending: bool,
    /// `KVM_CAP_X86_TRIPLE_FAULT_EVENT` is on for the VM: the events carry a pending
    /// triple fault.
    pub triple_fault_enabled: bool,
    /// A triple fault waits for the next entry (KVM's KVM_REQ_TRIPLE_FAULT): a shutdown,
    /// or in guest mode a VM exit to L1.
    pub triple_fault_pending: bool,
}

/// `KVM_GET_VCPU_EVENTS`. Software exceptions and software interrupts are not reported as
/// injected (the ABI has no instruction length for them; KVM leaves them out too, and the
/// guest executes the instruction again).
pub fn get(s: &EventState) -> VcpuEvents {
    let mut e = VcpuEvents {
        interrupt_shadow: (if s.interruptibility & BLOCKING_STI != 0 { SHADOW_STI } else { 0 })
            | (if s.interruptibility & BLOCKING_MOV_SS != 0 { SHADOW_MOV_SS } else { 0 }),
        nmi_pending: s.nmi_pending as u8,
        nmi_masked: s.interruptibility & BLOCKING_NMI != 0,
        latched_init: s.init_pending,
        flags: VALID_NMI_PENDING | VALID_SHADOW | VALID_SMM
            | if s.payload_enabled { VALID_PAYLOAD } else { 0 }
            | if s.triple_fault_enabled { VALID_TRIPLE_FAULT } else { 0 },
        triple_fault_pending: s.triple_fault_enabled && s.triple_fault_pending,
        ..VcpuEvents::default()
    };
    if let Some(p) = s.pending_exception {
        // Without payloads KVM reports a pending exception as injected (its old ABI).
        e.exception_pending = s.payload_enabled;
        e.exception_injected = !s.payload_enabled;
        e.exception_nr = p.vector;
        e.exception_has_error_code = p.error_code.is_some();
        e.exception_error_code = p.error_code.unwrap_or(0);
        e.exception_has_payload = p.payload.is_some();
        e.exception_payload = p.payload.unwrap_or(0);
    }
    if let Some(ev) = s.event {
        let info = InterruptionInfo(ev.info);
        match info.kind() {
            intr_kind::HW_EXCEPTION if s.pending_exception.is_none() => {
                e.exception_injected = true;
                e.exception_nr = info.vector();
                e.exception_has_error_code = info.deliver_error_code();
                e.exception_error_code = ev.error_code;
            }
            intr_kind::SW_EXCEPTION | intr_kind::PRIV_SW_EXCEPTION if s.pending_exception.is_none() => e.exception_nr = info.vector(),
            intr_kind::EXTERNAL => {
                e.interrupt_injected = true;
                e.interrupt_nr = info.vector();
            }
            intr_kind::SW_INTERRUPT => e.interrupt_nr = info.vector(),
            intr_kind::NMI => e.nmi_injected = true,
            _ => {}
        }
    }
    e
}

/// `kvm_run.ready_for_interrupt_injection` after an exit (KVM's
/// kvm_vcpu_ready_for_interrupt_injection): the guest can take an external interrupt now
/// (RFLAGS.IF set, no STI or MOV-SS shadow), no event is half-injected, the local APIC
/// would take a PIC's ExtINT (`accepts_pic`, [`super::lapic::Lapic::accepts_pic_interrupt`];
/// true without an in-kernel APIC) and no interrupt from KVM_INTERRUPT waits (`queued`).
pub const fn ready_for_interrupt_injection(rflags: u64, interruptibility: u32, event: bool, accepts_pic: bool, queued: bool) -> bool {
    interrupt_window_open(rflags, interruptibility) && !event && accepts_pic && !queued
}

/// The guest can take an external interrupt at this instruction boundary: RFLAGS.IF set and
/// neither STI nor MOV-SS blocking (SDM 25.4.1; VM entry refuses to inject one otherwise,
/// SDM 27.3.1.5).
pub const fn interrupt_window_open(rflags: u64, interruptibility: u32) -> bool {
    rflags & (1 << 9) != 0 && interruptibility & (BLOCKING_STI | BLOCKING_MOV_SS) == 0
}

/// The guest can take an NMI at this instruction boundary: no blocking by NMI (virtual-NMI
/// blocking with "virtual NMIs"), STI or MOV SS (SDM 25.4.2; VM entry refuses to inject an
/// NMI under MOV-SS blocking, SDM 27.3.1.5; KVM's vmx_nmi_blocked counts STI too).
pub const fn nmi_window_open(interruptibility: u32) -> bool {
    interruptibility & (BLOCKING_STI | BLOCKING_MOV_SS | BLOCKING_NMI) == 0
}

/// Whether an exit happened after an IRET had already unblocked NMIs, so that blocking by
/// NMI must be set again before the guest resumes and re-executes that IRET (SDM 28.2.2 and
/// 28.2.3, bit 12 "NMI unblocking due to IRET" of the exit interruption information and of
/// an EPT violation's qualification; with "virtual NMIs", SDM 26.3). Not when the exit
/// interrupted an event's delivery (`idt_info` valid: the IRET completed) nor for a #DF.
/// KVM's vmx_recover_nmi_blocking and handle_ept_violation.
pub const fn nmi_unblocked_by_faulting_iret(basic_reason: u16, intr_info: u32, qualification: u64, idt_info: u32) -> bool {
    if InterruptionInfo(idt_info).valid() {
        return false;
    }
    match basic_reason {
        super::exit::reason::EXCEPTION_NMI => {
            let i = InterruptionInfo(intr_info);
            i.valid() && i.nmi_unblocking() && i.vector() != 8
        }
        super::exit::reason::EPT_VIOLATION => qualification & (1 << 12) != 0,
        _ => false,
    }
}

/// Why KVM_INTERRUPT is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptError {
    /// A vector above 255 (EINVAL).
    BadVector,
    /// With the in-kernel local APIC, an ExtINT from the userspace PIC still waits (EEXIST).
    Busy,
}

/// `KVM_INTERRUPT` (KVM's kvm_vcpu_ioctl_interrupt): the vector to queue. Without an
/// in-kernel local APIC it is the external interrupt the next entry delivers, replacing one
/// queued before; with one (the split irqchip) it can only be the ExtINT of the VMM's PIC,
/// delivered when the APIC takes PIC interrupts, and one at a time.
pub fn queue_interrupt(irq: u32, queued: Option<u8>, lapic_in_kernel: bool) -> Result<u8, InterruptError> {
    let vector = u8::try_from(irq).map_err(|_| InterruptError::BadVector)?;
    if lapic_in_kernel && queued.is_some() {
        return Err(InterruptError::Busy);
    }
    Ok(vector)
}

/// Why KVM_SET_VCPU_EVENTS is refused (EINVAL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventsError {
    /// A flag KVM does not know.
    UnknownFlag,
    /// Payloads without KVM_CAP_EXCEPTION_PAYLOAD, a triple fault without
    /// KVM_CAP_X86_TRIPLE_FAULT_EVENT, or SMM (which nvmx does not have).
    NotEnabled,
    /// An exception with a vector above 31, or the NMI vector.
    BadVector,
}

/// `KVM_SET_VCPU_EVENTS` onto `s`: the new state, checked as KVM checks it before anything
/// changes. An injected software interrupt (`interrupt.soft`) is taken as an external one, as
/// nvmx has no instruction length to deliver it with; the SIPI vector is ignored as KVM
/// ignores it (INIT/SIPI go through the local APIC). With `KVM_VCPUEVENT_VALID_PAYLOAD`
/// (only with the capability on) an exception is pending or injected, a pending one with
/// its payload; without it "pending" and the payload are not part of the ABI (KVM clears
/// them).
pub fn set(s: &EventState, e: &VcpuEvents) -> Result<EventState, EventsError> {
    let known = VALID_NMI_PENDING | VALID_SIPI_VECTOR | VALID_SHADOW | VALID_SMM | VALID_PAYLOAD | VALID_TRIPLE_FAULT;
    if e.flags & !known != 0 {
        return Err(EventsError::UnknownFlag);
    }
    if (e.flags & VALID_TRIPLE_FAULT != 0 && !s.triple_fault_enabled) || (e.flags & VALID_PAYLOAD != 0 && !s.payload_enabled) {
        return Err(EventsError::NotEnabled);
    }
    let with_payload = e.flags & VALID_PAYLOAD != 0;
    let pending = with_payload && e.exception_pending;
    let injected = e.exception_injected && !pending;
    if (pending || injected) && (e.exception_nr > 31 || e.exception_nr == NMI_VECTOR) {
        return Err(EventsError::BadVector);
    }
    if e.flags & VALID_SMM != 0 && (e.smm || e.smi_pending || e.smm_inside_nmi) {
        return Err(EventsError::NotEnabled);
    }
    let mut n = *s;
    let exception = PendingException {
        vector: e.exception_nr,
        error_code: e.exception_has_error_code.then_some(e.exception_error_code),
        payload: (pending && e.exception_has_payload).then_some(e.exception_payload),
    };
    n.pending_exception = pending.then_some(exception);
    // KVM injects an exception before an NMI before an interrupt (inject_pending_event).
    n.event = if injected {
        Some(exception.event())
    } else if e.nmi_injected {
        Some(Event { info: InterruptionInfo::event(intr_kind::NMI, NMI_VECTOR, false).0, ..Event::default() })
    } else if e.interrupt_injected {
        Some(Event { info: InterruptionInfo::event(intr_kind::EXTERNAL, e.interrupt_nr, false).0, ..Event::default() })
    } else {
        None
    };
    if e.flags & VALID_SHADOW != 0 {
        n.interruptibility &= !(BLOCKING_STI | BLOCKING_MOV_SS);
        if e.interrupt_shadow & SHADOW_STI != 0 {
            n.interruptibility |= BLOCKING_STI;
        }
        if e.interrupt_shadow & SHADOW_MOV_SS != 0 {
            n.interruptibility |= BLOCKING_MOV_SS;
        }
    }
    if e.flags & VALID_NMI_PENDING != 0 {
        n.nmi_pending = e.nmi_pending != 0;
    }
    n.interruptibility = if e.nmi_masked { n.interruptibility | BLOCKING_NMI } else { n.interruptibility & !BLOCKING_NMI };
    if e.flags & VALID_SMM != 0 {
        n.init_pending = e.latched_init;
    }
    if e.flags & VALID_TRIPLE_FAULT != 0 {
        n.triple_fault_pending = e.triple_fault_pending;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u8, vector: u8, code: Option<u32>) -> Option<Event> {
        Some(Event { info: InterruptionInfo::event(kind, vector, code.is_some()).0, error_code: code.unwrap_or(0), insn_len: 0 })
    }

    #[test]
    fn get_reports_the_one_event_in_its_slot() {
        let gp = get(&EventState { event: event(intr_kind::HW_EXCEPTION, 13, Some(0x18)), ..EventState::default() });
        assert!(gp.exception_injected && gp.exception_has_error_code);
        assert_eq!((gp.exception_nr, gp.exception_error_code), (13, 0x18));
        assert!(!gp.interrupt_injected && !gp.nmi_injected);
        assert_eq!(gp.flags, VALID_NMI_PENDING | VALID_SHADOW | VALID_SMM);
        let irq = get(&EventState { event: event(intr_kind::EXTERNAL, 0x30, None), ..EventState::default() });
        assert!(irq.interrupt_injected && !irq.exception_injected);
        assert_eq!(irq.interrupt_nr, 0x30);
        let nmi = get(&EventState { event: event(intr_kind::NMI, 2, None), ..EventState::default() });
        assert!(nmi.nmi_injected);
        // INT3 and INT n: not injected (no instruction length in the ABI), as on KVM.
        let bp = get(&EventState { event: event(intr_kind::SW_EXCEPTION, 3, None), ..EventState::default() });
        assert!(!bp.exception_injected);
        let int = get(&EventState { event: event(intr_kind::SW_INTERRUPT, 0x80, None), ..EventState::default() });
        assert!(!int.interrupt_injected);
    }

    #[test]
    fn nmi_window_and_iret_unblocking() {
        assert!(nmi_window_open(0));
        for b in [BLOCKING_STI, BLOCKING_MOV_SS, BLOCKING_NMI] {
            assert!(!nmi_window_open(b));
        }
        use super::super::exit::reason;
        let unblocked = InterruptionInfo::event(intr_kind::HW_EXCEPTION, 14, true).with_nmi_unblocking(true).0;
        assert!(nmi_unblocked_by_faulting_iret(reason::EXCEPTION_NMI, unblocked, 0, 0));
        // Bit 12 clear, a #DF, an exit during event delivery: nothing to restore.
        assert!(!nmi_unblocked_by_faulting_iret(reason::EXCEPTION_NMI, unblocked & !(1 << 12), 0, 0));
        let df = InterruptionInfo::event(intr_kind::HW_EXCEPTION, 8, true).with_nmi_unblocking(true).0;
        assert!(!nmi_unblocked_by_faulting_iret(reason::EXCEPTION_NMI, df, 0, 0));
        let delivering = InterruptionInfo::event(intr_kind::EXTERNAL, 0x30, false).0;
        assert!(!nmi_unblocked_by_faulting_iret(reason::EXCEPTION_NMI, unblocked, 0, delivering));
        // An EPT violation says it in its qualification; other exits never.
        assert!(nmi_unblocked_by_faulting_iret(reason::EPT_VIOLATION, 0, (1 << 12) | 0x181, 0));
        assert!(!nmi_unblocked_by_faulting_iret(reason::EPT_VIOLATION, 0, 0x181, 0));
        assert!(!nmi_unblocked_by_faulting_iret(reason::CPUID, unblocked, 1 << 12, 0));
    }

    #[test]
    fn shadow_nmi_and_init() {
        let e = get(&EventState { interruptibility: BLOCKING_STI | BLOCKING_NMI, nmi_pending: true, init_pending: true, ..EventState::default() });
        assert_eq!((e.interrupt_shadow, e.nmi_masked, e.nmi_pending, e.latched_init), (SHADOW_STI, true, 1, true));
        let e = get(&EventState { interruptibility: BLOCKING_MOV_SS, ..EventState::default() });
        assert_eq!((e.interrupt_shadow, e.nmi_masked), (SHADOW_MOV_SS, false));
    }

    #[test]
    fn set_then_get_round_trips() {
        let states = [
            EventState { event: event(intr_kind::HW_EXCEPTION, 14, Some(2)), interruptibility: BLOCKING_NMI, ..EventState::default() },
            EventState { event: event(intr_kind::HW_EXCEPTION, 6, None), interruptibility: BLOCKING_STI, nmi_pending: true, ..EventState::default() },
            EventState { event: event(intr_kind::EXTERNAL, 0xec, None), interruptibility: BLOCKING_MOV_SS, ..EventState::default() },
            EventState { event: event(intr_kind::NMI, 2, None), init_pending: true, ..EventState::default() },
            EventState::default(),
        ];
        for s in states {
            assert_eq!(set(&EventState::default(), &get(&s)), Ok(s), "{s:?}");
        }
    }

    #[test]
    fn set_without_flags_keeps_shadow_nmi_pending_and_init() {
        let s = EventState { interruptibility: BLOCKING_STI, nmi_pending: true, init_pending: true, ..EventState::default() };
        let n = set(&s, &VcpuEvents::default()).unwrap();
        assert_eq!((n.interruptibility, n.nmi_pending, n.init_pending, n.event), (BLOCKING_STI, true, true, None));
    }

    #[test]
    fn ready_for_interrupt_injection_is_kvms() {
        const IF: u64 = 1 << 9;
        assert!(ready_for_interrupt_injection(IF | 2, 0, false, true, false));
        assert!(!ready_for_interrupt_injection(2, 0, false, true, false), "IF clear");
        assert!(!ready_for_interrupt_injection(IF, BLOCKING_STI, false, true, false), "STI shadow");
        assert!(!ready_for_interrupt_injection(IF, BLOCKING_MOV_SS, false, true, false), "MOV SS shadow");
        assert!(ready_for_interrupt_injection(IF, BLOCKING_NMI, false, true, false), "NMI blocking does not matter");
        assert!(!ready_for_interrupt_injection(IF, 0, true, true, false), "an event being injected");
        assert!(!ready_for_interrupt_injection(IF, 0, false, false, false), "LINT0 does not take ExtINT");
        assert!(!ready_for_interrupt_injection(IF, 0, false, true, true), "an ExtINT already waits");
    }

    #[test]
    fn kvm_interrupt_is_kvms() {
        assert_eq!(queue_interrupt(256, None, true), Err(InterruptError::BadVector));
        assert_eq!(queue_interrupt(u32::MAX, None, false), Err(InterruptError::BadVector));
        assert_eq!(queue_interrupt(0x20, None, true), Ok(0x20));
        assert_eq!(queue_interrupt(0x21, Some(0x20), true), Err(InterruptError::Busy), "one ExtINT at a time");
        assert_eq!(queue_interrupt(0x21, Some(0x20), false), Ok(0x21), "no in-kernel APIC: replaces");
        assert_eq!(queue_interrupt(255, None, false), Ok(255));
    }

    #[test]
    fn kvm_refusals() {
        let s = EventState::default();
        let with = |e: VcpuEvents| set(&s, &e);
        assert_eq!(with(VcpuEvents { flags: 64, ..VcpuEvents::default() }), Err(EventsError::UnknownFlag));
        assert_eq!(with(VcpuEvents { flags: VALID_PAYLOAD, ..VcpuEvents::default() }), Err(EventsError::NotEnabled), "capability off");
        assert_eq!(with(VcpuEvents { flags: VALID_TRIPLE_FAULT, ..VcpuEvents::default() }), Err(EventsError::NotEnabled));
        assert_eq!(with(VcpuEvents { flags: VALID_SMM, smm: true, ..VcpuEvents::default() }), Err(EventsError::NotEnabled));
        assert_eq!(with(VcpuEvents { exception_injected: true, exception_nr: 2, ..VcpuEvents::default() }), Err(EventsError::BadVector));
        assert_eq!(with(VcpuEvents { exception_injected: true, exception_nr: 32, ..VcpuEvents::default() }), Err(EventsError::BadVector));
        // A vector beyond 31 that is not injected is not looked at (KVM checks only then).
        assert!(with(VcpuEvents { exception_nr: 200, ..VcpuEvents::default() }).is_ok());
        assert!(with(VcpuEvents { flags: VALID_SIPI_VECTOR, sipi_vector: 0x12, ..VcpuEvents::default() }).is_ok());
    }

    #[test]
    fn triple_fault_event_with_the_capability() {
        let off = EventState { triple_fault_pending: true, ..EventState::default() };
        let e = get(&off);
        assert_eq!(e.flags & VALID_TRIPLE_FAULT, 0, "not reported with the capability off");
        assert!(!e.triple_fault_pending);
        let on = EventState { triple_fault_enabled: true, ..EventState::default() };
        let set_tf = |s: &EventState, pending| set(s, &VcpuEvents { flags: VALID_TRIPLE_FAULT, triple_fault_pending: pending, ..VcpuEvents::default() });
        let n = set_tf(&on, true).unwrap();
        assert!(n.triple_fault_pending);
        let e = get(&n);
        assert!(e.flags & VALID_TRIPLE_FAULT != 0 && e.triple_fault_pending);
        assert!(!set_tf(&n, false).unwrap().triple_fault_pending, "withdrawn");
        // Without the flag the pending triple fault stays as it is (KVM touches the request
        // only with the flag).
        assert!(set(&n, &VcpuEvents::default()).unwrap().triple_fault_pending);
    }

    #[test]
    fn pending_exceptions_with_payloads() {
        let s = EventState { payload_enabled: true, ..EventState::default() };
        let pf = VcpuEvents {
            flags: VALID_PAYLOAD,
            exception_pending: true,
            exception_injected: true,
            exception_nr: 14,
            exception_has_error_code: true,
            exception_error_code: 0xdead_0002,
            exception_has_payload: true,
            exception_payload: 0xdead_b000,
            ..VcpuEvents::default()
        };
        let n = set(&s, &pf).unwrap();
        assert_eq!(n.event, None, "pending wins over injected, as on KVM");
        let p = n.pending_exception.unwrap();
        assert_eq!(p, PendingException { vector: 14, error_code: Some(0xdead_0002), payload: Some(0xdead_b000) });
        let back = get(&n);
        assert!(back.exception_pending && !back.exception_injected);
        assert_eq!(back.flags & VALID_PAYLOAD, VALID_PAYLOAD);
        assert_eq!((back.exception_has_payload, back.exception_payload, back.exception_error_code), (true, 0xdead_b000, 0xdead_0002));
        assert_eq!(set(&s, &back), Ok(n), "round trip");
        // Injected with VALID_PAYLOAD: no payload (KVM drops it).
        let inj = set(&s, &VcpuEvents { exception_pending: false, ..pf }).unwrap();
        assert_eq!(inj.pending_exception, None);
        assert_eq!(inj.event.unwrap().error_code, 0xdead_0002);
        // Without VALID_PAYLOAD, "pending" means nothing: injected only if "injected".
        let old = set(&s, &VcpuEvents { flags: 0, exception_injected: false, ..pf }).unwrap();
        assert_eq!((old.pending_exception, old.event), (None, None));
        assert_eq!(set(&s, &VcpuEvents { exception_nr: 2, ..pf }), Err(EventsError::BadVector), "NMI vector");
        // The capability off: a pending one (there is none) is reported as injected.
        let off = get(&EventState { payload_enabled: false, ..n });
        assert!(off.exception_injected && !off.exception_pending);
        assert_eq!(off.flags & VALID_PAYLOAD, 0);
    }

    #[test]
    fn payload_delivery_and_exit_qualification() {
        let pf = PendingException { vector: 14, error_code: Some(0), payload: Some(0x1234) };
        assert_eq!(pf.deliver_payload(0xffff_0ff0, 7), (0xffff_0ff0, 0x1234));
        assert_eq!(pf.exit_qualification(0, 7), 0x1234);
        assert_eq!(PendingException { payload: None, ..pf }.exit_qualification(0, 7), 7, "CR2 without a payload");
        // #DB: B0 and BS (14) set, B1 cleared, RTM (bit 16, active low) cleared by its payload bit.
        let db = PendingException { vector: 1, error_code: None, payload: Some((1 << 14) | 1 | (1 << 16) | (1 << 12)) };
        let (dr6, cr2) = db.deliver_payload(0xffff_0ff2, 9);
        assert_eq!((dr6, cr2), ((0xffff_0ff0 | (1 << 14) | 1) & !(1 << 16), 9));
        assert_eq!(db.exit_qualification(0, 0), (1 << 14) | 1 | (1 << 16) | (1 << 12));
        let gp = PendingException { vector: 13, error_code: Some(0x18), payload: None };
        assert_eq!(gp.exit_qualification(0xffff_0ff0, 5), 0);
        assert_eq!(InterruptionInfo(gp.event().info).vector(), 13);
        assert!(InterruptionInfo(gp.event().info).deliver_error_code());
    }
}
