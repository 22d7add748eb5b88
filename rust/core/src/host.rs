// SPDX-License-Identifier: GPL-2.0
//! Can this host run nvmx? The load-time checks as a pure function of CPUID and MSRs.
//!
//! The order matters and is the SDM's: an MSR is read only once CPUID says it exists
//! (reading an absent IA32_VMX_* MSR raises #GP). The module supplies a [`HostProbe`] backed
//! by the real instructions; tests supply tables.

use core::fmt;

use super::basic::{MemoryType, VmxBasic};
use super::bits::test;
use super::controls::{cr4, primary, secondary, ControlMsr, EptVpidCap, FixedBits, VmxMisc};
use super::msr;

/// errno values the refusals map to (include/uapi/asm-generic/errno-base.h).
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// I/O error.
    pub const EIO: i32 = 5;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// File exists.
    pub const EEXIST: i32 = 17;
    /// No such device.
    pub const ENODEV: i32 = 19;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
}

/// Access to the host CPU's identification and MSRs.
pub trait HostProbe {
    /// CPUID with EAX = `leaf`, ECX = `subleaf`: returns EAX, EBX, ECX, EDX.
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4];
    /// RDMSR; `None` when the read faults.
    fn rdmsr(&mut self, index: u32) -> Option<u64>;
}

/// Why nvmx cannot run on this host. Each has its own message and errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// CPUID vendor is not GenuineIntel.
    NotIntel([u8; 12]),
    /// CPUID.1:ECX.VMX\[bit 5\] is 0.
    NoVmx,
    /// IA32_FEATURE_CONTROL could not be read.
    FeatureControlUnreadable,
    /// IA32_FEATURE_CONTROL is locked with VMX outside SMX disabled.
    DisabledByFirmware,
    /// IA32_FEATURE_CONTROL is not locked: VMXON would #GP (SDM 24.7).
    FeatureControlUnlocked,
    /// A VMX capability MSR faulted although CPUID reports VMX.
    MsrUnreadable(u32),
    /// IA32_VMX_BASIC reports a VMCS memory type other than write-back.
    VmcsMemoryType(MemoryType),
    /// IA32_VMX_BASIC reports a region larger than a page or 32-bit-only addresses.
    VmcsLayout(VmxBasic),
    /// A capability nvmx requires is absent.
    Missing(&'static str),
    /// The host has Intel PT, but PT cannot run in VMX operation (IA32_VMX_MISC bit 14 = 0):
    /// the kernel stops host tracing around VMX operation only for KVM (its
    /// intel_pt_handle_vmx is not exported), so nvmx cannot do what KVM does.
    IntelPtOutsideVmx,
    /// The kernel runs with FRED (CR4.FRED): NMIs that exit a guest must be re-raised
    /// through FRED's entry for hypervisors, which the kernel exports to KVM only; `int $2`
    /// is an invalid event under FRED.
    Fred,
}

impl Refusal {
    /// The errno `init` returns for this refusal (positive).
    pub const fn errno(&self) -> i32 {
        match self {
            Refusal::DisabledByFirmware | Refusal::FeatureControlUnlocked => errno::EPERM,
            _ => errno::ENODEV,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotIntel(v) => {
                let vendor = core::str::from_utf8(v).unwrap_or("?");
                write!(f, "not an Intel CPU (vendor \"{vendor}\"); nvmx needs Intel VT-x")
            }
            Refusal::NoVmx => write!(f, "no VMX in CPUID (CPUID.1:ECX bit 5 is 0)"),
            Refusal::FeatureControlUnreadable => write!(f, "IA32_FEATURE_CONTROL cannot be read"),
            Refusal::DisabledByFirmware => write!(
                f,
                "VT-x is disabled by firmware (IA32_FEATURE_CONTROL locked without VMX); \
                 enable VT-x in firmware"
            ),
            Refusal::FeatureControlUnlocked => write!(
                f,
                "IA32_FEATURE_CONTROL is not locked, so VMXON would fault; \
                 enable VT-x in firmware"
            ),
            Refusal::MsrUnreadable(m) => write!(f, "VMX capability MSR {m:#x} cannot be read"),
            Refusal::VmcsMemoryType(t) => {
                write!(f, "VMCS memory type {t:?} is not write-back (IA32_VMX_BASIC[53:50])")
            }
            Refusal::VmcsLayout(b) => write!(
                f,
                "unsupported VMCS layout: region {} bytes, 32-bit addresses only: {}",
                b.region_size(),
                b.addresses_32bit_only()
            ),
            Refusal::Missing(what) => write!(f, "missing VMX capability: {what}"),
            Refusal::IntelPtOutsideVmx => write!(
                f,
                "Intel PT cannot run in VMX operation on this CPU (IA32_VMX_MISC bit 14 is 0) and \
                 only KVM can stop host tracing around it"
            ),
            Refusal::Fred => write!(
                f,
                "the kernel uses FRED, and NMIs that exit a guest can be handed back to a FRED \
                 kernel only by KVM: boot with fred=off to use nvmx"
            ),
        }
    }
}

/// The host's VMX capabilities, read once at load, in the form the rest of nvmx uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HostCaps {
    /// IA32_VMX_BASIC.
    pub basic: VmxBasic,
    /// Pin-based controls (TRUE MSR when the CPU has it).
    pub pin: ControlMsr,
    /// Primary processor-based controls (TRUE MSR when the CPU has it).
    pub primary: ControlMsr,
    /// Secondary processor-based controls.
    pub secondary: ControlMsr,
    /// VM-exit controls (TRUE MSR when the CPU has it).
    pub exit: ControlMsr,
    /// VM-entry controls (TRUE MSR when the CPU has it).
    pub entry: ControlMsr,
    /// IA32_VMX_MISC.
    pub misc: VmxMisc,
    /// IA32_VMX_EPT_VPID_CAP.
    pub ept_vpid: EptVpidCap,
    /// CR0 fixed bits.
    pub cr0_fixed: FixedBits,
    /// CR4 fixed bits.
    pub cr4_fixed: FixedBits,
}

impl HostCaps {
    /// VPID can be enabled (secondary control and INVVPID).
    pub const fn vpid(&self) -> bool {
        self.secondary.allows(secondary::ENABLE_VPID) && self.ept_vpid.invvpid()
    }
    /// VMCS shadowing can be enabled.
    pub const fn shadow_vmcs(&self) -> bool {
        self.secondary.allows(secondary::SHADOW_VMCS)
    }
    /// The VMX-preemption timer can be activated.
    pub const fn preemption_timer(&self) -> bool {
        self.pin.allows(super::controls::pin::PREEMPTION_TIMER)
    }
}

/// A one-line summary for dmesg: revision id and the optional features.
impl fmt::Display for HostCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yn = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "VMCS revision {:#x} ({} bytes, WB), EPT 4-level{}{}{}, VPID {}, shadow VMCS {}, \
             preemption timer {}",
            self.basic.revision_id(),
            self.basic.region_size(),
            if self.ept_vpid.pages_2m() { " 2M" } else { "" },
            if self.ept_vpid.pages_1g() { " 1G" } else { "" },
            if self.ept_vpid.accessed_dirty() { " A/D" } else { "" },
            yn(self.vpid()),
            yn(self.shadow_vmcs()),
            yn(self.preemption_timer()),
        )?;
        if self.preemption_timer() {
            write!(f, " (TSC/2^{})", self.misc.preemption_timer_rate())?;
        }
        Ok(())
    }
}

/// CPUID.1:ECX bit for VMX.
const CPUID1_ECX_VMX: u32 = 5;
/// CPUID.(EAX=7,ECX=0):EBX bit for Intel Processor Trace.
const CPUID7_EBX_INTEL_PT: u32 = 25;
/// CR4.FRED (bit 32): flexible return and event delivery.
pub const CR4_FRED: u64 = 1 << 32;

/// Whether the running kernel, seen through its CR4 at load, is one nvmx can work under.
pub const fn kernel_supported(cr4_now: u64) -> Result<(), Refusal> {
    if cr4_now & CR4_FRED != 0 {
        return Err(Refusal::Fred);
    }
    Ok(())
}

fn read(p: &mut dyn HostProbe, index: u32) -> Result<u64, Refusal> {
    p.rdmsr(index).ok_or(Refusal::MsrUnreadable(index))
}

/// Decide whether nvmx can run on this host, reading what it needs in a safe order.
pub fn probe(p: &mut dyn HostProbe) -> Result<HostCaps, Refusal> {
    let [_, ebx, ecx, edx] = p.cpuid(0, 0);
    let mut vendor = [0u8; 12];
    vendor[0..4].copy_from_slice(&ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&edx.to_le_bytes());
    vendor[8..12].copy_from_slice(&ecx.to_le_bytes());
    if &vendor != b"GenuineIntel" {
        return Err(Refusal::NotIntel(vendor));
    }
    if !test(p.cpuid(1, 0)[2] as u64, CPUID1_ECX_VMX) {
        return Err(Refusal::NoVmx);
    }

    let fc = p.rdmsr(msr::IA32_FEATURE_CONTROL).ok_or(Refusal::FeatureControlUnreadable)?;
    if !test(fc, msr::feature_control::LOCKED) {
        return Err(Refusal::FeatureControlUnlocked);
    }
    if !test(fc, msr::feature_control::VMX_OUTSIDE_SMX) {
        return Err(Refusal::DisabledByFirmware);
    }

    let basic = VmxBasic(read(p, msr::IA32_VMX_BASIC)?);
    if basic.memory_type() != MemoryType::WriteBack {
        return Err(Refusal::VmcsMemoryType(basic.memory_type()));
    }
    if basic.region_size() > 4096 || basic.addresses_32bit_only() {
        return Err(Refusal::VmcsLayout(basic));
    }
    // SDM A.3.1: with bit 55 set the TRUE MSRs report the controls that may really be 0.
    let (pin_msr, proc_msr, exit_msr, entry_msr) = if basic.true_controls() {
        (
            msr::IA32_VMX_TRUE_PINBASED_CTLS,
            msr::IA32_VMX_TRUE_PROCBASED_CTLS,
            msr::IA32_VMX_TRUE_EXIT_CTLS,
            msr::IA32_VMX_TRUE_ENTRY_CTLS,
        )
    } else {
        (
            msr::IA32_VMX_PINBASED_CTLS,
            msr::IA32_VMX_PROCBASED_CTLS,
            msr::IA32_VMX_EXIT_CTLS,
            msr::IA32_VMX_ENTRY_CTLS,
        )
    };
    let mut caps = HostCaps {
        basic,
        pin: ControlMsr::from_msr(read(p, pin_msr)?),
        primary: ControlMsr::from_msr(read(p, proc_msr)?),
        exit: ControlMsr::from_msr(read(p, exit_msr)?),
        entry: ControlMsr::from_msr(read(p, entry_msr)?),
        misc: VmxMisc(read(p, msr::IA32_VMX_MISC)?),
        cr0_fixed: FixedBits {
            fixed0: read(p, msr::IA32_VMX_CR0_FIXED0)?,
            fixed1: read(p, msr::IA32_VMX_CR0_FIXED1)?,
        },
        cr4_fixed: FixedBits {
            fixed0: read(p, msr::IA32_VMX_CR4_FIXED0)?,
            fixed1: read(p, msr::IA32_VMX_CR4_FIXED1)?,
        },
        ..HostCaps::default()
    };

    // Intel PT (CPUID.(EAX=7,ECX=0):EBX[25]) that VMX operation does not support.
    if p.cpuid(0, 0)[0] >= 7 && test(p.cpuid(7, 0)[1] as u64, CPUID7_EBX_INTEL_PT) && !caps.misc.pt_in_vmx() {
        return Err(Refusal::IntelPtOutsideVmx);
    }
    // SDM A.3.3: IA32_VMX_PROCBASED_CTLS2 exists only if secondary controls can be activated.
    if !caps.primary.allows(primary::SECONDARY_CONTROLS) {
        return Err(Refusal::Missing("secondary processor-based controls"));
    }
    caps.secondary = ControlMsr::from_msr(read(p, msr::IA32_VMX_PROCBASED_CTLS2)?);
    if !caps.secondary.allows(secondary::ENABLE_EPT) {
        return Err(Refusal::Missing("EPT"));
    }
    if !caps.secondary.allows(secondary::UNRESTRICTED_GUEST) {
        return Err(Refusal::Missing("unrestricted guest"));
    }
    // SDM A.10: IA32_VMX_EPT_VPID_CAP exists if EPT or VPID can be enabled.
    caps.ept_vpid = EptVpidCap(read(p, msr::IA32_VMX_EPT_VPID_CAP)?);
    if !caps.ept_vpid.walk_length_4() {
        return Err(Refusal::Missing("EPT 4-level page walks"));
    }
    if !caps.ept_vpid.memtype_wb() {
        return Err(Refusal::Missing("EPT write-back paging structures"));
    }
    if !caps.ept_vpid.invept() || !caps.ept_vpid.invept_all_context() {
        return Err(Refusal::Missing("all-context INVEPT"));
    }
    Ok(caps)
}

/// The VM-execution, exit and entry controls nvmx runs its guests with (L1 guests: the
/// VMCS01), computed once from the host's capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GuestControls {
    /// Pin-based controls.
    pub pin: u32,
    /// Primary processor-based controls.
    pub primary: u32,
    /// Secondary processor-based controls.
    pub secondary: u32,
    /// VM-exit controls.
    pub exit: u32,
    /// VM-entry controls (without IA-32e mode guest, which follows the guest's EFER.LMA).
    pub entry: u32,
}

impl GuestControls {
    /// What nvmx needs to keep the host safe and the guest correct:
    /// - external interrupts and NMIs exit, so the host keeps its CPU (interrupts are not
    ///   acknowledged on exit: they stay pending and the host takes them once nvmx has left
    ///   VMX operation);
    /// - HLT, all I/O, all MSR accesses (no bitmaps), MWAIT/MONITOR, RDPMC, MOV DR and
    ///   WBINVD exit, and so do MOV to/from CR8: without a TPR shadow a guest's CR8 would be
    ///   the host's local-APIC TPR, and a guest raising it would mask the host's interrupts;
    /// - EPT and unrestricted guest; VPID is not used yet (every entry is preceded by
    ///   INVEPT, see rust/run.rs);
    /// - EFER and PAT are switched by the CPU on entry and exit;
    /// - the guest's TSC is the host's plus a per-vCPU offset (writable IA32_TSC).
    pub fn for_host(caps: &HostCaps) -> Result<Self, Refusal> {
        use super::controls::{entry, exit, pin};
        let missing = |_| Refusal::Missing("controls nvmx requires for its guests");
        Ok(GuestControls {
            // The preemption timer, where the CPU has it, bounds how long a guest can keep
            // the CPU even if an interrupt fails to cause an exit (see rust/run.rs). Virtual
            // NMIs, where the CPU has them, let nvmx deliver an NMI right after the guest's
            // IRET unblocks NMIs (NMI-window exiting needs them, SDM 26.2.1.1).
            pin: caps
                .pin
                .adjust(pin::EXT_INTR_EXITING | pin::NMI_EXITING, pin::PREEMPTION_TIMER | pin::VIRTUAL_NMIS)
                .map_err(missing)?,
            primary: caps
                .primary
                .adjust(
                    primary::HLT_EXITING
                        | primary::UNCOND_IO_EXITING
                        | primary::SECONDARY_CONTROLS
                        | primary::MWAIT_EXITING
                        | primary::MONITOR_EXITING
                        | primary::RDPMC_EXITING
                        | primary::MOV_DR_EXITING
                        | primary::CR8_LOAD_EXITING
                        | primary::CR8_STORE_EXITING
                        | primary::USE_TSC_OFFSETTING,
                    0,
                )
                .map_err(missing)?,
            secondary: caps
                .secondary
                .adjust(
                    secondary::ENABLE_EPT | secondary::UNRESTRICTED_GUEST | secondary::WBINVD_EXITING,
                    0,
                )
                .map_err(missing)?,
            exit: caps
                .exit
                .adjust(
                    exit::HOST_ADDR_SPACE_SIZE
                        | exit::SAVE_DEBUG_CONTROLS
                        | exit::SAVE_IA32_EFER
                        | exit::LOAD_IA32_EFER
                        | exit::SAVE_IA32_PAT
                        | exit::LOAD_IA32_PAT,
                    0,
                )
                .map_err(missing)?,
            // The guest's DR7 and IA32_DEBUGCTL are VMCS state, never the host's.
            entry: caps.entry.adjust(entry::LOAD_DEBUG_CONTROLS | entry::LOAD_IA32_EFER | entry::LOAD_IA32_PAT, 0).map_err(missing)?
                & !entry::IA32E_MODE_GUEST,
        })
    }
}

/// Why one CPU cannot enter VMX operation right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuRefusal {
    /// CR4.VMXE is already set: another hypervisor (kvm_intel) owns VMX on this CPU.
    OtherHypervisor,
    /// CR0 has bits VMX operation does not allow (the violating bits).
    Cr0(u64),
    /// CR4 with VMXE set still has bits VMX operation does not allow (the violating bits).
    Cr4(u64),
}

impl CpuRefusal {
    /// The errno for this refusal (positive).
    pub const fn errno(&self) -> i32 {
        match self {
            CpuRefusal::OtherHypervisor => errno::EBUSY,
            CpuRefusal::Cr0(_) | CpuRefusal::Cr4(_) => errno::EIO,
        }
    }
}

impl fmt::Display for CpuRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuRefusal::OtherHypervisor => write!(
                f,
                "a hypervisor is already running: another hypervisor owns VMX (CR4.VMXE is set); \
                 free it with `rmmod kvm_intel` or boot with kvm.enable_virt_at_load=0"
            ),
            CpuRefusal::Cr0(bits) => write!(f, "CR0 bits {bits:#x} are not allowed in VMX operation"),
            CpuRefusal::Cr4(bits) => write!(f, "CR4 bits {bits:#x} are not allowed in VMX operation"),
        }
    }
}

/// Decide, from this CPU's CR0 and CR4, whether it may enter VMX operation, and with which
/// CR4 (the current one plus VMXE). Never takes over a VMXE another hypervisor has set.
pub fn cpu_entry_cr4(caps: &HostCaps, cr0_now: u64, cr4_now: u64) -> Result<u64, CpuRefusal> {
    if cr4_now & cr4::VMXE != 0 {
        return Err(CpuRefusal::OtherHypervisor);
    }
    let bad0 = caps.cr0_fixed.violations(cr0_now);
    if bad0 != 0 {
        return Err(CpuRefusal::Cr0(bad0));
    }
    let cr4_vmx = cr4_now | cr4::VMXE;
    let bad4 = caps.cr4_fixed.violations(cr4_vmx);
    if bad4 != 0 {
        return Err(CpuRefusal::Cr4(bad4));
    }
    Ok(cr4_vmx)
}

/// A Skylake-like host's VMX MSRs (values read off a Core i7-7800X), for tests here and in
/// other modules.
#[cfg(test)]
pub(crate) fn skylake_msrs() -> std::collections::HashMap<u32, u64> {
    std::collections::HashMap::from([
        (msr::IA32_FEATURE_CONTROL, 0x5),
        (msr::IA32_VMX_BASIC, 0x00da_0400_0000_0004),
        (msr::IA32_VMX_TRUE_PINBASED_CTLS, 0x0000_007f_0000_0016),
        (msr::IA32_VMX_TRUE_PROCBASED_CTLS, 0xfff9_fffe_0401_e172),
        (msr::IA32_VMX_TRUE_EXIT_CTLS, 0x01ff_ffff_0003_6dfb),
        (msr::IA32_VMX_TRUE_ENTRY_CTLS, 0x0003_ffff_0000_11fb),
        (msr::IA32_VMX_MISC, 0x0000_0000_7004_c1e7),
        (msr::IA32_VMX_CR0_FIXED0, 0x8000_0021),
        (msr::IA32_VMX_CR0_FIXED1, 0xffff_ffff),
        (msr::IA32_VMX_CR4_FIXED0, 0x2000),
        (msr::IA32_VMX_CR4_FIXED1, 0x3727ff),
        (msr::IA32_VMX_PROCBASED_CTLS2, 0x0053_7fff_0000_0000),
        (msr::IA32_VMX_EPT_VPID_CAP, 0x0000_0f01_0673_4141),
    ])
}

/// The capabilities `probe` finds on that Skylake-like host (an Intel CPU with VMX), for
/// tests of what is derived from them.
#[cfg(test)]
pub(crate) fn skylake_caps() -> HostCaps {
    struct Skylake(std::collections::HashMap<u32, u64>);
    impl HostProbe for Skylake {
        fn cpuid(&mut self, leaf: u32, _: u32) -> [u32; 4] {
            match leaf {
                0 => [0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
                1 => [0x50654, 0, 1 << 5, 0],
                _ => [0; 4],
            }
        }
        fn rdmsr(&mut self, i: u32) -> Option<u64> {
            self.0.get(&i).copied()
        }
    }
    probe(&mut Skylake(skylake_msrs())).unwrap()
}

#[cfg(test)]
mod tests {
    use super::super::controls::cr0;
    use super::*;
    use std::collections::HashMap;
    use std::format;
    use std::string::ToString;

    /// A table-driven host: CPUID leaves and MSRs; reading an absent MSR "faults" and is
    /// recorded so tests can prove the probe never reads what CPUID says is absent.
    struct FakeHost {
        cpuid: HashMap<u32, [u32; 4]>,
        msrs: HashMap<u32, u64>,
        faulted: std::vec::Vec<u32>,
    }

    const INTEL: [u32; 4] = [0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]; // "GenuineIntel"
    const AMD: [u32; 4] = [0x10, 0x6874_7541, 0x444d_4163, 0x6974_6e65]; // "AuthenticAMD"

    impl FakeHost {
        /// A Skylake-like host with everything nvmx needs.
        fn skylake() -> Self {
            let cpuid = HashMap::from([(0, INTEL), (1, [0x50654, 0, 1 << 5, 0])]);
            let msrs = skylake_msrs();
            FakeHost { cpuid, msrs, faulted: std::vec::Vec::new() }
        }
        fn without(mut self, index: u32) -> Self {
            self.msrs.remove(&index);
            self
        }
        fn with(mut self, index: u32, value: u64) -> Self {
            self.msrs.insert(index, value);
            self
        }
    }

    impl HostProbe for FakeHost {
        fn cpuid(&mut self, leaf: u32, _subleaf: u32) -> [u32; 4] {
            self.cpuid.get(&leaf).copied().unwrap_or([0; 4])
        }
        fn rdmsr(&mut self, index: u32) -> Option<u64> {
            let v = self.msrs.get(&index).copied();
            if v.is_none() {
                self.faulted.push(index);
            }
            v
        }
    }

    fn secondary_without(bit: u32) -> u64 {
        0x0053_7fff_0000_0000 & !((bit as u64) << 32)
    }

    #[test]
    fn skylake_is_accepted_with_summary() {
        let mut h = FakeHost::skylake();
        let caps = probe(&mut h).expect("accepted");
        assert!(h.faulted.is_empty());
        assert!(caps.vpid() && caps.shadow_vmcs() && caps.preemption_timer());
        assert_eq!(caps.basic.revision_id(), 4);
        assert_eq!(
            caps.to_string(),
            "VMCS revision 0x4 (1024 bytes, WB), EPT 4-level 2M 1G A/D, VPID yes, \
             shadow VMCS yes, preemption timer yes (TSC/2^7)"
        );
    }

    #[test]
    fn intel_pt_that_cannot_run_in_vmx_operation_is_refused() {
        let misc = skylake_msrs()[&msr::IA32_VMX_MISC];
        let mut h = FakeHost::skylake();
        h.cpuid.insert(7, [0, 1 << 25, 0, 0]);
        // Skylake's PT can run in VMX operation.
        assert!(misc & (1 << 14) != 0);
        assert!(probe(&mut h).is_ok());
        let mut h = h.with(msr::IA32_VMX_MISC, misc & !(1 << 14));
        let r = probe(&mut h).unwrap_err();
        assert_eq!(r, Refusal::IntelPtOutsideVmx);
        assert_eq!(r.errno(), errno::ENODEV);
        assert!(r.to_string().contains("IA32_VMX_MISC bit 14"));
        // Without PT the bit does not matter.
        h.cpuid.insert(7, [0; 4]);
        assert!(probe(&mut h).is_ok());
    }

    #[test]
    fn fred_kernels_are_refused() {
        assert_eq!(kernel_supported(0x3706f0), Ok(()));
        let r = kernel_supported(0x3706f0 | CR4_FRED).unwrap_err();
        assert_eq!(r, Refusal::Fred);
        assert_eq!(r.errno(), errno::ENODEV);
        assert!(r.to_string().contains("fred=off"));
    }

    #[test]
    fn uses_true_controls_only_when_basic_says_so() {
        let basic_no_true = 0x00da_0400_0000_0004 & !(1u64 << 55);
        let mut h = FakeHost::skylake()
            .with(msr::IA32_VMX_BASIC, basic_no_true)
            .with(msr::IA32_VMX_PINBASED_CTLS, 0x0000_007f_0000_0016)
            .with(msr::IA32_VMX_PROCBASED_CTLS, 0xfff9_fffe_0401_e172)
            .with(msr::IA32_VMX_EXIT_CTLS, 0x01ff_ffff_0003_6dfb)
            .with(msr::IA32_VMX_ENTRY_CTLS, 0x0003_ffff_0000_11fb)
            .without(msr::IA32_VMX_TRUE_PINBASED_CTLS)
            .without(msr::IA32_VMX_TRUE_PROCBASED_CTLS)
            .without(msr::IA32_VMX_TRUE_EXIT_CTLS)
            .without(msr::IA32_VMX_TRUE_ENTRY_CTLS);
        assert!(probe(&mut h).is_ok());
        assert!(h.faulted.is_empty(), "read {:x?}", h.faulted);
    }

    #[test]
    fn amd_is_not_intel_and_no_msr_is_read() {
        let mut h = FakeHost::skylake();
        h.cpuid.insert(0, AMD);
        let r = probe(&mut h).unwrap_err();
        assert_eq!(r, Refusal::NotIntel(*b"AuthenticAMD"));
        assert_eq!(r.errno(), errno::ENODEV);
        assert!(r.to_string().contains("not an Intel CPU (vendor \"AuthenticAMD\")"));
        assert!(h.faulted.is_empty());
    }

    #[test]
    fn no_vmx_in_cpuid() {
        let mut h = FakeHost::skylake();
        h.cpuid.insert(1, [0x50654, 0, 0, 0]);
        let r = probe(&mut h).unwrap_err();
        assert_eq!(r, Refusal::NoVmx);
        assert_eq!(r.errno(), errno::ENODEV);
        assert!(r.to_string().contains("no VMX in CPUID"));
    }

    #[test]
    fn firmware_locked_vmx_off_is_eperm() {
        for fc in [0x1u64, 0x3] {
            let mut h = FakeHost::skylake().with(msr::IA32_FEATURE_CONTROL, fc);
            let r = probe(&mut h).unwrap_err();
            assert_eq!(r, Refusal::DisabledByFirmware, "fc={fc:#x}");
            assert_eq!(r.errno(), errno::EPERM);
            assert!(r.to_string().contains("enable VT-x in firmware"));
        }
    }

    #[test]
    fn feature_control_unlocked_is_eperm() {
        let mut h = FakeHost::skylake().with(msr::IA32_FEATURE_CONTROL, 0x4);
        let r = probe(&mut h).unwrap_err();
        assert_eq!(r, Refusal::FeatureControlUnlocked);
        assert_eq!(r.errno(), errno::EPERM);
    }

    #[test]
    fn feature_control_fault() {
        let mut h = FakeHost::skylake().without(msr::IA32_FEATURE_CONTROL);
        assert_eq!(probe(&mut h).unwrap_err(), Refusal::FeatureControlUnreadable);
    }

    #[test]
    fn vmcs_memory_type_must_be_wb() {
        let uc = 0x00da_0400_0000_0004 & !(0xfu64 << 50);
        let mut h = FakeHost::skylake().with(msr::IA32_VMX_BASIC, uc);
        let r = probe(&mut h).unwrap_err();
        assert_eq!(r, Refusal::VmcsMemoryType(MemoryType::Uncacheable));
        assert_eq!(r.errno(), errno::ENODEV);
        assert!(r.to_string().contains("not write-back"));
    }

    #[test]
    fn vmcs_layout() {
        let big = (0x00da_0400_0000_0004 & !(0x1fffu64 << 32)) | (0x1001 << 32);
        let mut h = FakeHost::skylake().with(msr::IA32_VMX_BASIC, big);
        assert!(matches!(probe(&mut h), Err(Refusal::VmcsLayout(_))));
        let narrow = 0x00da_0400_0000_0004 | (1 << 48);
        let mut h = FakeHost::skylake().with(msr::IA32_VMX_BASIC, narrow);
        assert!(matches!(probe(&mut h), Err(Refusal::VmcsLayout(_))));
    }

    #[test]
    fn missing_capabilities_are_named() {
        let cases: &[(u32, u64, &str)] = &[
            (msr::IA32_VMX_TRUE_PROCBASED_CTLS, 0x7ff9_fffe_0401_e172, "secondary processor-based controls"),
            (msr::IA32_VMX_PROCBASED_CTLS2, secondary_without(secondary::ENABLE_EPT), "EPT"),
            (
                msr::IA32_VMX_PROCBASED_CTLS2,
                secondary_without(secondary::UNRESTRICTED_GUEST),
                "unrestricted guest",
            ),
            (msr::IA32_VMX_EPT_VPID_CAP, 0x0000_0f01_0673_4101, "EPT 4-level page walks"),
            (msr::IA32_VMX_EPT_VPID_CAP, 0x0000_0f01_0673_0141, "EPT write-back paging structures"),
            (msr::IA32_VMX_EPT_VPID_CAP, 0x0000_0f01_0663_4141, "all-context INVEPT"),
            (msr::IA32_VMX_EPT_VPID_CAP, 0x0000_0f01_0273_4141, "all-context INVEPT"),
        ];
        for &(index, value, what) in cases {
            let mut h = FakeHost::skylake().with(index, value);
            let r = probe(&mut h).unwrap_err();
            assert_eq!(r, Refusal::Missing(what), "{index:#x}={value:#x}");
            assert_eq!(r.errno(), errno::ENODEV);
            assert_eq!(r.to_string(), format!("missing VMX capability: {what}"));
            assert!(h.faulted.is_empty());
        }
    }

    #[test]
    fn secondary_msr_not_read_without_secondary_controls() {
        let mut h = FakeHost::skylake()
            .with(msr::IA32_VMX_TRUE_PROCBASED_CTLS, 0x7ff9_fffe_0401_e172)
            .without(msr::IA32_VMX_PROCBASED_CTLS2);
        assert!(probe(&mut h).is_err());
        assert!(h.faulted.is_empty(), "read {:x?}", h.faulted);
    }

    #[test]
    fn optional_features_reported_absent() {
        let sec = secondary_without(secondary::SHADOW_VMCS | secondary::ENABLE_VPID);
        let mut h = FakeHost::skylake()
            .with(msr::IA32_VMX_PROCBASED_CTLS2, sec)
            .with(msr::IA32_VMX_TRUE_PINBASED_CTLS, 0x0000_003f_0000_0016);
        let caps = probe(&mut h).unwrap();
        assert!(!caps.vpid() && !caps.shadow_vmcs() && !caps.preemption_timer());
        assert!(caps.to_string().ends_with("VPID no, shadow VMCS no, preemption timer no"));
    }

    #[test]
    fn cpu_entry_refuses_when_vmxe_already_set() {
        let caps = probe(&mut FakeHost::skylake()).unwrap();
        let cr0 = 0x8005_0033;
        let cr4 = 0x0037_06f0;
        assert_eq!(cpu_entry_cr4(&caps, cr0, cr4), Ok(cr4 | cr4::VMXE));
        let r = cpu_entry_cr4(&caps, cr0, cr4 | cr4::VMXE).unwrap_err();
        assert_eq!(r, CpuRefusal::OtherHypervisor);
        assert_eq!(r.errno(), errno::EBUSY);
        assert!(r.to_string().contains("a hypervisor is already running"));
        assert!(r.to_string().contains("rmmod kvm_intel"));
    }

    #[test]
    fn guest_controls_on_skylake() {
        use super::super::controls::{entry, exit, pin};
        let caps = probe(&mut FakeHost::skylake()).unwrap();
        let c = GuestControls::for_host(&caps).unwrap();
        assert!(caps.pin.is_valid(c.pin) && caps.primary.is_valid(c.primary));
        assert!(caps.secondary.is_valid(c.secondary) && caps.exit.is_valid(c.exit));
        assert!(caps.entry.is_valid(c.entry));
        assert_eq!(c.pin & (pin::EXT_INTR_EXITING | pin::NMI_EXITING), 0x9);
        assert_ne!(c.pin & pin::PREEMPTION_TIMER, 0, "offered by this CPU");
        assert_ne!(c.pin & pin::VIRTUAL_NMIS, 0, "offered by this CPU");
        let mut no_vnmi = caps;
        no_vnmi.pin.may_be_one &= !pin::VIRTUAL_NMIS;
        assert_eq!(GuestControls::for_host(&no_vnmi).unwrap().pin & pin::VIRTUAL_NMIS, 0);
        let mut no_timer = caps;
        no_timer.pin.may_be_one &= !pin::PREEMPTION_TIMER;
        assert_eq!(GuestControls::for_host(&no_timer).unwrap().pin & pin::PREEMPTION_TIMER, 0);
        assert_ne!(c.primary & primary::UNCOND_IO_EXITING, 0);
        assert_ne!(c.primary & primary::USE_TSC_OFFSETTING, 0);
        assert_eq!(c.primary & primary::USE_MSR_BITMAPS, 0, "every MSR access exits");
        let cr8 = primary::CR8_LOAD_EXITING | primary::CR8_STORE_EXITING;
        assert_eq!(c.primary & cr8, cr8, "the guest never reaches the host's TPR");
        assert_eq!(c.primary & primary::TPR_SHADOW, 0);
        assert_ne!(c.secondary & secondary::UNRESTRICTED_GUEST, 0);
        assert_eq!(c.exit & exit::ACK_INTR_ON_EXIT, 0, "the host takes its own interrupts");
        assert_eq!(c.entry & entry::IA32E_MODE_GUEST, 0);
        // A CPU that cannot exit on NMIs cannot run nvmx's guests.
        let mut no_nmi = caps;
        no_nmi.pin.may_be_one &= !pin::NMI_EXITING;
        assert!(GuestControls::for_host(&no_nmi).is_err());
    }

    #[test]
    fn cpu_entry_checks_fixed_bits() {
        let caps = probe(&mut FakeHost::skylake()).unwrap();
        assert_eq!(cpu_entry_cr4(&caps, 0x0005_0033, 0x6f0), Err(CpuRefusal::Cr0(cr0::PG)));
        assert_eq!(cpu_entry_cr4(&caps, 0x8005_0033, 0x40_06f0), Err(CpuRefusal::Cr4(0x40_0000)));
        assert_eq!(CpuRefusal::Cr0(1).errno(), errno::EIO);
    }
}
