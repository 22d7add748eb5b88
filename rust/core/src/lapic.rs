// SPDX-License-Identifier: GPL-2.0
//! A local APIC (Intel SDM vol. 3A ch. 11), the in-kernel one a VM gets with
//! `KVM_CAP_SPLIT_IRQCHIP` (the I/O APIC and PIC stay in userspace, as with KVM's split
//! irqchip). Pure: register semantics, interrupt priorities, the timer as arithmetic on the
//! guest TSC, and IPIs as values for the caller to deliver.
//!
//! Registers are addressed by their xAPIC offset (x2APIC MSR 0x800 + n is offset n << 4).
//! What is not emulated is refused explicitly ([`ApicError::Unsupported`]), never ignored:
//! SMI, the remote-read ICR, level-triggered delivery (no in-kernel I/O APIC sends any).

/// Register offsets (SDM table 11-1).
pub mod reg {
    /// Local APIC ID.
    pub const ID: u32 = 0x20;
    /// Version.
    pub const VERSION: u32 = 0x30;
    /// Task priority.
    pub const TPR: u32 = 0x80;
    /// Arbitration priority (xAPIC only).
    pub const APR: u32 = 0x90;
    /// Processor priority.
    pub const PPR: u32 = 0xa0;
    /// End of interrupt.
    pub const EOI: u32 = 0xb0;
    /// Logical destination.
    pub const LDR: u32 = 0xd0;
    /// Destination format (xAPIC only).
    pub const DFR: u32 = 0xe0;
    /// Spurious-interrupt vector.
    pub const SVR: u32 = 0xf0;
    /// In-service register, 8 x 32 bits.
    pub const ISR: u32 = 0x100;
    /// Trigger-mode register.
    pub const TMR: u32 = 0x180;
    /// Interrupt-request register.
    pub const IRR: u32 = 0x200;
    /// Error status.
    pub const ESR: u32 = 0x280;
    /// Interrupt command, low half (x2APIC: the whole 64 bits).
    pub const ICR: u32 = 0x300;
    /// Interrupt command, high half (xAPIC only).
    pub const ICR2: u32 = 0x310;
    /// LVT timer.
    pub const LVT_TIMER: u32 = 0x320;
    /// LVT thermal sensor.
    pub const LVT_THERMAL: u32 = 0x330;
    /// LVT performance counter.
    pub const LVT_PMC: u32 = 0x340;
    /// LVT LINT0.
    pub const LVT_LINT0: u32 = 0x350;
    /// LVT LINT1.
    pub const LVT_LINT1: u32 = 0x360;
    /// LVT error.
    pub const LVT_ERROR: u32 = 0x370;
    /// Timer initial count.
    pub const TMICT: u32 = 0x380;
    /// Timer current count.
    pub const TMCCT: u32 = 0x390;
    /// Timer divide configuration.
    pub const TDCR: u32 = 0x3e0;
    /// Self IPI (x2APIC only).
    pub const SELF_IPI: u32 = 0x3f0;
}

/// Version register: version 0x14 (integrated APIC), 6 LVT entries (no CMCI), as KVM.
pub const VERSION: u32 = 0x14 | (5 << 16);
/// LVT mask bit.
pub const LVT_MASKED: u32 = 1 << 16;
/// SVR: APIC software enable.
pub const SVR_ENABLE: u32 = 1 << 8;
/// Nanoseconds per APIC-timer tick before division: the timer runs at 1 GHz, as KVM's.
pub const TIMER_NS_PER_TICK: u64 = 1;

/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;

const LVT_OFFSETS: [u32; 6] = [
    reg::LVT_TIMER,
    reg::LVT_THERMAL,
    reg::LVT_PMC,
    reg::LVT_LINT0,
    reg::LVT_LINT1,
    reg::LVT_ERROR,
];

/// Writable bits of each LVT (SDM figure 11-8): vector, delivery mode (not for timer and
/// error), pin polarity/trigger (LINT only), mask, timer mode (one-shot, periodic, and TSC
/// deadline where the guest's CPUID offers it).
const LVT_WRITABLE: [u32; 6] = [0x7_00ff, 0x1_07ff, 0x1_07ff, 0x1_a7ff, 0x1_a7ff, 0x1_00ff];

/// Why an access or a command cannot be carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicError {
    /// The guest gets #GP (x2APIC: reserved register or bits, read of a write-only
    /// register, write of a read-only one).
    Gp,
    /// Architecturally valid but not emulated by nvmx: the vCPU exits to userspace with
    /// KVM_EXIT_INTERNAL_ERROR naming the register and value.
    Unsupported,
}

/// Interrupt-command delivery modes (ICR bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Fixed vector (lowest priority is delivered as fixed to every target, as KVM does
    /// when it has no better choice).
    Fixed(u8),
    /// NMI.
    Nmi,
    /// INIT.
    Init,
    /// Start-up IPI with its vector (the start page).
    Sipi(u8),
}

/// Which local APICs an IPI goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Only the sender.
    Myself,
    /// All APICs, the sender included (`include_self`) or not.
    All {
        /// Whether the sender receives it too.
        include_self: bool,
    },
    /// The APIC whose ID is this (physical mode).
    Physical(u32),
    /// The APICs whose logical ID matches (logical mode; see [`Lapic::matches_logical`]).
    Logical(u32),
}

/// An interprocessor interrupt for the caller to deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipi {
    /// What is delivered.
    pub delivery: Delivery,
    /// To whom.
    pub dest: Destination,
}

/// What a register write asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteEffect {
    /// Nothing beyond the register.
    None,
    /// Send this IPI.
    Ipi(Ipi),
    /// The guest ended the interrupt with this vector (an EOI that found it in service):
    /// the VMM's I/O APIC may want to hear of it (rust/core/src/irq_routing.rs).
    Eoi(u8),
}

/// One local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lapic {
    /// The APIC ID (xAPIC: the 8 bits that the ID register holds in 31:24).
    pub id: u32,
    /// x2APIC mode (IA32_APIC_BASE.EXTD).
    pub x2apic: bool,
    tpr: u32,
    ldr: u32,
    dfr: u32,
    svr: u32,
    esr: u32,
    icr: u64,
    lvt: [u32; 6],
    isr: [u32; 8],
    tmr: [u32; 8],
    irr: [u32; 8],
    tmict: u32,
    tdcr: u32,
    /// Guest TSC at which the timer fires next, if it runs.
    timer_deadline: Option<u64>,
    /// Guest TSC ticks per period (periodic mode) or of the one shot.
    timer_period: u64,
    /// The guest's CPUID offers the TSC-deadline mode (LVT timer bits 18:17 = 10b).
    deadline_offered: bool,
    /// IA32_TSC_DEADLINE in TSC-deadline mode (0: disarmed, and after it fired).
    tsc_deadline: u64,
}

impl Lapic {
    /// The APIC after RESET (SDM 11.4.7.1): every LVT masked, SVR 0xff, DFR all ones.
    pub const fn new(id: u32) -> Self {
        Lapic {
            id,
            x2apic: false,
            tpr: 0,
            ldr: 0,
            dfr: u32::MAX,
            svr: 0xff,
            esr: 0,
            icr: 0,
            lvt: [LVT_MASKED; 6],
            isr: [0; 8],
            tmr: [0; 8],
            irr: [0; 8],
            tmict: 0,
            tdcr: 0,
            timer_deadline: None,
            timer_period: 0,
            deadline_offered: false,
            tsc_deadline: 0,
        }
    }

    /// The guest's CPUID offers (or not) the TSC-deadline timer mode: without it the LVT
    /// timer's bit 18 is reserved (KVM's timer_mode_mask).
    pub fn set_tsc_deadline_offered(&mut self, offered: bool) {
        self.deadline_offered = offered;
        if !offered && self.deadline_mode() {
            self.lvt[0] &= !(1 << 18);
            self.leave_deadline_mode();
        }
    }

    /// The LVT timer is in TSC-deadline mode.
    const fn deadline_mode(&self) -> bool {
        (self.lvt[0] >> 17) & 3 == 2
    }

    /// A change between TSC-deadline and the count modes stops the timer, as on KVM
    /// (apic_update_lvtt): TMICT and IA32_TSC_DEADLINE are cleared.
    fn leave_deadline_mode(&mut self) {
        self.tmict = 0;
        self.timer_period = 0;
        self.tsc_deadline = 0;
        self.timer_deadline = None;
    }

    /// RDMSR IA32_TSC_DEADLINE: the deadline in TSC-deadline mode, else 0 (KVM).
    pub const fn tsc_deadline(&self) -> u64 {
        if self.deadline_mode() { self.tsc_deadline } else { 0 }
    }

    /// WRMSR IA32_TSC_DEADLINE at guest TSC `now`: arms the timer for guest TSC `value` (0
    /// disarms; a deadline already passed is due at once). Ignored outside TSC-deadline
    /// mode, as on KVM (SDM 11.5.4.1).
    pub fn set_tsc_deadline(&mut self, value: u64) {
        if !self.deadline_mode() {
            return;
        }
        self.tsc_deadline = value;
        self.timer_period = 0;
        self.timer_deadline = (value != 0).then_some(value);
    }

    /// INIT (SDM 11.4.7.3): the registers return to their power-up values; what is not a
    /// register stays — the APIC ID, x2APIC mode (INIT leaves IA32_APIC_BASE alone) and the
    /// timer modes the guest's CPUID offers (KVM keeps its timer_mode_mask).
    pub fn init(&mut self) {
        let (id, x2apic, deadline_offered) = (self.id, self.x2apic, self.deadline_offered);
        *self = Lapic::new(id);
        self.deadline_offered = deadline_offered;
        if x2apic {
            self.enter_x2apic();
        }
    }

    /// The bootstrap processor's APIC after RESET or INIT under KVM's default
    /// KVM_X86_QUIRK_LINT0_REENABLED: LINT0 unmasked with delivery mode ExtINT (the virtual
    /// wire a BIOS would set up), every other LVT masked.
    pub const fn with_lint0_extint(mut self) -> Self {
        self.lvt[3] = 7 << 8;
        self
    }

    /// Whether an ExtINT from a PIC would be taken: LINT0 unmasked with delivery mode ExtINT
    /// (SDM 11.5.1), or the APIC globally disabled (`hw_enabled` false: LINT0 is then the
    /// CPU's INTR pin). KVM's kvm_apic_accept_pic_intr.
    pub const fn accepts_pic_interrupt(&self, hw_enabled: bool) -> bool {
        let lint0 = self.lvt[3];
        !hw_enabled || (lint0 & LVT_MASKED == 0 && (lint0 >> 8) & 7 == 7)
    }

    /// Switch to x2APIC mode (SDM 11.12.5: the logical ID becomes derived from the ID).
    pub fn enter_x2apic(&mut self) {
        self.x2apic = true;
        self.ldr = ((self.id >> 4) << 16) | (1 << (self.id & 0xf));
    }

    /// Whether the APIC is software-enabled (SVR bit 8).
    pub const fn enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    fn highest(bits: &[u32; 8]) -> Option<u8> {
        (0..8).rev().find(|&i| bits[i] != 0).map(|i| (i as u32 * 32 + 31 - bits[i].leading_zeros()) as u8)
    }

    fn set(bits: &mut [u32; 8], v: u8) {
        bits[v as usize / 32] |= 1 << (v % 32);
    }

    fn clear(bits: &mut [u32; 8], v: u8) {
        bits[v as usize / 32] &= !(1 << (v % 32));
    }

    /// CR8 in 64-bit mode: TPR bits 7:4 (SDM 11.8.6).
    pub const fn cr8(&self) -> u64 {
        ((self.tpr >> 4) & 0xf) as u64
    }

    /// MOV to CR8: TPR[7:4] = CR8[3:0], TPR[3:0] = 0 (SDM 11.8.6.1). Bits 63:4 are reserved
    /// (the caller raises #GP for them).
    pub fn set_cr8(&mut self, cr8: u64) {
        self.tpr = ((cr8 & 0xf) << 4) as u32;
    }

    /// Processor priority (SDM 11.8.3.1).
    pub fn ppr(&self) -> u32 {
        let isrv = Self::highest(&self.isr).map_or(0, |v| v as u32);
        if self.tpr & 0xf0 >= isrv & 0xf0 {
            self.tpr & 0xff
        } else {
            isrv & 0xf0
        }
    }

    /// Request `vector` (a fixed interrupt arriving). Vectors 0..=15 are illegal: they set
    /// the "received illegal vector" error instead (SDM 11.5.3).
    pub fn request(&mut self, vector: u8) {
        if vector < 16 {
            self.esr |= 1 << 6;
            return;
        }
        Self::set(&mut self.irr, vector);
    }

    /// Merge interrupts requested by others (a 256-bit IRR posted while this vCPU ran).
    pub fn merge_posted(&mut self, posted: &[u32; 8]) {
        for (r, p) in self.irr.iter_mut().zip(posted) {
            *r |= *p;
        }
    }

    /// The vector the CPU would take now, if any (highest IRR above PPR, SDM 11.8.3).
    pub fn deliverable(&self) -> Option<u8> {
        if !self.enabled() {
            return None;
        }
        let v = Self::highest(&self.irr)?;
        (v as u32 & 0xf0 > self.ppr() & 0xf0).then_some(v)
    }

    /// The CPU acknowledges `vector` (it is being delivered): IRR to ISR.
    pub fn acknowledge(&mut self, vector: u8) {
        Self::clear(&mut self.irr, vector);
        Self::set(&mut self.isr, vector);
    }

    /// End of interrupt: the highest in-service vector is done; which one, if any was.
    pub fn eoi(&mut self) -> Option<u8> {
        let v = Self::highest(&self.isr)?;
        Self::clear(&mut self.isr, v);
        Self::clear(&mut self.tmr, v);
        Some(v)
    }

    fn timer_divisor(&self) -> u64 {
        // TDCR bits 3,1:0: 000 /2, 001 /4, 010 /8, 011 /16, 100 /32, 101 /64, 110 /128,
        // 111 /1 (SDM figure 11-10).
        let code = ((self.tdcr >> 1) & 4) | (self.tdcr & 3);
        if code == 7 { 1 } else { 2 << code }
    }

    fn timer_periodic(&self) -> bool {
        self.lvt[0] & (1 << 17) != 0
    }

    /// Guest TSC ticks for `count` APIC-timer ticks at the current divisor.
    fn ticks_to_tsc(&self, count: u64, tsc_khz: u64) -> u64 {
        // At most 2^32 ticks x 128 x 1 ns = 2^39 ns; times a TSC of up to 2^24 kHz (16 GHz)
        // this stays below 2^63: no 128-bit arithmetic (the kernel has no u128 division).
        let ns = count * self.timer_divisor() * TIMER_NS_PER_TICK;
        ns.saturating_mul(tsc_khz) / 1_000_000
    }

    /// The guest TSC at which the timer next needs attention.
    pub const fn timer_deadline(&self) -> Option<u64> {
        self.timer_deadline
    }

    /// Guest TSC ticks from `now` until the timer needs attention (0: due), if it is armed.
    /// The guest (or its VMM) sets the TSC, so deadlines wrap past 2^64 like the TSC itself
    /// and are compared with wrapping arithmetic (a deadline is never 2^63 ticks away).
    pub const fn timer_ticks_left(&self, now: u64) -> Option<u64> {
        match self.timer_deadline {
            Some(d) if due(d, now) => Some(0),
            Some(d) => Some(d.wrapping_sub(now)),
            None => None,
        }
    }

    /// Fire the timer if its deadline has passed (`now` is the guest TSC): request the LVT
    /// timer vector unless masked, and re-arm a periodic timer. Returns whether it fired.
    pub fn poll_timer(&mut self, now: u64) -> bool {
        match self.timer_deadline {
            Some(d) if due(d, now) => {
                if self.lvt[0] & LVT_MASKED == 0 {
                    self.request(self.lvt[0] as u8);
                }
                // A TSC deadline fires once; IA32_TSC_DEADLINE reads 0 afterwards.
                self.tsc_deadline = 0;
                self.timer_deadline = if self.timer_periodic() && self.timer_period > 0 {
                    // Skip periods missed entirely rather than firing a burst.
                    let missed = now.wrapping_sub(d) / self.timer_period;
                    Some(d.wrapping_add(missed.wrapping_add(1).wrapping_mul(self.timer_period)))
                } else {
                    None
                };
                true
            }
            _ => false,
        }
    }

    fn current_count(&self, now: u64, tsc_khz: u64) -> u32 {
        let Some(d) = self.timer_deadline else { return 0 };
        if due(d, now) || self.timer_period == 0 {
            return 0;
        }
        // The inverse of ticks_to_tsc, in the same order (TSC ticks to ns, ns to APIC ticks):
        // one APIC tick is rarely a whole number of TSC ticks (25.6 at 200 MHz and /128), and
        // dividing by a truncated tick length would leave the count stuck at TMICT.
        let left_ns = d.wrapping_sub(now).saturating_mul(1_000_000) / tsc_khz.max(1);
        (left_ns / (self.timer_divisor() * TIMER_NS_PER_TICK)).min(self.tmict as u64) as u32
    }

    /// Read register `offset` (xAPIC offsets). `now` and `tsc_khz` serve the current count.
    pub fn read(&self, offset: u32, now: u64, tsc_khz: u64) -> Result<u32, ApicError> {
        Ok(match offset {
            reg::ID => if self.x2apic { self.id } else { self.id << 24 },
            reg::VERSION => VERSION,
            reg::TPR => self.tpr,
            reg::APR if !self.x2apic => 0,
            reg::PPR => self.ppr(),
            reg::LDR => self.ldr,
            reg::DFR if !self.x2apic => self.dfr,
            reg::SVR => self.svr,
            o @ 0x100..=0x170 if o % 16 == 0 => self.isr[((o - reg::ISR) / 16) as usize],
            o @ 0x180..=0x1f0 if o % 16 == 0 => self.tmr[((o - reg::TMR) / 16) as usize],
            o @ 0x200..=0x270 if o % 16 == 0 => self.irr[((o - reg::IRR) / 16) as usize],
            reg::ESR => self.esr,
            reg::ICR => self.icr as u32,
            reg::ICR2 if !self.x2apic => (self.icr >> 32) as u32,
            o if LVT_OFFSETS.contains(&o) => self.lvt[lvt_index(o)],
            reg::TMICT => self.tmict,
            reg::TMCCT => self.current_count(now, tsc_khz),
            reg::TDCR => self.tdcr,
            // EOI and SELF IPI are write-only; in xAPIC mode reads of them return 0.
            reg::EOI | reg::SELF_IPI if !self.x2apic => 0,
            _ => return Err(ApicError::Gp),
        })
    }

    /// The 64-bit x2APIC ICR (MSR 0x830), for RDMSR.
    pub const fn icr64(&self) -> u64 {
        self.icr
    }

    /// Write register `offset`. x2APIC rules (SDM 11.12.1.2): read-only registers and
    /// non-zero EOI writes are #GP. Returns what the caller must do (send an IPI).
    pub fn write(&mut self, offset: u32, value: u32, now: u64, tsc_khz: u64) -> Result<WriteEffect, ApicError> {
        let x2 = self.x2apic;
        match offset {
            reg::ID if !x2 => self.id = value >> 24,
            reg::TPR => self.tpr = value & 0xff,
            reg::EOI => {
                if x2 && value != 0 {
                    return Err(ApicError::Gp);
                }
                if let Some(v) = self.eoi() {
                    return Ok(WriteEffect::Eoi(v));
                }
            }
            reg::LDR if !x2 => self.ldr = value & 0xff00_0000,
            reg::DFR if !x2 => self.dfr = value | 0x0fff_ffff,
            reg::SVR => {
                self.svr = value & 0x13ff;
                if !self.enabled() {
                    // Software disable masks every LVT (SDM 11.4.7.2).
                    for l in &mut self.lvt {
                        *l |= LVT_MASKED;
                    }
                }
            }
            // Writing ESR latches the errors seen since the last write (SDM 11.5.3).
            reg::ESR => {
                if x2 && value != 0 {
                    return Err(ApicError::Gp);
                }
                self.esr = 0;
            }
            reg::ICR if x2 => return self.send(value as u64 | (self.icr & !0xffff_ffff)),
            reg::ICR => {
                let icr = (self.icr & !0xffff_ffff) | value as u64;
                return self.send(icr);
            }
            reg::ICR2 if !x2 => self.icr = (self.icr & 0xffff_ffff) | ((value as u64 & 0xff00_0000) << 32),
            o if LVT_OFFSETS.contains(&o) => {
                let i = lvt_index(o);
                let mut v = value & LVT_WRITABLE[i];
                if !self.enabled() {
                    v |= LVT_MASKED;
                }
                if i == 0 && !self.deadline_offered {
                    // Without the TSC-deadline mode in CPUID the bit is reserved.
                    v &= !(1 << 18);
                }
                let was_deadline = self.deadline_mode();
                self.lvt[i] = v;
                if i == 0 && was_deadline != self.deadline_mode() {
                    self.leave_deadline_mode();
                }
            }
            // In TSC-deadline mode TMICT writes are ignored (SDM 11.5.4.1).
            reg::TMICT if self.deadline_mode() => {}
            reg::TMICT => {
                self.tmict = value;
                self.timer_period = self.ticks_to_tsc(value as u64, tsc_khz);
                self.timer_deadline = (value != 0).then(|| now.wrapping_add(self.timer_period));
            }
            reg::TDCR => self.tdcr = value & 0xb,
            reg::SELF_IPI if x2 => {
                return Ok(WriteEffect::Ipi(Ipi { delivery: Delivery::Fixed(value as u8), dest: Destination::Myself }));
            }
            // Read-only in xAPIC mode: writes are ignored (SDM 11.4.1); x2APIC: #GP.
            reg::VERSION | reg::APR | reg::PPR | reg::TMCCT if !x2 => {}
            o @ (0x100..=0x270) if !x2 && o % 16 == 0 => {}
            _ => return Err(ApicError::Gp),
        }
        Ok(WriteEffect::None)
    }

    /// The 64-bit x2APIC ICR write (WRMSR 0x830).
    pub fn write_icr64(&mut self, value: u64) -> Result<WriteEffect, ApicError> {
        self.send(value)
    }

    fn send(&mut self, icr: u64) -> Result<WriteEffect, ApicError> {
        // Reserved bits: 13 (x2APIC: delivery status is reserved), 16-17, 20-31 (xAPIC 20-55).
        let reserved = if self.x2apic { 0xfff3_2000u64 | (1 << 12) } else { 0xfff3_0000 };
        if self.x2apic && icr as u32 & reserved as u32 != 0 {
            return Err(ApicError::Gp);
        }
        self.icr = icr & !(1 << 12); // delivery completes at once
        let lo = icr as u32;
        let vector = lo as u8;
        let mode = (lo >> 8) & 7;
        let logical = lo & (1 << 11) != 0;
        let level_assert = lo & (1 << 14) != 0;
        let level_trigger = lo & (1 << 15) != 0;
        let shorthand = (lo >> 18) & 3;
        let delivery = match mode {
            0 | 1 => Delivery::Fixed(vector),
            4 => Delivery::Nmi,
            // INIT level de-assert (a legacy no-op, SDM 11.6.1).
            5 if level_trigger && !level_assert => return Ok(WriteEffect::None),
            5 => Delivery::Init,
            6 => Delivery::Sipi(vector),
            _ => return Err(ApicError::Unsupported),
        };
        let raw_dest = if self.x2apic { (icr >> 32) as u32 } else { (icr >> 56) as u32 };
        let dest = match shorthand {
            1 => Destination::Myself,
            2 => Destination::All { include_self: true },
            3 => Destination::All { include_self: false },
            _ if logical => Destination::Logical(raw_dest),
            // Physical broadcast: 0xff (xAPIC) or 0xffff_ffff (x2APIC).
            _ if raw_dest == if self.x2apic { u32::MAX } else { 0xff } => {
                Destination::All { include_self: true }
            }
            _ => Destination::Physical(raw_dest),
        };
        Ok(WriteEffect::Ipi(Ipi { delivery, dest }))
    }

    /// Whether this APIC is a target of logical destination `dest`.
    pub fn matches_logical(&self, dest: u32) -> bool {
        matches_logical(self.x2apic, self.ldr, self.dfr, dest)
    }

    /// `KVM_GET_LAPIC`: the register page as KVM's `struct kvm_lapic_state` has it — each
    /// register as a u32 at its xAPIC offset (index = offset / 4). The ID is in xAPIC format
    /// (bits 31:24) in both modes, as KVM reports it without KVM_CAP_X2APIC_API.
    pub fn state(&self, now: u64, tsc_khz: u64) -> [u32; 256] {
        let mut r = [0u32; 256];
        let mut put = |off: u32, v: u32| r[(off / 4) as usize] = v;
        put(reg::ID, self.id << 24);
        put(reg::VERSION, VERSION);
        put(reg::TPR, self.tpr);
        put(reg::PPR, self.ppr());
        put(reg::LDR, self.ldr);
        put(reg::DFR, self.dfr);
        put(reg::SVR, self.svr);
        for i in 0..8u32 {
            put(reg::ISR + 16 * i, self.isr[i as usize]);
            put(reg::TMR + 16 * i, self.tmr[i as usize]);
            put(reg::IRR + 16 * i, self.irr[i as usize]);
        }
        put(reg::ESR, self.esr);
        put(reg::ICR, self.icr as u32);
        put(reg::ICR2, (self.icr >> 32) as u32);
        for (i, off) in LVT_OFFSETS.iter().enumerate() {
            put(*off, self.lvt[i]);
        }
        put(reg::TMICT, self.tmict);
        put(reg::TMCCT, self.current_count(now, tsc_khz));
        put(reg::TDCR, self.tdcr);
        r
    }

    /// `KVM_SET_LAPIC`: load a register page (the inverse of [`Lapic::state`]). Writable
    /// registers keep their write masks; read-only ones (version, PPR, current count) are
    /// ignored; in x2APIC mode the ID and LDR stay derived from the vCPU, as on KVM. The
    /// timer restarts from the initial count.
    pub fn set_state(&mut self, r: &[u32; 256], now: u64, tsc_khz: u64) {
        let get = |off: u32| r[(off / 4) as usize];
        if !self.x2apic {
            self.id = get(reg::ID) >> 24;
            self.ldr = get(reg::LDR) & 0xff00_0000;
            self.dfr = get(reg::DFR) | 0x0fff_ffff;
        }
        self.tpr = get(reg::TPR) & 0xff;
        self.svr = get(reg::SVR) & 0x13ff;
        for i in 0..8u32 {
            self.isr[i as usize] = get(reg::ISR + 16 * i);
            self.tmr[i as usize] = get(reg::TMR + 16 * i);
            self.irr[i as usize] = get(reg::IRR + 16 * i);
        }
        self.esr = get(reg::ESR);
        self.icr = ((get(reg::ICR2) as u64) << 32) | get(reg::ICR) as u64;
        for (i, off) in LVT_OFFSETS.iter().enumerate() {
            let mut v = get(*off) & LVT_WRITABLE[i];
            if !self.enabled() {
                v |= LVT_MASKED;
            }
            if i == 0 && !self.deadline_offered {
                v &= !(1 << 18);
            }
            if i == 0 && ((v >> 17) & 3 == 2) != self.deadline_mode() {
                self.tsc_deadline = 0;
            }
            self.lvt[i] = v;
        }
        self.tdcr = get(reg::TDCR) & 0xb;
        // TSC-deadline mode: the deadline stays armed (KVM restarts it; TMICT is unused).
        if self.deadline_mode() {
            self.tmict = get(reg::TMICT);
            self.timer_period = 0;
            self.timer_deadline = (self.tsc_deadline != 0).then_some(self.tsc_deadline);
            return;
        }
        self.tmict = get(reg::TMICT);
        self.timer_period = self.ticks_to_tsc(self.tmict as u64, tsc_khz);
        // The timer resumes from the saved current count, as KVM's kvm_apic_set_state does
        // (__start_apic_timer from APIC_TMCCT): a count above the initial count is the
        // initial count; none left means a periodic timer starts a new period and a one-shot
        // timer is due at once.
        let tmcct = get(reg::TMCCT).min(self.tmict);
        let left = match tmcct {
            0 if self.timer_periodic() => self.timer_period,
            0 => 0,
            c => self.ticks_to_tsc(c as u64, tsc_khz),
        };
        self.timer_deadline = (self.tmict != 0).then(|| now.wrapping_add(left));
    }

    /// LDR and DFR, which decide logical-destination matches.
    pub const fn logical_regs(&self) -> (u32, u32) {
        (self.ldr, self.dfr)
    }
}

/// Whether deadline `d` has come at guest TSC `now`, both on the wrapping 64-bit TSC.
const fn due(d: u64, now: u64) -> bool {
    (now.wrapping_sub(d) as i64) >= 0
}

/// Whether an APIC with these registers is a target of logical destination `dest` (SDM
/// 11.6.2.2): x2APIC cluster model; xAPIC flat (DFR model 0xf) or cluster (0x0) model.
pub fn matches_logical(x2apic: bool, ldr: u32, dfr: u32, dest: u32) -> bool {
    if x2apic {
        return dest >> 16 == ldr >> 16 && dest & ldr & 0xffff != 0;
    }
    let ldr = ldr >> 24;
    let d = dest & 0xff;
    if d == 0xff {
        return true;
    }
    match dfr >> 28 {
        0xf => d & ldr != 0,
        _ => d >> 4 == ldr >> 4 && d & ldr & 0xf != 0,
    }
}

/// An MSI as the local APICs take it (SDM 11.11; KVM_SIGNAL_MSI): the interrupt, and whether
/// it asked for lowest-priority delivery (one target only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    /// What is delivered, to whom.
    pub ipi: Ipi,
    /// Lowest-priority delivery mode: to one of the targets.
    pub lowest_priority: bool,
}

/// Decode an MSI's address (bits 19:12 destination ID, bit 2 logical destination mode; SDM
/// 11.11.1) and data (bits 7:0 vector, 10:8 delivery mode; 11.11.2). The destination is the
/// 8-bit one (no extended destination ID, as KVM without KVM_CAP_X2APIC_API); 0xff in
/// physical mode is a broadcast, in x2APIC mode too (KVM's x2APIC broadcast quirk). `None`:
/// a delivery mode no APIC here takes (SMI, ExtINT, reserved).
pub fn msi(address_lo: u32, data: u32) -> Option<Msi> {
    let dest_id = (address_lo >> 12) & 0xff;
    let logical = address_lo & (1 << 2) != 0;
    let vector = data as u8;
    let mode = (data >> 8) & 7;
    let delivery = match mode {
        0 | 1 => Delivery::Fixed(vector),
        4 => Delivery::Nmi,
        5 => Delivery::Init,
        6 => Delivery::Sipi(vector),
        _ => return None,
    };
    let dest = if logical {
        Destination::Logical(dest_id)
    } else if dest_id == 0xff {
        Destination::All { include_self: true }
    } else {
        Destination::Physical(dest_id)
    };
    Some(Msi { ipi: Ipi { delivery, dest }, lowest_priority: mode == 1 })
}

fn lvt_index(offset: u32) -> usize {
    LVT_OFFSETS.iter().position(|&o| o == offset).unwrap_or(0)
}

/// The x2APIC register offset of MSR `index` (0x800..=0x8ff), if it is one.
pub const fn x2apic_offset(index: u32) -> Option<u32> {
    if index >= 0x800 && index <= 0x8ff { Some((index - 0x800) << 4) } else { None }
}

#[cfg(test)]
mod msi_tests {
    use super::*;

    #[test]
    fn msi_address_and_data() {
        // Physical destination 3, fixed vector 0x45.
        let m = msi(0xfee0_3000, 0x45).unwrap();
        assert_eq!(m.ipi, Ipi { delivery: Delivery::Fixed(0x45), dest: Destination::Physical(3) });
        assert!(!m.lowest_priority);
        // Logical destination 0x0f, lowest priority.
        let m = msi(0xfee0_f004, 0x100 | 0x46).unwrap();
        assert_eq!(m.ipi.dest, Destination::Logical(0x0f));
        assert!(m.lowest_priority);
        // Physical 0xff: everyone. NMI, INIT, SIPI.
        assert_eq!(msi(0xfeef_f000, 0x400).unwrap().ipi.dest, Destination::All { include_self: true });
        assert_eq!(msi(0xfee0_0000, 0x400).unwrap().ipi.delivery, Delivery::Nmi);
        assert_eq!(msi(0xfee0_0000, 0x500).unwrap().ipi.delivery, Delivery::Init);
        assert_eq!(msi(0xfee0_0000, 0x612).unwrap().ipi.delivery, Delivery::Sipi(0x12));
        // SMI, ExtINT, reserved mode 3: none.
        for mode in [2, 3, 7] {
            assert_eq!(msi(0xfee0_0000, mode << 8), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KHZ: u64 = 1_000_000; // 1 GHz TSC: one TSC tick per ns

    fn enabled(id: u32) -> Lapic {
        let mut a = Lapic::new(id);
        a.write(reg::SVR, SVR_ENABLE | 0xff, 0, KHZ).unwrap();
        a
    }

    #[test]
    fn reset_values() {
        let a = Lapic::new(3);
        assert_eq!(a.read(reg::ID, 0, KHZ), Ok(3 << 24));
        assert_eq!(a.read(reg::VERSION, 0, KHZ), Ok(0x50014));
        assert_eq!(a.read(reg::SVR, 0, KHZ), Ok(0xff));
        assert_eq!(a.read(reg::DFR, 0, KHZ), Ok(u32::MAX));
        for o in LVT_OFFSETS {
            assert_eq!(a.read(o, 0, KHZ), Ok(LVT_MASKED));
        }
        assert!(!a.enabled());
    }

    #[test]
    fn priorities_and_eoi() {
        let mut a = enabled(0);
        a.request(0x41);
        a.request(0x82);
        assert_eq!(a.deliverable(), Some(0x82), "highest first");
        a.acknowledge(0x82);
        assert_eq!(a.ppr(), 0x80);
        assert_eq!(a.deliverable(), None, "0x41 is below the in-service class");
        a.request(0x91);
        assert_eq!(a.deliverable(), Some(0x91), "a higher class preempts");
        a.acknowledge(0x91);
        assert_eq!(a.eoi(), Some(0x91));
        assert_eq!(a.ppr(), 0x80, "EOI retires the highest in-service vector");
        assert_eq!(a.eoi(), Some(0x82));
        assert_eq!(a.eoi(), None);
        assert_eq!(a.deliverable(), Some(0x41));
        a.write(reg::TPR, 0x50, 0, KHZ).unwrap();
        assert_eq!(a.deliverable(), None, "TPR masks class 4");
        assert_eq!(a.cr8(), 5, "CR8 is TPR[7:4]");
        a.set_cr8(3);
        assert_eq!(a.read(reg::TPR, 0, KHZ), Ok(0x30));
        a.set_cr8(5);
        a.write(reg::TPR, 0x30, 0, KHZ).unwrap();
        assert_eq!(a.deliverable(), Some(0x41));
    }

    #[test]
    fn disabled_apic_delivers_nothing_and_masks_lvts() {
        let mut a = enabled(0);
        a.write(reg::LVT_TIMER, 0x30, 0, KHZ).unwrap();
        assert_eq!(a.read(reg::LVT_TIMER, 0, KHZ), Ok(0x30));
        a.request(0x40);
        a.write(reg::SVR, 0xff, 0, KHZ).unwrap();
        assert_eq!(a.deliverable(), None);
        assert_eq!(a.read(reg::LVT_TIMER, 0, KHZ), Ok(0x30 | LVT_MASKED));
        a.write(reg::LVT_TIMER, 0x30, 0, KHZ).unwrap();
        assert_eq!(a.read(reg::LVT_TIMER, 0, KHZ), Ok(0x30 | LVT_MASKED), "stays masked");
    }

    #[test]
    fn illegal_vectors_set_esr() {
        let mut a = enabled(0);
        a.request(3);
        assert_eq!(a.deliverable(), None);
        assert_eq!(a.read(reg::ESR, 0, KHZ), Ok(1 << 6));
        a.write(reg::ESR, 0, 0, KHZ).unwrap();
        assert_eq!(a.read(reg::ESR, 0, KHZ), Ok(0));
    }

    #[test]
    fn one_shot_and_periodic_timer() {
        let mut a = enabled(0);
        a.write(reg::TDCR, 0xb, 0, KHZ).unwrap(); // divide by 1
        a.write(reg::LVT_TIMER, 0x40, 0, KHZ).unwrap();
        a.write(reg::TMICT, 1000, 100, KHZ).unwrap();
        assert_eq!(a.timer_deadline(), Some(1100));
        assert_eq!(a.read(reg::TMCCT, 600, KHZ), Ok(500));
        assert!(!a.poll_timer(1099));
        assert!(a.poll_timer(1100));
        assert_eq!(a.deliverable(), Some(0x40));
        assert_eq!(a.timer_deadline(), None, "one shot");
        assert_eq!(a.read(reg::TMCCT, 2000, KHZ), Ok(0));

        a.write(reg::LVT_TIMER, 0x2_0041, 0, KHZ).unwrap(); // periodic
        a.write(reg::TDCR, 0x0, 0, KHZ).unwrap(); // divide by 2
        a.write(reg::TMICT, 100, 0, KHZ).unwrap();
        assert_eq!(a.timer_deadline(), Some(200));
        assert!(a.poll_timer(450));
        assert_eq!(a.timer_deadline(), Some(600), "missed periods are skipped");
        a.write(reg::TMICT, 0, 500, KHZ).unwrap();
        assert_eq!(a.timer_deadline(), None, "a zero count stops it");
    }

    #[test]
    fn timer_deadlines_wrap_with_the_tsc() {
        // A guest TSC 2^36 ticks before it wraps, TDCR /128, the largest count: the deadline
        // (about 2^36.7 ticks at 200 MHz) lies past 2^64 — no overflow, and the timer is
        // neither due at once nor lost.
        const NEAR_WRAP: u64 = u64::MAX - (1 << 36) + 1;
        let khz = 200_000;
        for periodic in [false, true] {
            let mut a = enabled(0);
            a.write(reg::TDCR, 0xa, NEAR_WRAP, khz).unwrap();
            a.write(reg::LVT_TIMER, if periodic { 0x2_0040 } else { 0x40 }, NEAR_WRAP, khz).unwrap();
            a.write(reg::TMICT, u32::MAX, NEAR_WRAP, khz).unwrap();
            let d = a.timer_deadline().unwrap();
            assert!(d < NEAR_WRAP, "wrapped past 2^64");
            let left = a.timer_ticks_left(NEAR_WRAP).unwrap();
            assert_eq!(left, d.wrapping_sub(NEAR_WRAP));
            assert!(left > 1 << 36);
            assert!(!a.poll_timer(NEAR_WRAP));
            // 2560 TSC ticks are 100 APIC ticks (25.6 each): the count moved by 100.
            let count = a.read(reg::TMCCT, NEAR_WRAP + 2560, khz).unwrap();
            assert!((u32::MAX - 101..=u32::MAX - 99).contains(&count), "count {count:#x}");
            assert!(!a.poll_timer(u64::MAX), "not due when the TSC wraps");
            let count = a.read(reg::TMCCT, u64::MAX, khz).unwrap();
            assert!(count > 0 && count < u32::MAX, "running: {count:#x}");
            assert!(a.poll_timer(d), "due at the wrapped deadline");
            assert_eq!(a.timer_ticks_left(d), if periodic { Some(left) } else { None });
            // A periodic timer polled very late skips its missed periods without overflow.
            if periodic {
                assert!(a.poll_timer(d.wrapping_add(5 * left)));
                assert!(a.timer_ticks_left(d.wrapping_add(5 * left)).unwrap() <= left);
            }
        }
        // KVM_SET_LAPIC (set_state) arms the timer the same way.
        let mut a = enabled(0);
        let mut regs = [0u32; 256];
        regs[(reg::SVR / 4) as usize] = SVR_ENABLE | 0xff;
        regs[(reg::TDCR / 4) as usize] = 0xa;
        regs[(reg::TMICT / 4) as usize] = u32::MAX;
        regs[(reg::TMCCT / 4) as usize] = u32::MAX;
        regs[(reg::LVT_TIMER / 4) as usize] = 0x40;
        a.set_state(&regs, NEAR_WRAP, khz);
        assert!(a.timer_ticks_left(NEAR_WRAP).unwrap() > 1 << 36);
        assert!(!a.poll_timer(NEAR_WRAP));
    }

    #[test]
    fn masked_timer_fires_without_interrupt() {
        let mut a = enabled(0);
        a.write(reg::LVT_TIMER, 0x1_0040, 0, KHZ).unwrap();
        a.write(reg::TMICT, 10, 0, KHZ).unwrap();
        assert!(a.poll_timer(1000));
        assert_eq!(a.deliverable(), None);
    }

    #[test]
    fn tsc_deadline_mode_is_not_offered() {
        let mut a = enabled(0);
        a.write(reg::LVT_TIMER, 0x4_0040, 0, KHZ).unwrap();
        assert_eq!(a.read(reg::LVT_TIMER, 0, KHZ), Ok(0x40));
    }

    #[test]
    fn xapic_icr_commands() {
        let mut a = enabled(1);
        a.write(reg::ICR2, 2 << 24, 0, KHZ).unwrap();
        let e = a.write(reg::ICR, 0x4050, 0, KHZ).unwrap();
        assert_eq!(e, WriteEffect::Ipi(Ipi { delivery: Delivery::Fixed(0x50), dest: Destination::Physical(2) }));
        let e = a.write(reg::ICR, 0x4_0060, 0, KHZ).unwrap();
        assert_eq!(e, WriteEffect::Ipi(Ipi { delivery: Delivery::Fixed(0x60), dest: Destination::Myself }));
        let e = a.write(reg::ICR, 0xc_0400, 0, KHZ).unwrap();
        assert_eq!(e, WriteEffect::Ipi(Ipi { delivery: Delivery::Nmi, dest: Destination::All { include_self: false } }));
        let e = a.write(reg::ICR, 0xc_4500, 0, KHZ).unwrap();
        assert_eq!(e, WriteEffect::Ipi(Ipi { delivery: Delivery::Init, dest: Destination::All { include_self: false } }));
        assert_eq!(a.write(reg::ICR, 0x8500, 0, KHZ), Ok(WriteEffect::None), "INIT de-assert");
        let e = a.write(reg::ICR, 0x0c_0608, 0, KHZ).unwrap();
        assert_eq!(e, WriteEffect::Ipi(Ipi { delivery: Delivery::Sipi(8), dest: Destination::All { include_self: false } }));
        assert_eq!(a.write(reg::ICR, 0x200, 0, KHZ), Err(ApicError::Unsupported), "SMI");
        a.write(reg::ICR2, 0xff << 24, 0, KHZ).unwrap();
        let e = a.write(reg::ICR, 0x30, 0, KHZ).unwrap();
        assert_eq!(e, WriteEffect::Ipi(Ipi { delivery: Delivery::Fixed(0x30), dest: Destination::All { include_self: true } }));
        assert_eq!(a.read(reg::ICR2, 0, KHZ), Ok(0xff << 24));
    }

    #[test]
    fn x2apic_rules() {
        let mut a = enabled(0x12);
        a.enter_x2apic();
        assert_eq!(a.read(reg::ID, 0, KHZ), Ok(0x12));
        assert_eq!(a.read(reg::LDR, 0, KHZ), Ok((1 << 16) | (1 << 2)));
        assert_eq!(a.read(reg::DFR, 0, KHZ), Err(ApicError::Gp), "no DFR in x2APIC mode");
        assert_eq!(a.read(reg::EOI, 0, KHZ), Err(ApicError::Gp), "write-only");
        assert_eq!(a.write(reg::EOI, 1, 0, KHZ), Err(ApicError::Gp), "non-zero EOI");
        assert_eq!(a.write(reg::EOI, 0, 0, KHZ), Ok(WriteEffect::None), "nothing in service");
        a.request(0x41);
        a.acknowledge(0x41);
        assert_eq!(a.write(reg::EOI, 0, 0, KHZ), Ok(WriteEffect::Eoi(0x41)));
        assert_eq!(a.write(reg::ID, 5, 0, KHZ), Err(ApicError::Gp), "read-only ID");
        assert_eq!(a.write(reg::PPR, 0, 0, KHZ), Err(ApicError::Gp));
        let e = a.write(reg::SELF_IPI, 0x77, 0, KHZ).unwrap();
        assert_eq!(e, WriteEffect::Ipi(Ipi { delivery: Delivery::Fixed(0x77), dest: Destination::Myself }));
        let e = a.write_icr64((7u64 << 32) | 0x45).unwrap();
        assert_eq!(e, WriteEffect::Ipi(Ipi { delivery: Delivery::Fixed(0x45), dest: Destination::Physical(7) }));
        assert_eq!(a.icr64(), (7u64 << 32) | 0x45);
        assert_eq!(a.write_icr64(1 << 20), Err(ApicError::Gp), "reserved ICR bit");
        assert_eq!(x2apic_offset(0x830), Some(reg::ICR));
        assert_eq!(x2apic_offset(0x80b), Some(reg::EOI));
        assert_eq!(x2apic_offset(0x900), None);
    }

    #[test]
    fn state_round_trip() {
        let mut a = enabled(3);
        a.write(reg::TPR, 0x20, 0, KHZ).unwrap();
        a.write(reg::LDR, 0x0800_0000, 0, KHZ).unwrap();
        a.write(reg::LVT_TIMER, 0x2_0045, 0, KHZ).unwrap();
        a.write(reg::TDCR, 0xb, 0, KHZ).unwrap();
        a.write(reg::TMICT, 500, 0, KHZ).unwrap();
        a.request(0x61);
        let st = a.state(100, KHZ);
        assert_eq!(st[(reg::ID / 4) as usize], 3 << 24);
        assert_eq!(st[(reg::VERSION / 4) as usize], VERSION);
        assert_eq!(st[(reg::TMCCT / 4) as usize], 400, "current count at t=100");
        assert_eq!(st[((reg::IRR + 0x30) / 4) as usize], 1 << 1, "vector 0x61");
        let mut b = Lapic::new(9);
        b.set_state(&st, 100, KHZ);
        assert_eq!(b.id, 3, "xAPIC ID restored");
        assert_eq!(b.state(100, KHZ)[..(reg::TMCCT / 4) as usize], st[..(reg::TMCCT / 4) as usize]);
        assert_eq!(b.deliverable(), Some(0x61));
        assert_eq!(b.timer_deadline(), Some(500), "the timer resumes from the saved count");
        // No count left: a periodic timer starts a new period, a one-shot one is due.
        let mut st0 = st;
        st0[(reg::TMCCT / 4) as usize] = 0;
        b.set_state(&st0, 100, KHZ);
        assert_eq!(b.timer_deadline(), Some(600), "periodic");
        st0[(reg::LVT_TIMER / 4) as usize] = 0x45;
        b.set_state(&st0, 100, KHZ);
        assert_eq!(b.timer_deadline(), Some(100), "one shot, due");
        // A count above the initial count is the initial count.
        st0[(reg::TMCCT / 4) as usize] = 10_000;
        b.set_state(&st0, 100, KHZ);
        assert_eq!(b.timer_deadline(), Some(600));
        // x2APIC mode: the ID and LDR stay derived.
        let mut x = enabled(5);
        x.enter_x2apic();
        let ldr = x.logical_regs().0;
        let mut st2 = st;
        st2[(reg::ID / 4) as usize] = 7 << 24;
        x.set_state(&st2, 0, KHZ);
        assert_eq!((x.id, x.logical_regs().0), (5, ldr));
    }

    #[test]
    fn logical_destinations() {
        let mut a = enabled(0);
        a.write(reg::LDR, 0x0400_0000, 0, KHZ).unwrap();
        assert!(a.matches_logical(0x04) && a.matches_logical(0x0c) && !a.matches_logical(0x03));
        assert!(a.matches_logical(0xff), "broadcast");
        a.write(reg::DFR, 0x0fff_ffff, 0, KHZ).unwrap(); // cluster model
        a.write(reg::LDR, 0x1200_0000, 0, KHZ).unwrap(); // cluster 1, bit 1
        assert!(a.matches_logical(0x13) && !a.matches_logical(0x23) && !a.matches_logical(0x11));
        let mut x = enabled(0x21);
        x.enter_x2apic();
        assert!(x.matches_logical((2 << 16) | 2) && !x.matches_logical((1 << 16) | 2));
    }

    #[test]
    fn pic_interrupts_need_lint0_extint_or_a_disabled_apic() {
        let mut a = Lapic::new(0);
        assert!(!a.accepts_pic_interrupt(true), "LINT0 masked at reset");
        assert!(a.accepts_pic_interrupt(false), "APIC disabled: INTR goes to the CPU");
        a.write(reg::SVR, 0x1ff, 0, KHZ).unwrap();
        a.write(reg::LVT_LINT0, 0x700, 0, KHZ).unwrap();
        assert!(a.accepts_pic_interrupt(true), "ExtINT, unmasked");
        a.write(reg::LVT_LINT0, 0x400, 0, KHZ).unwrap();
        assert!(!a.accepts_pic_interrupt(true), "NMI delivery");
        a.write(reg::LVT_LINT0, 0x1_0700, 0, KHZ).unwrap();
        assert!(!a.accepts_pic_interrupt(true), "masked");
        let bsp = Lapic::new(0).with_lint0_extint();
        assert!(bsp.accepts_pic_interrupt(true));
        assert_eq!(bsp.read(reg::LVT_LINT0, 0, KHZ), Ok(0x700));
        assert_eq!(bsp.read(reg::LVT_LINT1, 0, KHZ), Ok(LVT_MASKED));
    }

    #[test]
    fn tsc_deadline_mode_is_kvms() {
        const DEADLINE: u32 = 2 << 17;
        let mut a = enabled(0);
        a.write(reg::LVT_TIMER, DEADLINE | 0x60, 0, KHZ).unwrap();
        assert_eq!(a.read(reg::LVT_TIMER, 0, KHZ), Ok(0x60), "bit 18 reserved without the CPUID bit");
        a.set_tsc_deadline(500);
        assert_eq!((a.tsc_deadline(), a.timer_deadline()), (0, None), "ignored outside the mode");
        a.set_tsc_deadline_offered(true);
        a.write(reg::LVT_TIMER, DEADLINE | 0x60, 0, KHZ).unwrap();
        a.set_tsc_deadline(500);
        assert_eq!((a.tsc_deadline(), a.timer_deadline()), (500, Some(500)));
        a.write(reg::TMICT, 1000, 0, KHZ).unwrap();
        assert_eq!((a.read(reg::TMICT, 0, KHZ), a.timer_deadline()), (Ok(0), Some(500)), "TMICT ignored");
        assert!(!a.poll_timer(499));
        assert!(a.poll_timer(500));
        assert_eq!(a.deliverable(), Some(0x60));
        assert_eq!((a.tsc_deadline(), a.timer_deadline()), (0, None), "fires once, then reads 0");
        // A deadline already passed is due at once; 0 disarms.
        a.set_tsc_deadline(100);
        assert_eq!(a.timer_ticks_left(200), Some(0));
        a.set_tsc_deadline(0);
        assert_eq!(a.timer_deadline(), None);
        // Leaving the mode stops the timer and clears the deadline.
        a.set_tsc_deadline(900);
        a.write(reg::LVT_TIMER, 0x60, 0, KHZ).unwrap();
        assert_eq!((a.tsc_deadline(), a.timer_deadline()), (0, None));
        a.write(reg::LVT_TIMER, DEADLINE | 0x60, 0, KHZ).unwrap();
        assert_eq!(a.tsc_deadline(), 0, "not re-armed");
        // KVM_SET_LAPIC in the mode keeps the deadline armed.
        a.set_tsc_deadline(4000);
        let saved = a.state(0, KHZ);
        a.set_state(&saved, 10, KHZ);
        assert_eq!(a.timer_deadline(), Some(4000));
    }

    #[test]
    fn init_keeps_what_cpuid_and_apic_base_set() {
        // An application processor is started by INIT: its registers return to their reset
        // values, but the timer modes its CPUID offers and its x2APIC mode stay, or a
        // Linux AP's TSC-deadline timer never fires.
        const DEADLINE: u32 = 2 << 17;
        let mut a = enabled(5);
        a.set_tsc_deadline_offered(true);
        a.enter_x2apic();
        a.write(reg::LVT_TIMER, DEADLINE | 0x60, 0, KHZ).unwrap();
        a.set_tsc_deadline(500);
        a.init();
        let mut fresh = Lapic::new(5);
        fresh.set_tsc_deadline_offered(true);
        fresh.enter_x2apic();
        assert_eq!(a, fresh, "registers as after RESET, configuration kept");
        assert_eq!(a.timer_deadline(), None, "INIT stops the timer");
        a.write(reg::SVR, SVR_ENABLE | 0xff, 0, KHZ).unwrap();
        a.write(reg::LVT_TIMER, DEADLINE | 0x60, 0, KHZ).unwrap();
        a.set_tsc_deadline(700);
        assert_eq!(a.timer_deadline(), Some(700), "the TSC-deadline mode is still offered");
    }
}
