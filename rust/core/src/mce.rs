// SPDX-License-Identifier: GPL-2.0
//! The vCPU's machine-check architecture as KVM emulates it (arch/x86/kvm/x86.c,
//! kvm_vcpu_ioctl_x86_{setup,set}_mce; msrs.c, {get,set}_msr_mce): the banks a VMM sets up
//! with KVM_X86_SETUP_MCE, the machine-check MSRs (SDM vol. 3B 16.3), and the errors a VMM
//! injects with KVM_X86_SET_MCE — a host machine check that hit guest memory, passed on.
//! nvmx offers MCG_CTL_P and MCG_SER_P (KVM's base; not LMCE or CMCI, which need more of the
//! local APIC and VMX than nvmx has).

/// `KVM_MAX_MCE_BANKS`.
pub const MAX_BANKS: u64 = 32;
/// IA32_MCG_CAP.MCG_CTL_P: IA32_MCG_CTL exists.
pub const MCG_CTL_P: u64 = 1 << 8;
/// IA32_MCG_CAP.MCG_CMCI_P.
pub const MCG_CMCI_P: u64 = 1 << 10;
/// IA32_MCG_CAP.MCG_SER_P: software error recovery.
pub const MCG_SER_P: u64 = 1 << 24;
/// What KVM_X86_GET_MCE_CAP_SUPPORTED reports.
pub const SUPPORTED_CAP: u64 = MCG_CTL_P | MCG_SER_P;

/// IA32_MCG_STATUS.MCIP: a machine check is in progress.
pub const MCG_STATUS_MCIP: u64 = 1 << 2;
/// IA32_MCi_STATUS bits (SDM figure 16-6).
pub mod status {
    /// Valid.
    pub const VAL: u64 = 1 << 63;
    /// Overflow: an error was lost.
    pub const OVER: u64 = 1 << 62;
    /// Uncorrected.
    pub const UC: u64 = 1 << 61;
    /// Processor context corrupt.
    pub const PCC: u64 = 1 << 57;
    /// Signaled (as a machine-check exception).
    pub const S: u64 = 1 << 56;
    /// Action required.
    pub const AR: u64 = 1 << 55;
}

/// IA32_P5_MC_ADDR, IA32_P5_MC_TYPE: read as 0.
const P5_MC_ADDR: u32 = 0;
const P5_MC_TYPE: u32 = 1;
/// IA32_MCG_CAP, IA32_MCG_STATUS, IA32_MCG_CTL.
pub const MCG_CAP: u32 = 0x179;
/// IA32_MCG_STATUS.
pub const MCG_STATUS: u32 = 0x17a;
/// IA32_MCG_CTL.
pub const MCG_CTL: u32 = 0x17b;
/// IA32_MC0_CTL2: the CMCI controls, 0x280 + bank.
const MC0_CTL2: u32 = 0x280;
/// IA32_MC0_CTL: four MSRs per bank (CTL, STATUS, ADDR, MISC) from 0x400.
pub const MC0_CTL: u32 = 0x400;

/// `struct kvm_x86_mce` without its padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InjectedError {
    /// IA32_MCi_STATUS.
    pub status: u64,
    /// IA32_MCi_ADDR.
    pub addr: u64,
    /// IA32_MCi_MISC.
    pub misc: u64,
    /// IA32_MCG_STATUS.
    pub mcg_status: u64,
    /// The bank.
    pub bank: u8,
}

/// What an injected error does to the vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Logged in the bank (or dropped where reporting is off): nothing is delivered.
    Logged,
    /// A machine-check exception (#MC) is delivered.
    Exception,
    /// A machine check while one is in progress, or with CR4.MCE clear: shutdown.
    TripleFault,
}

/// The machine-check state of a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mce {
    /// IA32_MCG_CAP.
    pub cap: u64,
    /// IA32_MCG_STATUS.
    pub mcg_status: u64,
    /// IA32_MCG_CTL.
    pub mcg_ctl: u64,
    /// IA32_MCi_CTL, _STATUS, _ADDR, _MISC of each bank.
    pub banks: [u64; 4 * MAX_BANKS as usize],
}

impl Default for Mce {
    /// A new vCPU, as KVM makes it: 32 banks, everything else 0 until KVM_X86_SETUP_MCE.
    fn default() -> Self {
        Mce { cap: MAX_BANKS, mcg_status: 0, mcg_ctl: 0, banks: [0; 4 * MAX_BANKS as usize] }
    }
}

impl Mce {
    fn bank_count(&self) -> u32 {
        (self.cap & 0xff) as u32
    }

    /// `KVM_X86_SETUP_MCE`: false (EINVAL) for no bank, more than 32, or a capability bit
    /// beyond the supported ones (the bank count and bits 23:16, the extended-register
    /// count, excepted). IA32_MCG_CTL and every IA32_MCi_CTL start all ones.
    pub fn setup(&mut self, cap: u64) -> bool {
        let n = cap & 0xff;
        if n == 0 || n > MAX_BANKS || cap & !(SUPPORTED_CAP | 0xff | 0xff_0000) != 0 {
            return false;
        }
        self.cap = cap;
        if cap & MCG_CTL_P != 0 {
            self.mcg_ctl = u64::MAX;
        }
        for b in 0..n as usize {
            self.banks[4 * b] = u64::MAX;
        }
        true
    }

    /// Whether `index` is one of the machine-check MSRs (for the MSR lookup).
    pub const fn is_mce_msr(index: u32) -> bool {
        matches!(index, P5_MC_ADDR | P5_MC_TYPE | MCG_CAP | MCG_STATUS | MCG_CTL)
            || (index >= MC0_CTL2 && index < MC0_CTL2 + MAX_BANKS as u32)
            || (index >= MC0_CTL && index < MC0_CTL + 4 * MAX_BANKS as u32)
    }

    /// RDMSR (`host`: KVM_GET_MSRS) of a machine-check MSR; `None` is #GP (or a stop of
    /// KVM_GET_MSRS).
    pub fn read(&self, index: u32, host: bool) -> Option<u64> {
        match index {
            P5_MC_ADDR | P5_MC_TYPE => Some(0),
            MCG_CAP => Some(self.cap),
            MCG_CTL => (self.cap & MCG_CTL_P != 0 || host).then_some(self.mcg_ctl),
            MCG_STATUS => Some(self.mcg_status),
            // No CMCI: the VMM reads 0, the guest #GP.
            i if (MC0_CTL2..MC0_CTL2 + MAX_BANKS as u32).contains(&i) => {
                (i < MC0_CTL2 + self.bank_count() && host).then_some(0)
            }
            i if (MC0_CTL..MC0_CTL + 4 * MAX_BANKS as u32).contains(&i) => {
                let o = (i - MC0_CTL) as usize;
                (o < 4 * self.bank_count() as usize).then(|| self.banks[o])
            }
            _ => None,
        }
    }

    /// WRMSR (`host`: KVM_SET_MSRS) of a machine-check MSR; false is #GP (or a stop of
    /// KVM_SET_MSRS). `mci_status_writable`: AMD's HWCR.McStatusWrEn for an AMD-compatible
    /// guest (a non-zero MCi_STATUS write from the guest needs it).
    pub fn write(&mut self, index: u32, value: u64, host: bool, mci_status_writable: bool) -> bool {
        match index {
            MCG_STATUS => self.mcg_status = value,
            MCG_CTL => {
                if self.cap & MCG_CTL_P == 0 && (value != 0 || !host) {
                    return false;
                }
                if value != 0 && value != u64::MAX {
                    return false;
                }
                self.mcg_ctl = value;
            }
            // No CMCI: only the VMM's write of 0 is taken (and there is nothing to store).
            i if (MC0_CTL2..MC0_CTL2 + MAX_BANKS as u32).contains(&i) => {
                return i < MC0_CTL2 + self.bank_count() && value == 0 && host;
            }
            i if (MC0_CTL..MC0_CTL + 4 * MAX_BANKS as u32).contains(&i) => {
                let o = (i - MC0_CTL) as usize;
                if o >= 4 * self.bank_count() as usize {
                    return false;
                }
                // MCi_CTL: 0 or all ones, bits 10 and 0 may be clear (Linux clears bit 10 of
                // bank 4 on AMD K8s, UnixWare bit 0 of bank 1; KVM allows both).
                if o % 4 == 0 && value != 0 && value | (1 << 10) | 1 != u64::MAX {
                    return false;
                }
                // MCi_STATUS: the guest may only clear it (unless McStatusWrEn).
                if o % 4 == 1 && !host && value != 0 && !mci_status_writable {
                    return false;
                }
                self.banks[o] = value;
            }
            _ => return false,
        }
        true
    }

    /// `KVM_X86_SET_MCE`: `None` (EINVAL) for a bank beyond the count or a status without
    /// VAL. Otherwise the bank logs the error and the outcome says whether a #MC is
    /// delivered (`cr4_mce`: the guest's CR4.MCE), as KVM decides it. A UCNA error
    /// (uncorrected, no action: not signaled) is logged only (no CMCI is offered).
    pub fn inject(&mut self, e: &InjectedError, cr4_mce: bool) -> Option<Outcome> {
        if u64::from(e.bank) >= u64::from(self.bank_count()) || e.status & status::VAL == 0 {
            return None;
        }
        let b = 4 * e.bank as usize;
        let ucna = e.mcg_status == 0 && e.status & (status::PCC | status::S | status::AR) == 0 && e.status & status::UC != 0;
        if ucna {
            self.banks[b + 1] = e.status;
            self.banks[b + 2] = e.addr;
            self.banks[b + 3] = e.misc;
            self.mcg_status = e.mcg_status;
            return Some(Outcome::Logged);
        }
        let uc = e.status & status::UC != 0;
        // Uncorrected-error reporting off (IA32_MCG_CTL or the bank's IA32_MCi_CTL not all
        // ones): the error is dropped.
        if uc && ((self.cap & MCG_CTL_P != 0 && self.mcg_ctl != u64::MAX) || self.banks[b] != u64::MAX) {
            return Some(Outcome::Logged);
        }
        let old = self.banks[b + 1];
        let over = if old & status::VAL != 0 { status::OVER } else { 0 };
        if uc {
            if self.mcg_status & MCG_STATUS_MCIP != 0 || !cr4_mce {
                return Some(Outcome::TripleFault);
            }
            self.banks[b + 2] = e.addr;
            self.banks[b + 3] = e.misc;
            self.mcg_status = e.mcg_status;
            self.banks[b + 1] = e.status | over;
            return Some(Outcome::Exception);
        }
        if old & status::VAL == 0 || old & status::UC == 0 {
            self.banks[b + 2] = e.addr;
            self.banks[b + 3] = e.misc;
            self.banks[b + 1] = e.status | over;
        } else {
            // A corrected error over an uncorrected one keeps the latter.
            self.banks[b + 1] = old | status::OVER;
        }
        Some(Outcome::Logged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UC_ERROR: InjectedError = InjectedError {
        status: status::VAL | status::UC | status::S | status::AR | status::PCC | 0x17,
        addr: 0x1234_5000,
        misc: 0x86,
        mcg_status: 0b101, // RIPV, MCIP
        bank: 1,
    };

    fn set_up() -> Mce {
        let mut m = Mce::default();
        assert!(m.setup(MCG_CTL_P | MCG_SER_P | 10));
        m
    }

    #[test]
    fn a_new_vcpu_and_setup() {
        let m = Mce::default();
        assert_eq!((m.read(MCG_CAP, false), m.read(MCG_CTL, false), m.read(MCG_CTL, true)), (Some(32), None, Some(0)));
        let mut m = Mce::default();
        for bad in [0, 33, MCG_CMCI_P | 1, (1 << 27) | 1] {
            assert!(!m.setup(bad), "{bad:#x}");
        }
        assert!(m.setup(0x05_0000 | 2), "extended registers and bank count are not capability bits");
        let m = set_up();
        assert_eq!(m.read(MCG_CAP, false), Some(MCG_CTL_P | MCG_SER_P | 10));
        assert_eq!(m.read(MCG_CTL, false), Some(u64::MAX));
        assert_eq!(m.read(MC0_CTL + 4 * 9, false), Some(u64::MAX), "bank 9 CTL");
        assert_eq!(m.read(MC0_CTL + 4 * 10, false), None, "no bank 10");
        assert_eq!(m.read(MC0_CTL2 + 3, false), None, "no CMCI");
        assert_eq!(m.read(MC0_CTL2 + 3, true), Some(0));
        assert_eq!((m.read(0, false), m.read(1, false)), (Some(0), Some(0)), "P5 MSRs");
    }

    #[test]
    fn msr_writes_are_kvms() {
        let mut m = set_up();
        assert!(m.write(MCG_STATUS, 5, false, false));
        assert!(!m.write(MCG_CTL, 0x1234, true, false), "0 or all ones");
        assert!(m.write(MCG_CTL, 0, false, false));
        assert!(!m.write(MCG_CAP, 1, true, false), "read-only");
        assert!(!m.write(MC0_CTL, 0xff, false, false), "MCi_CTL: 0 or all ones");
        assert!(m.write(MC0_CTL + 4 * 4, !(1 << 10), false, false), "the K8 GART quirk");
        assert!(!m.write(MC0_CTL + 1, 5, false, false), "the guest only clears MCi_STATUS");
        assert!(m.write(MC0_CTL + 1, 5, false, true), "McStatusWrEn");
        assert!(m.write(MC0_CTL + 1, 6, true, false), "the VMM writes it");
        assert!(m.write(MC0_CTL + 1, 0, false, false));
        assert!(!m.write(MC0_CTL + 4 * 10, 0, true, false), "no bank 10");
        assert!(m.write(MC0_CTL2, 0, true, false) && !m.write(MC0_CTL2, 1, true, false) && !m.write(MC0_CTL2, 0, false, false));
        let mut plain = Mce::default();
        assert!(plain.write(MCG_CTL, 0, true, false) && !plain.write(MCG_CTL, 0, false, false), "no MCG_CTL_P");
        assert!(!plain.write(MCG_CTL, u64::MAX, true, false));
    }

    #[test]
    fn uncorrected_errors_are_delivered() {
        let mut m = set_up();
        assert_eq!(m.inject(&UC_ERROR, true), Some(Outcome::Exception));
        assert_eq!(m.read(MC0_CTL + 5, false), Some(UC_ERROR.status));
        assert_eq!((m.read(MC0_CTL + 6, false), m.read(MC0_CTL + 7, false)), (Some(0x1234_5000), Some(0x86)));
        assert_eq!(m.read(MCG_STATUS, false), Some(0b101));
        // Another while MCIP is set: shutdown.
        assert_eq!(m.inject(&UC_ERROR, true), Some(Outcome::TripleFault));
        let mut m = set_up();
        assert_eq!(m.inject(&UC_ERROR, false), Some(Outcome::TripleFault), "CR4.MCE clear");
        // Reporting off: dropped.
        let mut m = set_up();
        assert!(m.write(MC0_CTL + 4, 0, false, false));
        assert_eq!(m.inject(&UC_ERROR, true), Some(Outcome::Logged));
        assert_eq!(m.read(MC0_CTL + 5, false), Some(0));
        // A second error after the guest cleared MCIP but not the bank: overflow.
        let mut m = set_up();
        m.inject(&UC_ERROR, true);
        assert!(m.write(MCG_STATUS, 0, false, false));
        assert_eq!(m.inject(&UC_ERROR, true), Some(Outcome::Exception));
        assert_ne!(m.read(MC0_CTL + 5, false).unwrap() & status::OVER, 0);
    }

    #[test]
    fn corrected_and_ucna_errors_are_logged() {
        let mut m = set_up();
        let ce = InjectedError { status: status::VAL | 0x5, addr: 1, misc: 2, mcg_status: 0, bank: 0 };
        assert_eq!(m.inject(&ce, true), Some(Outcome::Logged));
        assert_eq!(m.read(MC0_CTL + 1, false), Some(ce.status));
        assert_eq!(m.inject(&ce, true), Some(Outcome::Logged));
        assert_eq!(m.read(MC0_CTL + 1, false), Some(ce.status | status::OVER), "overflow");
        let ucna = InjectedError { status: status::VAL | status::UC | 0x9, addr: 3, misc: 4, mcg_status: 0, bank: 2 };
        assert_eq!(m.inject(&ucna, false), Some(Outcome::Logged), "UCNA: no #MC, CR4.MCE does not matter");
        assert_eq!(m.read(MC0_CTL + 9, false), Some(ucna.status));
        assert_eq!(m.inject(&InjectedError { bank: 10, ..ce }, true), None, "bank count");
        assert_eq!(m.inject(&InjectedError { status: 5, ..ce }, true), None, "no VAL");
    }
}
