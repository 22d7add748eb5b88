// SPDX-License-Identifier: GPL-2.0
//! From facts to verdicts: one line per requirement of nested virtualization with nvmx, each
//! with what was found, whether it is fine, and how to fix it. Pure: `cargo test` covers
//! every verdict.

use nvmx_core::field::Field;

/// VMX features from IA32_VMX_* (through nvmx) or /proc/cpuinfo's "vmx flags".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmxFeatures {
    pub ept: bool,
    pub unrestricted_guest: bool,
    pub vpid: bool,
    pub shadow_vmcs: bool,
    pub preemption_timer: bool,
}

/// A nested VM entry that failed (struct nvmx_entry_failure).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryFailure {
    /// 1 controls (VMfail 7), 2 host state (VMfail 8), 3 guest state (exit 0x80000021).
    pub kind: u32,
    pub field: u32,
    pub value: u64,
    pub qualification: u64,
    pub section: String,
    pub rule: String,
}

/// One open vCPU (struct nvmx_vcpu_status).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vcpu {
    pub vm_id: u32,
    pub vcpu_id: u32,
    pub pid: u32,
    pub vmx_exposed: bool,
    pub vmxon: bool,
    pub guest_mode: bool,
    pub failure: Option<EntryFailure>,
}

/// What nvmx's status ioctl says (nvmx loaded and /dev/nvmx usable).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nvmx {
    pub vmcs_revision: u32,
    pub online_cpus: u32,
    pub vmx_cpus: u32,
    pub nested: bool,
    pub vmx_busy: bool,
    pub vcpus: Vec<Vcpu>,
    /// Of the vCPUs closed since load: exits while L2 ran, and those reflected to L1.
    pub closed_l2_exits: u64,
    pub closed_l2_exits_reflected: u64,
}

/// Everything the tool found out about the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub vendor: String,
    pub model: String,
    /// CPUID.1:ECX.VMX.
    pub cpuid_vmx: bool,
    /// CPUID.1:ECX[31]: this host is itself a guest.
    pub under_hypervisor: bool,
    /// IA32_FEATURE_CONTROL, where it could be read.
    pub feature_control: Option<u64>,
    pub features: Option<VmxFeatures>,
    /// The nvmx module is loaded (/sys/module/nvmx).
    pub nvmx_loaded: bool,
    /// nvmx's status, if /dev/nvmx answered.
    pub nvmx: Option<Nvmx>,
    /// kvm_intel is loaded (it holds VMX on every CPU).
    pub kvm_intel_loaded: bool,
    /// The kernel runs with FRED ("fred" in /proc/cpuinfo's flags): nvmx refuses to load.
    pub fred: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Nested virtualization is not usable until this is fixed.
    Fail,
    /// Usable, but worth knowing (slower, or a guest's failed entry).
    Warn,
    /// Could not be found out here.
    Unknown,
    /// For information.
    Info,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Fail => "FAIL",
            Status::Warn => "warn",
            Status::Unknown => "unknown",
            Status::Info => "info",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub check: &'static str,
    pub status: Status,
    pub value: String,
    pub hint: String,
}

/// The report: the lines, and whether nested virtualization with nvmx is usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub lines: Vec<Line>,
    pub usable: bool,
}

const FC_LOCKED: u64 = 1 << 0;
const FC_VMX_OUTSIDE_SMX: u64 = 1 << 2;

fn line(check: &'static str, status: Status, value: impl Into<String>, hint: impl Into<String>) -> Line {
    Line { check, status, value: value.into(), hint: hint.into() }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The explanation of a failed nested entry, as one sentence.
pub fn explain(f: &EntryFailure) -> String {
    let what = match f.kind {
        1 => "VMLAUNCH/VMRESUME failed with VMfailValid(7), invalid control field",
        2 => "VMLAUNCH/VMRESUME failed with VMfailValid(8), invalid host-state field",
        _ => "VM entry failed on guest state (exit reason 0x80000021)",
    };
    let name = Field(f.field).name().unwrap_or("unknown field");
    let qual = if f.kind == 3 { format!(", qualification {}", f.qualification) } else { String::new() };
    format!(
        "{what}: SDM {}: {name} (0x{:x}) = 0x{:x}, expected {}{qual}",
        f.section, f.field, f.value, f.rule
    )
}

/// Judge the facts.
pub fn judge(f: &Facts) -> Report {
    let mut lines = Vec::new();
    let intel = f.vendor == "GenuineIntel";
    lines.push(line(
        "cpu",
        if intel { Status::Ok } else { Status::Fail },
        format!("{} {}", f.vendor, f.model).trim().to_string(),
        if intel { "" } else { "nvmx needs an Intel CPU with VT-x (on AMD, KVM's nested SVM is the way)" },
    ));
    lines.push(line(
        "vmx in cpuid",
        if f.cpuid_vmx { Status::Ok } else { Status::Fail },
        format!("{}{}", yes(f.cpuid_vmx), if f.under_hypervisor { " (this host is a guest of a hypervisor)" } else { "" }),
        if f.cpuid_vmx {
            ""
        } else if f.under_hypervisor {
            "expose VT-x to this VM in its hypervisor (Hyper-V: Set-VMProcessor -ExposeVirtualizationExtensions $true; VMware: vhv.enable = TRUE; KVM: nested=1 and a CPU model with vmx)"
        } else {
            "enable Intel VT-x in the firmware (BIOS/UEFI) settings"
        },
    ));
    lines.push(match f.feature_control {
        None => line("IA32_FEATURE_CONTROL", Status::Unknown, "not readable", "load nvmx (or the msr module, as root) to read it"),
        Some(fc) if fc & FC_LOCKED != 0 && fc & FC_VMX_OUTSIDE_SMX != 0 => {
            line("IA32_FEATURE_CONTROL", Status::Ok, format!("0x{fc:x}: locked, VMX outside SMX enabled"), "")
        }
        Some(fc) if fc & FC_LOCKED != 0 => line(
            "IA32_FEATURE_CONTROL",
            Status::Fail,
            format!("0x{fc:x}: locked with VMX disabled"),
            "the firmware disabled VT-x: enable it in the BIOS/UEFI settings",
        ),
        Some(fc) => line(
            "IA32_FEATURE_CONTROL",
            Status::Fail,
            format!("0x{fc:x}: not locked"),
            "the firmware left the MSR unlocked, so VMXON would fault: update or configure the firmware",
        ),
    });
    match f.features {
        None => lines.push(line("vmx features", Status::Unknown, "unknown", "needs VMX in CPUID and nvmx loaded (or /proc/cpuinfo's vmx flags)")),
        Some(x) => {
            let need = |check, ok: bool, hint| line(check, if ok { Status::Ok } else { Status::Fail }, yes(ok), if ok { "" } else { hint });
            let nice = |check, ok: bool, hint| line(check, if ok { Status::Ok } else { Status::Warn }, yes(ok), if ok { "" } else { hint });
            lines.push(need("ept", x.ept, "nvmx needs EPT (a CPU from 2008 on, or a hypervisor that exposes it)"));
            lines.push(need("unrestricted guest", x.unrestricted_guest, "nvmx needs unrestricted guest (Westmere or later)"));
            lines.push(nice("vpid", x.vpid, "without VPID every VM entry and exit flushes the TLB (slower)"));
            lines.push(nice("shadow vmcs", x.shadow_vmcs, "L1's VMREAD/VMWRITE exit anyway in nvmx; informational"));
            lines.push(nice("preemption timer", x.preemption_timer, "without it a guest that never exits is preempted only by interrupts"));
        }
    }
    lines.push(line(
        "kernel without FRED",
        if f.fred { Status::Fail } else { Status::Ok },
        if f.fred { "no: the kernel uses FRED" } else { "yes" },
        if f.fred { "nvmx cannot hand guest-exiting NMIs back to a FRED kernel (only KVM can): boot with fred=off" } else { "" },
    ));
    lines.push(line(
        "nvmx loaded",
        match (&f.nvmx, f.nvmx_loaded) {
            (Some(_), _) => Status::Ok,
            _ => Status::Fail,
        },
        match (&f.nvmx, f.nvmx_loaded) {
            (Some(n), _) => format!("yes, VMCS revision 0x{:x}, VMX verified on {} of {} CPUs", n.vmcs_revision, n.vmx_cpus, n.online_cpus),
            (None, true) => "loaded, but /dev/nvmx does not answer".to_string(),
            (None, false) => "no".to_string(),
        },
        match (&f.nvmx, f.nvmx_loaded) {
            (Some(_), _) => "",
            (None, true) => "check the permissions of /dev/nvmx (run as root)",
            (None, false) => "load it: insmod nvmx.ko (dmesg says why if it refuses)",
        },
    ));
    let busy = f.kvm_intel_loaded || f.nvmx.as_ref().is_some_and(|n| n.vmx_busy);
    lines.push(line(
        "another hypervisor owns VMX",
        if busy { Status::Fail } else { Status::Ok },
        if f.kvm_intel_loaded { "yes: kvm_intel is loaded" } else if busy { "yes: CR4.VMXE is set outside nvmx" } else { "no" },
        if busy { "one hypervisor at a time: rmmod kvm_intel kvm (or stop the other hypervisor), then load nvmx" } else { "" },
    ));
    if let Some(n) = &f.nvmx {
        lines.push(line(
            "nested parameter",
            if n.nested { Status::Ok } else { Status::Fail },
            if n.nested { "nested=1" } else { "nested=0" },
            if n.nested { "" } else { "reload nvmx with nested=1 (the default)" },
        ));
        if n.closed_l2_exits != 0 {
            let handled = n.closed_l2_exits.saturating_sub(n.closed_l2_exits_reflected);
            lines.push(line(
                "L2 exits",
                Status::Info,
                format!(
                    "{} by closed vCPUs since load: {} reflected to L1, {} handled by nvmx",
                    n.closed_l2_exits, n.closed_l2_exits_reflected, handled
                ),
                "",
            ));
        }
        for v in &n.vcpus {
            let state = format!(
                "VM {} (pid {}) vCPU {}: VT-x {}{}",
                v.vm_id,
                v.pid,
                v.vcpu_id,
                if v.vmx_exposed { "exposed" } else { "not exposed" },
                if v.guest_mode { ", L1 in VMX operation, running L2" } else if v.vmxon { ", L1 in VMX operation" } else { "" }
            );
            let hint = if v.vmx_exposed { "" } else { "the VMM hides CPUID.1:ECX.VMX from this VM: set it in KVM_SET_CPUID2 to expose VT-x" };
            lines.push(line("vcpu", Status::Info, state, hint));
            if let Some(fail) = &v.failure {
                lines.push(line(
                    "last failed nested entry",
                    Status::Warn,
                    format!("VM {} vCPU {}: {}", v.vm_id, v.vcpu_id, explain(fail)),
                    "L1's VMCS breaks the SDM rule named: fix the hypervisor running in the guest",
                ));
            }
        }
    }
    let usable = !lines.iter().any(|l| l.status == Status::Fail) && f.nvmx.is_some();
    Report { lines, usable }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usable_host() -> Facts {
        Facts {
            vendor: "GenuineIntel".into(),
            model: "Intel(R) Core(TM) i7-7800X CPU @ 3.50GHz".into(),
            cpuid_vmx: true,
            under_hypervisor: false,
            feature_control: Some(5),
            features: Some(VmxFeatures { ept: true, unrestricted_guest: true, vpid: true, shadow_vmcs: true, preemption_timer: true }),
            nvmx_loaded: true,
            nvmx: Some(Nvmx { vmcs_revision: 0x2b, online_cpus: 2, vmx_cpus: 2, nested: true, vmx_busy: false, vcpus: vec![], closed_l2_exits: 0, closed_l2_exits_reflected: 0 }),
            kvm_intel_loaded: false,
            fred: false,
        }
    }

    #[test]
    fn fred_kernels_are_not_usable() {
        let r = judge(&Facts { fred: true, ..usable_host() });
        assert_eq!(status_of(&r, "kernel without FRED"), Status::Fail);
        assert!(!r.usable);
        assert_eq!(status_of(&judge(&usable_host()), "kernel without FRED"), Status::Ok);
    }

    fn status_of(r: &Report, check: &str) -> Status {
        r.lines.iter().find(|l| l.check == check).map(|l| l.status).unwrap()
    }

    #[test]
    fn where_closed_vcpus_l2_exits_went() {
        let mut f = usable_host();
        if let Some(n) = f.nvmx.as_mut() {
            n.closed_l2_exits = 1000;
            n.closed_l2_exits_reflected = 600;
        }
        let r = judge(&f);
        let l = r.lines.iter().find(|l| l.check == "L2 exits").unwrap();
        assert_eq!(l.status, Status::Info);
        assert_eq!(l.value, "1000 by closed vCPUs since load: 600 reflected to L1, 400 handled by nvmx");
        assert!(r.usable);
        assert!(judge(&usable_host()).lines.iter().all(|l| l.check != "L2 exits"), "none before any L2 ran");
    }

    #[test]
    fn a_ready_host_is_usable() {
        let r = judge(&usable_host());
        assert!(r.usable);
        assert!(r.lines.iter().all(|l| l.status == Status::Ok), "{r:#?}");
    }

    #[test]
    fn amd_is_not() {
        let f = Facts { vendor: "AuthenticAMD".into(), cpuid_vmx: false, feature_control: None, features: None, nvmx_loaded: false, nvmx: None, ..usable_host() };
        let r = judge(&f);
        assert!(!r.usable);
        assert_eq!(status_of(&r, "cpu"), Status::Fail);
        assert!(r.lines[0].hint.contains("Intel"));
    }

    #[test]
    fn no_vmx_in_cpuid_says_where_to_turn_it_on() {
        let f = Facts { cpuid_vmx: false, nvmx: None, nvmx_loaded: false, ..usable_host() };
        let r = judge(&f);
        assert!(!r.usable);
        assert!(r.lines[1].hint.contains("firmware"));
        let f = Facts { under_hypervisor: true, ..f };
        assert!(judge(&f).lines[1].hint.contains("ExposeVirtualizationExtensions"));
    }

    #[test]
    fn feature_control_rules() {
        for (fc, status) in [(5, Status::Ok), (1, Status::Fail), (4, Status::Fail), (0, Status::Fail)] {
            let r = judge(&Facts { feature_control: Some(fc), ..usable_host() });
            assert_eq!(status_of(&r, "IA32_FEATURE_CONTROL"), status, "{fc:#x}");
            assert_eq!(r.usable, status == Status::Ok);
        }
        let r = judge(&Facts { feature_control: None, ..usable_host() });
        assert_eq!(status_of(&r, "IA32_FEATURE_CONTROL"), Status::Unknown);
        assert!(r.usable, "unknown is not a failure when nvmx itself loaded");
    }

    #[test]
    fn missing_ept_fails_missing_vpid_warns() {
        let mut f = usable_host();
        f.features = Some(VmxFeatures { vpid: false, ..f.features.unwrap() });
        let r = judge(&f);
        assert!(r.usable);
        assert_eq!(status_of(&r, "vpid"), Status::Warn);
        f.features = Some(VmxFeatures { ept: false, ..f.features.unwrap() });
        assert!(!judge(&f).usable);
    }

    #[test]
    fn nvmx_not_loaded() {
        let r = judge(&Facts { nvmx: None, nvmx_loaded: false, ..usable_host() });
        assert!(!r.usable);
        assert_eq!(status_of(&r, "nvmx loaded"), Status::Fail);
        assert!(r.lines.iter().any(|l| l.hint.contains("insmod nvmx.ko")));
    }

    #[test]
    fn kvm_intel_holds_vmx() {
        let r = judge(&Facts { nvmx: None, nvmx_loaded: false, kvm_intel_loaded: true, ..usable_host() });
        assert!(!r.usable);
        assert_eq!(status_of(&r, "another hypervisor owns VMX"), Status::Fail);
        assert!(r.lines.iter().any(|l| l.hint.contains("rmmod kvm_intel")));
        let mut f = usable_host();
        f.nvmx.as_mut().unwrap().vmx_busy = true;
        assert!(!judge(&f).usable, "VMXE set by someone else after nvmx loaded");
    }

    #[test]
    fn nested_off() {
        let mut f = usable_host();
        f.nvmx.as_mut().unwrap().nested = false;
        let r = judge(&f);
        assert!(!r.usable);
        assert_eq!(status_of(&r, "nested parameter"), Status::Fail);
    }

    #[test]
    fn vcpus_and_a_failed_entry() {
        let mut f = usable_host();
        let fail = EntryFailure {
            kind: 1,
            field: 0x4000,
            value: 0x8000_0016,
            qualification: 0,
            section: "27.2.1.1".into(),
            rule: "allowed by IA32_VMX_TRUE_PINBASED_CTLS".into(),
        };
        f.nvmx.as_mut().unwrap().vcpus = vec![
            Vcpu { vm_id: 1, vcpu_id: 0, pid: 42, ..Vcpu::default() },
            Vcpu { vm_id: 2, vcpu_id: 0, pid: 42, vmx_exposed: true, vmxon: true, failure: Some(fail.clone()), ..Vcpu::default() },
        ];
        let r = judge(&f);
        assert!(r.usable, "a guest's failed entry does not make the host unusable");
        let vcpus: Vec<_> = r.lines.iter().filter(|l| l.check == "vcpu").collect();
        assert!(vcpus[0].value.contains("not exposed") && vcpus[0].hint.contains("KVM_SET_CPUID2"));
        assert!(vcpus[1].value.contains("exposed, L1 in VMX operation"));
        let e = explain(&fail);
        assert!(e.contains("VMfailValid(7)") && e.contains("PIN_BASED_VM_EXEC_CONTROL (0x4000) = 0x80000016"), "{e}");
        assert!(e.contains("SDM 27.2.1.1") && e.contains("expected allowed by IA32_VMX_TRUE_PINBASED_CTLS"), "{e}");
        assert_eq!(status_of(&r, "last failed nested entry"), Status::Warn);
    }
}
