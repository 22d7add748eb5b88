// SPDX-License-Identifier: GPL-2.0
//! A vCPU's debug registers DR0-DR3, DR6 and DR7 (SDM vol. 3B 18.2): what MOV to/from DRn
//! does for a guest (every MOV DR exits, so nvmx holds the values), `KVM_GET/SET_DEBUGREGS`,
//! and the reserved-bit rules, as KVM applies them (kvm_set_dr / kvm_get_dr) for a guest
//! without RTM and bus-lock detection.
//!
//! The guest's DR0-DR3 and DR6 are on the CPU only while the guest runs with a breakpoint
//! enabled in its DR7 (rust/run.rs); the guest's DR7 is VMCS state.

/// DR6 bits that read as 1 without RTM and bus-lock detection (KVM's DR6_ACTIVE_LOW,
/// kvm_dr6_fixed): also the value at RESET.
pub const DR6_FIXED_1: u64 = 0xffff_0ff0;
/// DR6 bits software may change: B0-B3, BD, BS, BT (RTM and BLD are fixed without the
/// features).
pub const DR6_VOLATILE: u64 = 0x0000_e00f;
/// DR7 bit 10 reads as 1; the value at RESET.
pub const DR7_FIXED_1: u64 = 0x400;
/// DR7 bits software may set: L0-G3, LE, GE, RTM (11), GD, R/W and LEN fields.
pub const DR7_VOLATILE: u64 = 0xffff_2bff;
/// DR7's local and global enable bits of the four breakpoints.
pub const DR7_ENABLES: u64 = 0xff;

/// DR0-DR3, DR6, DR7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugRegs {
    /// Breakpoint addresses.
    pub db: [u64; 4],
    /// Debug status.
    pub dr6: u64,
    /// Debug control.
    pub dr7: u64,
}

impl Default for DebugRegs {
    /// The values after RESET (SDM table 10-1).
    fn default() -> Self {
        DebugRegs { db: [0; 4], dr6: DR6_FIXED_1, dr7: DR7_FIXED_1 }
    }
}

/// A MOV DR the CPU refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrFault {
    /// #UD: DR4/DR5 with CR4.DE set.
    Ud,
    /// #GP(0): bits 63:32 of DR6/DR7 set.
    Gp,
}

/// The exit qualification of a MOV-DR exit (SDM table 28-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrAccess {
    /// Debug register number (0-7).
    pub dr: u8,
    /// MOV from DR (to a general-purpose register).
    pub read: bool,
    /// The general-purpose register (x86 number).
    pub gpr: u8,
}

impl DrAccess {
    /// Decode the qualification: bits 2:0 the register, bit 4 the direction, 11:8 the GPR.
    pub const fn decode(q: u64) -> Self {
        DrAccess { dr: (q & 7) as u8, read: q & (1 << 4) != 0, gpr: ((q >> 8) & 0xf) as u8 }
    }
}

/// DR4/DR5 alias DR6/DR7 unless CR4.DE makes them #UD (SDM 18.2.2).
const fn alias(dr: u8, cr4_de: bool) -> Result<u8, DrFault> {
    match dr {
        4 | 5 if cr4_de => Err(DrFault::Ud),
        4 | 5 => Ok(dr + 2),
        _ => Ok(dr),
    }
}

impl DebugRegs {
    /// MOV from DRn.
    pub fn read(&self, dr: u8, cr4_de: bool) -> Result<u64, DrFault> {
        Ok(match alias(dr, cr4_de)? {
            n @ 0..=3 => self.db[n as usize],
            6 => self.dr6,
            _ => self.dr7,
        })
    }

    /// MOV to DRn (also KVM_SET_DEBUGREGS, with the same rules for DR6 and DR7).
    pub fn write(&mut self, dr: u8, value: u64, cr4_de: bool) -> Result<(), DrFault> {
        match alias(dr, cr4_de)? {
            n @ 0..=3 => self.db[n as usize] = value,
            6 if value >> 32 != 0 => return Err(DrFault::Gp),
            6 => self.dr6 = (value & DR6_VOLATILE) | DR6_FIXED_1,
            _ if value >> 32 != 0 => return Err(DrFault::Gp),
            _ => self.dr7 = (value & DR7_VOLATILE) | DR7_FIXED_1,
        }
        Ok(())
    }

    /// Whether DR7 enables any breakpoint: then DR0-DR3 must be on the CPU while the guest
    /// runs.
    pub const fn breakpoints_enabled(&self) -> bool {
        self.dr7 & DR7_ENABLES != 0
    }

    /// DR6 as the CPU left it after the guest ran with its registers loaded (a #DB in the
    /// guest sets B0-B3, BS...), with the fixed bits.
    pub fn set_dr6_from_cpu(&mut self, hw: u64) {
        self.dr6 = (hw & DR6_VOLATILE) | DR6_FIXED_1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_values() {
        let d = DebugRegs::default();
        assert_eq!((d.dr6, d.dr7), (0xffff_0ff0, 0x400));
        assert!(!d.breakpoints_enabled());
    }

    #[test]
    fn qualification() {
        // MOV RAX, DR6: register 6, from DR, GPR 0.
        assert_eq!(DrAccess::decode(0x16), DrAccess { dr: 6, read: true, gpr: 0 });
        // MOV DR0, R9.
        assert_eq!(DrAccess::decode(0x900), DrAccess { dr: 0, read: false, gpr: 9 });
    }

    #[test]
    fn dr6_dr7_fixed_and_reserved_bits() {
        let mut d = DebugRegs::default();
        d.write(7, 0, false).unwrap();
        assert_eq!(d.dr7, 0x400, "bit 10 reads as 1");
        d.write(7, 0xffff_ffff, false).unwrap();
        assert_eq!(d.dr7, 0xffff_2fff);
        assert!(d.breakpoints_enabled());
        d.write(6, 0, false).unwrap();
        assert_eq!(d.dr6, 0xffff_0ff0);
        d.write(6, 0x1_e80f, false).unwrap();
        assert_eq!(d.dr6, 0xffff_eff0 | 0xf, "RTM and BLD stay fixed without the features");
        assert_eq!(d.write(7, 1 << 32, false), Err(DrFault::Gp));
        assert_eq!(d.write(6, 1 << 40, false), Err(DrFault::Gp));
        d.write(2, u64::MAX, false).unwrap();
        assert_eq!(d.read(2, false), Ok(u64::MAX), "DR0-DR3 hold any address");
    }

    #[test]
    fn dr4_dr5() {
        let mut d = DebugRegs::default();
        d.write(5, 0x1, false).unwrap();
        assert_eq!(d.read(7, false), Ok(0x401), "DR5 is DR7 without CR4.DE");
        assert_eq!(d.read(4, false), Ok(d.dr6));
        assert_eq!(d.read(4, true), Err(DrFault::Ud));
        assert_eq!(d.write(5, 0, true), Err(DrFault::Ud));
    }

    #[test]
    fn dr6_from_the_cpu() {
        let mut d = DebugRegs::default();
        d.set_dr6_from_cpu(0xffff_4ff1);
        assert_eq!(d.dr6, 0xffff_4ff1, "BS and B0 as a #DB left them");
    }
}
