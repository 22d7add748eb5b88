// SPDX-License-Identifier: GPL-2.0
//! The VMX instructions as an L1 guest sees them (nested VMX): the SDM's operation
//! pseudocode (vol. 3C 32.3, "VMX Instruction Reference") as pure functions over L1's VMX
//! state, down to every #UD, #GP(0), VMfailInvalid and VMfailValid(n). The module fetches
//! operands (through L1's paging) and carries out the memory effects; the decisions are made
//! here, where `cargo test` checks them case by case.
//!
//! KVM's arch/x86/kvm/vmx/nested.c (handle_vmxon, nested_vmx_check_permission,
//! handle_vmclear, handle_vmptrld, handle_vmread, handle_vmwrite, nested_vmx_run) is the
//! reference reading; Bochs' VMX model is the backstop in tests.

use super::bits::bitfield;
use super::field::{Field, Kind};

/// VM-instruction error numbers (SDM vol. 3C 32.4, table 32-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum VmError {
    /// VMCALL executed in VMX root operation.
    VmcallInRoot = 1,
    /// VMCLEAR with invalid physical address.
    VmclearInvalidAddress = 2,
    /// VMCLEAR with VMXON pointer.
    VmclearVmxonPointer = 3,
    /// VMLAUNCH with non-clear VMCS.
    VmlaunchNonClear = 4,
    /// VMRESUME with non-launched VMCS.
    VmresumeNonLaunched = 5,
    /// VMRESUME after VMXOFF (not used: nvmx clears launch states on VMXOFF).
    VmresumeAfterVmxoff = 6,
    /// VM entry with invalid control field(s).
    EntryInvalidControls = 7,
    /// VM entry with invalid host-state field(s).
    EntryInvalidHostState = 8,
    /// VMPTRLD with invalid physical address.
    VmptrldInvalidAddress = 9,
    /// VMPTRLD with VMXON pointer.
    VmptrldVmxonPointer = 10,
    /// VMPTRLD with incorrect VMCS revision identifier.
    VmptrldWrongRevision = 11,
    /// VMREAD/VMWRITE from/to unsupported VMCS component.
    UnsupportedComponent = 12,
    /// VMWRITE to read-only VMCS component.
    ReadOnlyComponent = 13,
    /// VMXON executed in VMX root operation.
    VmxonInRoot = 15,
    /// VM entry with events blocked by MOV SS.
    EntryMovSsBlocking = 26,
    /// Invalid operand to INVEPT/INVVPID.
    InvalidInveptInvvpidOperand = 28,
}

/// What an emulated VMX instruction does to L1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// #UD.
    Ud,
    /// #GP(0).
    Gp,
    /// VMsucceed: CF, PF, AF, ZF, SF, OF cleared.
    Succeed,
    /// VMfailInvalid: CF set (no current VMCS to hold an error number).
    FailInvalid,
    /// VMfailValid(n): ZF set, the number in the current VMCS's VM-instruction error field.
    FailValid(VmError),
}

/// RFLAGS after an outcome that completes the instruction (SDM 32.2, "Conventions").
pub fn rflags_after(rflags: u64, outcome: Outcome) -> u64 {
    const CF: u64 = 1 << 0;
    const PF: u64 = 1 << 2;
    const AF: u64 = 1 << 4;
    const ZF: u64 = 1 << 6;
    const SF: u64 = 1 << 7;
    const OF: u64 = 1 << 11;
    let cleared = rflags & !(CF | PF | AF | ZF | SF | OF);
    match outcome {
        Outcome::FailInvalid => cleared | CF,
        Outcome::FailValid(_) => cleared | ZF,
        _ => cleared,
    }
}

/// The L1 processor state the permission checks read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L1Cpu {
    /// CR0 as L1 sees it.
    pub cr0: u64,
    /// CR4 as L1 sees it.
    pub cr4: u64,
    /// RFLAGS.VM (virtual-8086 mode).
    pub v8086: bool,
    /// IA32_EFER.LMA.
    pub lma: bool,
    /// CS.L.
    pub cs_l: bool,
    /// Current privilege level.
    pub cpl: u8,
}

/// The VMX capabilities L1 is offered (what its IA32_VMX_* MSRs say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offered {
    /// VMCS revision identifier (IA32_VMX_BASIC[30:0]).
    pub revision: u32,
    /// Physical-address width for VMXON/VMCLEAR/VMPTRLD operands (CPUID.80000008H:EAX[7:0]).
    pub maxphyaddr: u8,
    /// CR0 bits that must be 1 / may be 1 in VMX operation.
    pub cr0_fixed0: u64,
    /// See `cr0_fixed0`.
    pub cr0_fixed1: u64,
    /// CR4 bits that must be 1 / may be 1 in VMX operation.
    pub cr4_fixed0: u64,
    /// See `cr4_fixed0`.
    pub cr4_fixed1: u64,
    /// IA32_FEATURE_CONTROL as L1 reads it (lock bit 0, VMX outside SMX bit 2).
    pub feature_control: u64,
    /// IA32_VMX_MISC[29]: VMWRITE may write VM-exit information fields.
    pub vmwrite_any_field: bool,
    /// The "VMCS shadowing" control may be 1 (IA32_VMX_PROCBASED_CTLS2[46]): VMPTRLD takes
    /// a shadow VMCS (revision bit 31 set).
    pub shadow_vmcs: bool,
    /// INVEPT types offered (bit 1 single-context, bit 2 all-context); 0: no INVEPT.
    pub invept_types: u8,
    /// INVVPID types offered (bit 0 individual address, 1 single, 2 all, 3 single keeping
    /// globals); 0: no INVVPID.
    pub invvpid_types: u8,
}

/// L1's VMX operation, as nvmx tracks it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L1Vmx {
    /// The VMXON pointer while L1 is in VMX operation.
    pub vmxon: Option<u64>,
    /// The current-VMCS pointer (None: FFFFFFFF_FFFFFFFFH).
    pub current: Option<u64>,
}

/// The launch state of a VMCS (SDM 25.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchState {
    /// After VMCLEAR.
    Clear,
    /// After a successful VMLAUNCH.
    Launched,
}

/// Where an instruction operand came from: VMXON, VMCLEAR, VMPTRLD and VMPTRST take only a
/// memory operand (a register one is #UD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// A register operand (ModRM.mod = 3).
    Register,
    /// The 64-bit value read from the memory operand.
    Memory(u64),
}

impl L1Vmx {
    fn fail(&self, e: VmError) -> Outcome {
        if self.current.is_some() { Outcome::FailValid(e) } else { Outcome::FailInvalid }
    }

    /// The checks every VMX instruction but VMXON makes first (SDM 32.3, each instruction's
    /// "Operation"): #UD outside VMX operation, in virtual-8086 mode or in compatibility
    /// mode; #GP(0) at CPL > 0. `None`: go on. (In VMX non-root operation — L2 — the
    /// instruction causes a VM exit to L1 instead; that decision is the exit reflection's.)
    pub fn permission(&self, cpu: &L1Cpu) -> Option<Outcome> {
        if self.vmxon.is_none() || cpu.v8086 || (cpu.lma && !cpu.cs_l) {
            return Some(Outcome::Ud);
        }
        if cpu.cpl > 0 {
            return Some(Outcome::Gp);
        }
        None
    }

    /// VMXON (SDM 32.3 "VMXON"). `region_revision` is the first 32 bits of the region at the
    /// operand's address (bits 30:0 must match the revision; bit 31 must be 0 as nvmx offers
    /// no shadow-VMCS VMXON regions), read by the caller only for a valid address.
    pub fn vmxon(&mut self, cpu: &L1Cpu, offered: &Offered, op: Operand, region_revision: impl FnOnce(u64) -> u32) -> Outcome {
        let Operand::Memory(addr) = op else { return Outcome::Ud };
        if self.vmxon.is_some() {
            if cpu.cpl > 0 {
                return Outcome::Gp;
            }
            return self.fail(VmError::VmxonInRoot);
        }
        if cpu.cr0 & 1 == 0 || cpu.cr4 & (1 << 13) == 0 || cpu.v8086 || (cpu.lma && !cpu.cs_l) {
            return Outcome::Ud;
        }
        if cpu.cpl > 0 {
            return Outcome::Gp;
        }
        let fixed_ok = |v: u64, f0: u64, f1: u64| v & f0 == f0 && v & !f1 == 0;
        if !fixed_ok(cpu.cr0, offered.cr0_fixed0, offered.cr0_fixed1)
            || !fixed_ok(cpu.cr4, offered.cr4_fixed0, offered.cr4_fixed1)
            || offered.feature_control & 0b101 != 0b101
        {
            return Outcome::Gp;
        }
        if !valid_address(addr, offered.maxphyaddr) || region_revision(addr) != offered.revision {
            return Outcome::FailInvalid;
        }
        *self = L1Vmx { vmxon: Some(addr), current: None };
        Outcome::Succeed
    }

    /// VMXOFF: leave VMX operation. The caller writes back and forgets the current VMCS.
    pub fn vmxoff(&mut self, cpu: &L1Cpu) -> Outcome {
        if let Some(o) = self.permission(cpu) {
            return o;
        }
        *self = L1Vmx::default();
        Outcome::Succeed
    }

    /// VMCLEAR: on success the caller writes the VMCS at `addr` back with launch state
    /// Clear; if it was current, there is no current VMCS any more.
    pub fn vmclear(&mut self, cpu: &L1Cpu, offered: &Offered, op: Operand) -> Outcome {
        if let Some(o) = self.permission(cpu) {
            return o;
        }
        let Operand::Memory(addr) = op else { return Outcome::Ud };
        if !valid_address(addr, offered.maxphyaddr) {
            return self.fail(VmError::VmclearInvalidAddress);
        }
        if Some(addr) == self.vmxon {
            return self.fail(VmError::VmclearVmxonPointer);
        }
        if self.current == Some(addr) {
            self.current = None;
        }
        Outcome::Succeed
    }

    /// VMPTRLD: `region_revision` reads the first 32 bits of the new VMCS.
    pub fn vmptrld(&mut self, cpu: &L1Cpu, offered: &Offered, op: Operand, region_revision: impl FnOnce(u64) -> u32) -> Outcome {
        if let Some(o) = self.permission(cpu) {
            return o;
        }
        let Operand::Memory(addr) = op else { return Outcome::Ud };
        if !valid_address(addr, offered.maxphyaddr) {
            return self.fail(VmError::VmptrldInvalidAddress);
        }
        if Some(addr) == self.vmxon {
            return self.fail(VmError::VmptrldVmxonPointer);
        }
        // Bits 30:0 are the revision; bit 31 set asks for a shadow VMCS, which needs VMCS
        // shadowing offered (SDM 31.3 "VMPTRLD": else the wrong revision too).
        let r = region_revision(addr);
        if r & 0x7fff_ffff != offered.revision || (r >> 31 != 0 && !offered.shadow_vmcs) {
            return self.fail(VmError::VmptrldWrongRevision);
        }
        self.current = Some(addr);
        Outcome::Succeed
    }

    /// VMPTRST: the value the caller stores (the current-VMCS pointer or all ones).
    pub fn vmptrst(&self, cpu: &L1Cpu, op: Operand) -> Result<u64, Outcome> {
        if let Some(o) = self.permission(cpu) {
            return Err(o);
        }
        if op == Operand::Register {
            return Err(Outcome::Ud);
        }
        Ok(self.current.unwrap_or(u64::MAX))
    }

    /// VMREAD of field encoding `encoding` (the register operand's value): `Ok(field)` to read,
    /// or the failure. `known` says whether nvmx's VMCS12 has the component.
    pub fn vmread(&self, cpu: &L1Cpu, encoding: u64, known: impl Fn(Field) -> bool) -> Result<Field, Outcome> {
        if let Some(o) = self.permission(cpu) {
            return Err(o);
        }
        if self.current.is_none() {
            return Err(Outcome::FailInvalid);
        }
        match Field::from_operand(encoding) {
            Some(f) if known(f) => Ok(f),
            _ => Err(self.fail(VmError::UnsupportedComponent)),
        }
    }

    /// VMWRITE: `Ok(field)` to write, or the failure (read-only exit-information fields
    /// unless IA32_VMX_MISC[29] is offered).
    pub fn vmwrite(&self, cpu: &L1Cpu, offered: &Offered, encoding: u64, known: impl Fn(Field) -> bool) -> Result<Field, Outcome> {
        if let Some(o) = self.permission(cpu) {
            return Err(o);
        }
        if self.current.is_none() {
            return Err(Outcome::FailInvalid);
        }
        let f = match Field::from_operand(encoding) {
            Some(f) if known(f) => f,
            _ => return Err(self.fail(VmError::UnsupportedComponent)),
        };
        if f.kind() == Kind::ExitInfo && !offered.vmwrite_any_field {
            return Err(self.fail(VmError::ReadOnlyComponent));
        }
        Ok(f)
    }

    /// VMLAUNCH (`launch`) / VMRESUME up to the entry checks: `None` means go on with the
    /// checks of controls (VMfail 7), host state (VMfail 8) and guest state (an
    /// entry-failure exit), in rust/core's entry checks. `shadow`: the current VMCS is a
    /// shadow VMCS, which cannot be entered (VMfailInvalid, SDM 31.3).
    pub fn vmlaunch_vmresume(&self, cpu: &L1Cpu, launch: bool, state: LaunchState, mov_ss_blocking: bool, shadow: bool) -> Option<Outcome> {
        if let Some(o) = self.permission(cpu) {
            return Some(o);
        }
        if self.current.is_none() || shadow {
            return Some(Outcome::FailInvalid);
        }
        if mov_ss_blocking {
            return Some(self.fail(VmError::EntryMovSsBlocking));
        }
        match (launch, state) {
            (true, LaunchState::Launched) => Some(self.fail(VmError::VmlaunchNonClear)),
            (false, LaunchState::Clear) => Some(self.fail(VmError::VmresumeNonLaunched)),
            _ => None,
        }
    }

    /// INVEPT: #UD if L1 is offered no INVEPT; VMfail(28) for a type it is not offered.
    pub fn invept(&self, cpu: &L1Cpu, offered: &Offered, kind: u64) -> Outcome {
        if offered.invept_types == 0 {
            return Outcome::Ud;
        }
        if let Some(o) = self.permission(cpu) {
            return o;
        }
        if kind > 7 || offered.invept_types & (1 << kind) == 0 {
            return self.fail(VmError::InvalidInveptInvvpidOperand);
        }
        Outcome::Succeed
    }

    /// INVVPID: as INVEPT, and VPID 0 is invalid except for all-context (type 2);
    /// individual-address needs a canonical address (SDM 32.3 "INVVPID").
    pub fn invvpid(&self, cpu: &L1Cpu, offered: &Offered, kind: u64, vpid: u16, linear: u64) -> Outcome {
        if offered.invvpid_types == 0 {
            return Outcome::Ud;
        }
        if let Some(o) = self.permission(cpu) {
            return o;
        }
        if kind > 7 || offered.invvpid_types & (1 << kind) == 0 {
            return self.fail(VmError::InvalidInveptInvvpidOperand);
        }
        if kind != 2 && vpid == 0 {
            return self.fail(VmError::InvalidInveptInvvpidOperand);
        }
        if kind == 0 && ((linear as i64) << 16 >> 16) as u64 != linear {
            return self.fail(VmError::InvalidInveptInvvpidOperand);
        }
        Outcome::Succeed
    }
}

/// A VMXON/VMCLEAR/VMPTRLD operand: 4 KiB aligned and within the physical-address width.
pub const fn valid_address(addr: u64, maxphyaddr: u8) -> bool {
    addr & 0xfff == 0 && (maxphyaddr >= 64 || addr >> maxphyaddr == 0)
}


bitfield! {
    /// The VM-exit instruction-information field of a VMX instruction's exit (SDM 28.2.5,
    /// tables 28-13 to 28-15): where its operands are.
    pub struct InsnInfo(u32) {
        /// Bits 1:0: scaling of the index register.
        scaling, with_scaling: 1:0 as u32;
        /// Bits 6:3 (VMREAD/VMWRITE): the register of a register r/m operand.
        reg1, with_reg1: 6:3 as u8;
        /// Bits 9:7: address size (0: 16-bit, 1: 32-bit, 2: 64-bit).
        address_size, with_address_size: 9:7 as u32;
        /// Bit 10 (VMREAD/VMWRITE only): the r/m operand is a register.
        is_register, with_register: 10;
        /// Bits 17:15: segment register (0 ES, 1 CS, 2 SS, 3 DS, 4 FS, 5 GS).
        segment, with_segment: 17:15 as u8;
        /// Bits 21:18: the index register, if bit 22 is clear.
        index_reg, with_index_reg: 21:18 as u8;
        /// Bit 22: no index register.
        index_invalid, with_index_invalid: 22;
        /// Bits 26:23: the base register, if bit 27 is clear.
        base_reg, with_base_reg: 26:23 as u8;
        /// Bit 27: no base register.
        base_invalid, with_base_invalid: 27;
        /// Bits 31:28: the second register operand (VMREAD/VMWRITE: the field encoding;
        /// INVEPT/INVVPID: the type).
        reg2, with_reg2: 31:28 as u8;
    }
}

/// A memory or register operand of a VMX instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// General-purpose register (x86 number).
    Reg(u8),
    /// Linear address (segment base applied, truncated to the address size).
    Mem(u64),
}

impl InsnInfo {
    /// Bits 21:18 with bit 22 (invalid): the index register.
    pub const fn index(self) -> Option<u8> {
        if self.index_invalid() { None } else { Some(self.index_reg()) }
    }
    /// Bits 26:23 with bit 27 (invalid): the base register.
    pub const fn base(self) -> Option<u8> {
        if self.base_invalid() { None } else { Some(self.base_reg()) }
    }

    /// The r/m operand: a register, or the linear address of a memory operand from base,
    /// scaled index and the displacement (the exit qualification, SDM 28.2.1), wrapped to
    /// the address size, plus the segment base `seg_base` (the caller passes 0 for ES, CS,
    /// SS and DS in 64-bit mode, where their bases are ignored); outside 64-bit mode the
    /// linear address is 32 bits. Segment-limit checks are not made (an L1 running VMX
    /// instructions outside 64-bit mode is not supported by nvmx's offer of IA-32e hosts).
    pub fn operand(self, displacement: u64, gpr: impl Fn(u8) -> u64, seg_base: u64, bits64: bool) -> Place {
        if self.is_register() {
            return Place::Reg(self.reg1());
        }
        let mut ea = displacement;
        if let Some(b) = self.base() {
            ea = ea.wrapping_add(gpr(b));
        }
        if let Some(i) = self.index() {
            ea = ea.wrapping_add(gpr(i) << self.scaling());
        }
        ea &= match self.address_size() {
            0 => 0xffff,
            1 => 0xffff_ffff,
            _ => u64::MAX,
        };
        let linear = seg_base.wrapping_add(ea);
        Place::Mem(if bits64 { linear } else { linear & 0xffff_ffff })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REV: u32 = 0x11e5_7ed0;

    fn offered() -> Offered {
        Offered {
            revision: REV,
            maxphyaddr: 39,
            cr0_fixed0: 0x8000_0021,
            cr0_fixed1: 0xffff_ffff,
            cr4_fixed0: 0x2000,
            cr4_fixed1: 0x3f_ffff,
            feature_control: 0b101,
            vmwrite_any_field: false,
            shadow_vmcs: false,
            invept_types: 0b110,
            invvpid_types: 0b1111,
        }
    }

    fn cpu64() -> L1Cpu {
        L1Cpu { cr0: 0x8000_0031, cr4: 0x2020, v8086: false, lma: true, cs_l: true, cpl: 0 }
    }

    fn on() -> L1Vmx {
        L1Vmx { vmxon: Some(0x1000), current: None }
    }

    fn with_vmcs() -> L1Vmx {
        L1Vmx { vmxon: Some(0x1000), current: Some(0x2000) }
    }

    #[test]
    fn vmxon_ud_gp_and_fail_cases() {
        let o = offered();
        let rev = |_| REV;
        let mut s = L1Vmx::default();
        assert_eq!(s.vmxon(&cpu64(), &o, Operand::Register, rev), Outcome::Ud, "register operand");
        let no_vmxe = L1Cpu { cr4: 0x20, ..cpu64() };
        assert_eq!(s.vmxon(&no_vmxe, &o, Operand::Memory(0x1000), rev), Outcome::Ud, "CR4.VMXE = 0");
        let real = L1Cpu { cr0: 0x10, ..cpu64() };
        assert_eq!(s.vmxon(&real, &o, Operand::Memory(0x1000), rev), Outcome::Ud, "CR0.PE = 0");
        let v86 = L1Cpu { v8086: true, ..cpu64() };
        assert_eq!(s.vmxon(&v86, &o, Operand::Memory(0x1000), rev), Outcome::Ud);
        let compat = L1Cpu { cs_l: false, ..cpu64() };
        assert_eq!(s.vmxon(&compat, &o, Operand::Memory(0x1000), rev), Outcome::Ud, "compatibility mode");
        let user = L1Cpu { cpl: 3, ..cpu64() };
        assert_eq!(s.vmxon(&user, &o, Operand::Memory(0x1000), rev), Outcome::Gp, "CPL 3");
        let no_ne = L1Cpu { cr0: 0x8000_0011, ..cpu64() };
        assert_eq!(s.vmxon(&no_ne, &o, Operand::Memory(0x1000), rev), Outcome::Gp, "CR0.NE fixed to 1");
        let unlocked = Offered { feature_control: 0b100, ..o };
        assert_eq!(s.vmxon(&cpu64(), &unlocked, Operand::Memory(0x1000), rev), Outcome::Gp, "FEATURE_CONTROL");
        assert_eq!(s.vmxon(&cpu64(), &o, Operand::Memory(0x1008), rev), Outcome::FailInvalid, "unaligned");
        assert_eq!(s.vmxon(&cpu64(), &o, Operand::Memory(1 << 39), rev), Outcome::FailInvalid, "beyond MAXPHYADDR");
        assert_eq!(s.vmxon(&cpu64(), &o, Operand::Memory(0x1000), |_| REV + 1), Outcome::FailInvalid, "revision");
        assert_eq!(s.vmxon(&cpu64(), &o, Operand::Memory(0x1000), |_| REV | 1 << 31), Outcome::FailInvalid, "shadow bit");
        assert_eq!(s, L1Vmx::default(), "nothing changed on failure");
        assert_eq!(s.vmxon(&cpu64(), &o, Operand::Memory(0x1000), rev), Outcome::Succeed);
        assert_eq!(s, on());
        // Again, in VMX root operation: VMfail(15), valid or invalid by the current VMCS.
        assert_eq!(s.vmxon(&cpu64(), &o, Operand::Memory(0x1000), rev), Outcome::FailInvalid);
        let mut s2 = with_vmcs();
        assert_eq!(s2.vmxon(&cpu64(), &o, Operand::Memory(0x1000), rev), Outcome::FailValid(VmError::VmxonInRoot));
        assert_eq!(s2.vmxon(&user, &o, Operand::Memory(0x1000), rev), Outcome::Gp, "CPL first in root");
    }

    #[test]
    fn permission_checks_of_the_others() {
        let o = offered();
        let off = L1Vmx::default();
        assert_eq!(off.permission(&cpu64()), Some(Outcome::Ud), "outside VMX operation");
        assert_eq!(on().permission(&L1Cpu { cpl: 1, ..cpu64() }), Some(Outcome::Gp));
        assert_eq!(on().permission(&L1Cpu { cs_l: false, ..cpu64() }), Some(Outcome::Ud));
        assert_eq!(on().permission(&cpu64()), None);
        let mut s = L1Vmx::default();
        assert_eq!(s.vmxoff(&cpu64()), Outcome::Ud);
        assert_eq!(s.vmclear(&cpu64(), &o, Operand::Memory(0x2000)), Outcome::Ud);
        assert_eq!(s.vmptrst(&cpu64(), Operand::Memory(0)), Err(Outcome::Ud));
    }

    #[test]
    fn vmclear_and_vmptrld_errors() {
        let o = offered();
        let rev = |_| REV;
        let mut s = on();
        assert_eq!(s.vmclear(&cpu64(), &o, Operand::Register), Outcome::Ud);
        assert_eq!(s.vmclear(&cpu64(), &o, Operand::Memory(0x2001)), Outcome::FailInvalid, "no current: invalid");
        let mut v = with_vmcs();
        assert_eq!(v.vmclear(&cpu64(), &o, Operand::Memory(0x2001)), Outcome::FailValid(VmError::VmclearInvalidAddress));
        assert_eq!(v.vmclear(&cpu64(), &o, Operand::Memory(1 << 40)), Outcome::FailValid(VmError::VmclearInvalidAddress));
        assert_eq!(v.vmclear(&cpu64(), &o, Operand::Memory(0x1000)), Outcome::FailValid(VmError::VmclearVmxonPointer));
        assert_eq!(v.vmptrld(&cpu64(), &o, Operand::Memory(0x3004), rev), Outcome::FailValid(VmError::VmptrldInvalidAddress));
        assert_eq!(v.vmptrld(&cpu64(), &o, Operand::Memory(0x1000), rev), Outcome::FailValid(VmError::VmptrldVmxonPointer));
        assert_eq!(v.vmptrld(&cpu64(), &o, Operand::Memory(0x3000), |_| 7), Outcome::FailValid(VmError::VmptrldWrongRevision));
        // A shadow VMCS (bit 31): only with VMCS shadowing offered.
        assert_eq!(v.vmptrld(&cpu64(), &o, Operand::Memory(0x3000), |_| REV | 1 << 31), Outcome::FailValid(VmError::VmptrldWrongRevision));
        let mut w = v;
        assert_eq!(w.vmptrld(&cpu64(), &Offered { shadow_vmcs: true, ..o }, Operand::Memory(0x3000), |_| REV | 1 << 31), Outcome::Succeed);
        assert_eq!(w.vmptrld(&cpu64(), &Offered { shadow_vmcs: true, ..o }, Operand::Memory(0x3000), |_| (REV + 1) | 1 << 31), Outcome::FailValid(VmError::VmptrldWrongRevision));
        assert_eq!(v.current, Some(0x2000), "failures keep the current VMCS");
        assert_eq!(v.vmptrld(&cpu64(), &o, Operand::Memory(0x3000), rev), Outcome::Succeed);
        assert_eq!(v.vmptrst(&cpu64(), Operand::Memory(0)), Ok(0x3000));
        assert_eq!(v.vmclear(&cpu64(), &o, Operand::Memory(0x2000)), Outcome::Succeed, "a non-current VMCS");
        assert_eq!(v.current, Some(0x3000));
        assert_eq!(v.vmclear(&cpu64(), &o, Operand::Memory(0x3000)), Outcome::Succeed);
        assert_eq!(v.current, None, "clearing the current VMCS invalidates the pointer");
        assert_eq!(v.vmptrst(&cpu64(), Operand::Memory(0)), Ok(u64::MAX));
        assert_eq!(s.vmptrld(&cpu64(), &o, Operand::Memory(0x1000), rev), Outcome::FailInvalid);
    }

    #[test]
    fn vmread_vmwrite() {
        use super::super::field_table as f;
        let o = offered();
        let known = |fl: Field| fl.is_known();
        assert_eq!(on().vmread(&cpu64(), f::GUEST_RIP.encoding() as u64, known), Err(Outcome::FailInvalid));
        let v = with_vmcs();
        assert_eq!(v.vmread(&cpu64(), f::GUEST_RIP.encoding() as u64, known), Ok(f::GUEST_RIP.field()));
        assert_eq!(v.vmread(&cpu64(), 0x7fff_fffe, known), Err(Outcome::FailValid(VmError::UnsupportedComponent)));
        assert_eq!(v.vmread(&cpu64(), 1 << 40 | f::GUEST_RIP.encoding() as u64, known), Err(Outcome::FailValid(VmError::UnsupportedComponent)), "bits 63:32 set");
        assert_eq!(v.vmwrite(&cpu64(), &o, f::GUEST_RIP.encoding() as u64, known), Ok(f::GUEST_RIP.field()));
        assert_eq!(v.vmwrite(&cpu64(), &o, f::VM_EXIT_REASON.encoding() as u64, known), Err(Outcome::FailValid(VmError::ReadOnlyComponent)));
        let any = Offered { vmwrite_any_field: true, ..o };
        assert_eq!(v.vmwrite(&cpu64(), &any, f::VM_EXIT_REASON.encoding() as u64, known), Ok(f::VM_EXIT_REASON.field()));
        assert_eq!(v.vmwrite(&L1Cpu { cpl: 3, ..cpu64() }, &o, f::GUEST_RIP.encoding() as u64, known), Err(Outcome::Gp));
    }

    #[test]
    fn vmlaunch_vmresume_states() {
        let c = cpu64();
        assert_eq!(on().vmlaunch_vmresume(&c, true, LaunchState::Clear, false, false), Some(Outcome::FailInvalid));
        let v = with_vmcs();
        assert_eq!(v.vmlaunch_vmresume(&c, true, LaunchState::Clear, true, false), Some(Outcome::FailValid(VmError::EntryMovSsBlocking)));
        assert_eq!(v.vmlaunch_vmresume(&c, true, LaunchState::Launched, false, false), Some(Outcome::FailValid(VmError::VmlaunchNonClear)));
        assert_eq!(v.vmlaunch_vmresume(&c, false, LaunchState::Clear, false, false), Some(Outcome::FailValid(VmError::VmresumeNonLaunched)));
        assert_eq!(v.vmlaunch_vmresume(&c, true, LaunchState::Clear, false, false), None);
        assert_eq!(v.vmlaunch_vmresume(&c, false, LaunchState::Launched, false, false), None);
        assert_eq!(v.vmlaunch_vmresume(&c, true, LaunchState::Clear, false, true), Some(Outcome::FailInvalid), "a shadow VMCS");
    }

    #[test]
    fn invept_invvpid_operands() {
        let o = offered();
        let v = with_vmcs();
        let c = cpu64();
        assert_eq!(v.invept(&c, &Offered { invept_types: 0, ..o }, 1), Outcome::Ud, "not offered");
        assert_eq!(v.invept(&c, &o, 1), Outcome::Succeed);
        assert_eq!(v.invept(&c, &o, 2), Outcome::Succeed);
        assert_eq!(v.invept(&c, &o, 0), Outcome::FailValid(VmError::InvalidInveptInvvpidOperand));
        assert_eq!(v.invept(&c, &o, 3), Outcome::FailValid(VmError::InvalidInveptInvvpidOperand));
        assert_eq!(on().invept(&c, &o, 3), Outcome::FailInvalid);
        assert_eq!(v.invvpid(&c, &o, 1, 0, 0), Outcome::FailValid(VmError::InvalidInveptInvvpidOperand), "VPID 0");
        assert_eq!(v.invvpid(&c, &o, 2, 0, 0), Outcome::Succeed, "all-context ignores the VPID");
        assert_eq!(v.invvpid(&c, &o, 0, 1, 1 << 47), Outcome::FailValid(VmError::InvalidInveptInvvpidOperand), "non-canonical");
        assert_eq!(v.invvpid(&c, &o, 0, 1, 0xffff_8000_0000_0000), Outcome::Succeed);
        assert_eq!(v.invvpid(&c, &Offered { invvpid_types: 0b100, ..o }, 1, 1, 0), Outcome::FailValid(VmError::InvalidInveptInvvpidOperand));
    }

    #[test]
    fn rflags_conventions() {
        let all = 0x8d5 | 0x202; // CF PF AF ZF SF OF + IF + bit 1
        assert_eq!(rflags_after(all, Outcome::Succeed), 0x202);
        assert_eq!(rflags_after(all, Outcome::FailInvalid), 0x203);
        assert_eq!(rflags_after(all, Outcome::FailValid(VmError::VmxonInRoot)), 0x242);
    }

    #[test]
    fn every_vmfail_number_matches_the_sdm_table() {
        let table = [
            (VmError::VmcallInRoot, 1), (VmError::VmclearInvalidAddress, 2), (VmError::VmclearVmxonPointer, 3),
            (VmError::VmlaunchNonClear, 4), (VmError::VmresumeNonLaunched, 5), (VmError::VmresumeAfterVmxoff, 6),
            (VmError::EntryInvalidControls, 7), (VmError::EntryInvalidHostState, 8), (VmError::VmptrldInvalidAddress, 9),
            (VmError::VmptrldVmxonPointer, 10), (VmError::VmptrldWrongRevision, 11), (VmError::UnsupportedComponent, 12),
            (VmError::ReadOnlyComponent, 13), (VmError::VmxonInRoot, 15), (VmError::EntryMovSsBlocking, 26),
            (VmError::InvalidInveptInvvpidOperand, 28),
        ];
        for (e, n) in table {
            assert_eq!(e as u32, n, "{e:?}");
        }
    }

    #[test]
    fn instruction_information_operands() {
        let gpr = |r: u8| [0x1000u64, 0, 0, 0, 0x7000, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][r as usize];
        // vmptrld 0x10(%rsp): base RSP (4), no index, 64-bit address, segment SS.
        let info = InsnInfo((2 << 7) | (2 << 15) | (1 << 22) | (4 << 23));
        assert_eq!(info.operand(0x10, gpr, 0, true), Place::Mem(0x7010));
        // vmread %rax, %rbx-style register form: bit 10, reg1 = 3 (RBX), reg2 = 0 (RAX).
        let info = InsnInfo((1 << 10) | (3 << 3));
        assert_eq!(info.operand(0, gpr, 0, true), Place::Reg(3));
        assert_eq!(info.reg2(), 0);
        // (%rax,%rbp,8) with a negative displacement, in 32-bit address size with FS base.
        let info = InsnInfo(3 | (1 << 7) | (4 << 15) | (5 << 18));
        assert_eq!(info.index(), Some(5));
        assert_eq!(info.base(), Some(0));
        assert_eq!(info.operand((-8i64) as u64, gpr, 0x10_0000_0000, true), Place::Mem(0x10_0000_0000 + 0x1000 + 0x100 - 8));
        // Outside 64-bit mode the linear address wraps at 4 GiB.
        assert_eq!(InsnInfo((1 << 7) | (1 << 22) | (1 << 27)).operand(0xffff_fff0, gpr, 0x20, false), Place::Mem(0x10));
    }
}
