// SPDX-License-Identifier: GPL-2.0
//! `nvmx-status`: can this host run nested virtualization with nvmx, and if not, why — one
//! line per requirement with a verdict and a fix hint, then every open vCPU (VT-x exposed?
//! L1 in VMX operation? running L2? the last nested VM entry that failed, explained).
//!
//! Facts come from CPUID, /proc/cpuinfo, /sys/module, /sys/kernel/nvmx and nvmx's own ioctls
//! on /dev/nvmx (include/uapi/linux/nvmx.h); it gives an answer where nvmx is not loaded,
//! where another hypervisor holds VMX, and on AMD. Exit status: 0 usable, 1 not usable,
//! 2 bad arguments.

mod verdict;

use std::fs;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use verdict::{EntryFailure, Facts, Nvmx, Report, Status, Vcpu, VmxFeatures};

/// include/uapi/linux/nvmx.h, mirrored.
mod uapi {
    pub const TYPE: u64 = 0xbb;
    const fn ior(nr: u64, size: u64) -> u64 {
        (2 << 30) | (size << 16) | (TYPE << 8) | nr
    }
    const fn iowr(nr: u64, size: u64) -> u64 {
        (3 << 30) | (size << 16) | (TYPE << 8) | nr
    }
    pub const GET_HOST_STATUS: u64 = ior(0, 64);
    pub const GET_VCPU_LIST: u64 = iowr(1, 8);
    pub const STATUS_NESTED: u32 = 1 << 0;
    pub const STATUS_VMX_BUSY: u32 = 1 << 1;
    pub const HOST_EPT: u32 = 1 << 0;
    pub const HOST_UNRESTRICTED_GUEST: u32 = 1 << 1;
    pub const HOST_VPID: u32 = 1 << 2;
    pub const HOST_SHADOW_VMCS: u32 = 1 << 3;
    pub const HOST_PREEMPTION_TIMER: u32 = 1 << 4;
    pub const VCPU_VMX_EXPOSED: u32 = 1 << 0;
    pub const VCPU_VMXON: u32 = 1 << 1;
    pub const VCPU_GUEST_MODE: u32 = 1 << 2;

    #[repr(C)]
    #[derive(Default)]
    pub struct HostStatus {
        pub vmcs_revision: u32,
        pub online_cpus: u32,
        pub vmx_cpus: u32,
        pub features: u32,
        pub vmx_basic: u64,
        pub ept_vpid_cap: u64,
        pub feature_control: u64,
        pub flags: u32,
        pub nr_vcpus: u32,
        pub reserved: [u64; 2],
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct EntryFailure {
        pub kind: u32,
        pub field: u32,
        pub value: u64,
        pub qualification: u64,
        pub section: [u8; 16],
        pub rule: [u8; 128],
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct VcpuStatus {
        pub key: u64,
        pub vm_id: u32,
        pub vcpu_id: u32,
        pub pid: u32,
        pub flags: u32,
        pub last_failure: EntryFailure,
    }
}

extern "C" {
    fn ioctl(fd: i32, request: u64, ...) -> i32;
}

fn cpuid(leaf: u32) -> [u32; 4] {
    // CPUID exists on every x86-64 CPU.
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    [r.eax, r.ebx, r.ecx, r.edx]
}

fn cstr(b: &[u8]) -> String {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..n]).into_owned()
}

/// /dev/nvmx's status ioctls.
fn nvmx_status() -> Option<(Nvmx, u64, VmxFeatures)> {
    let dev = fs::OpenOptions::new().read(true).write(true).open("/dev/nvmx").ok()?;
    let fd = dev.as_raw_fd();
    let mut h = uapi::HostStatus::default();
    // SAFETY: NVMX_GET_HOST_STATUS writes one struct nvmx_host_status.
    if unsafe { ioctl(fd, uapi::GET_HOST_STATUS, &mut h as *mut uapi::HostStatus) } != 0 {
        return None;
    }
    let mut vcpus = Vec::new();
    // The list may grow between the calls: retry with the size the module asks for.
    let mut room = h.nr_vcpus as usize + 4;
    for _ in 0..8 {
        let words = (8 + room * core::mem::size_of::<uapi::VcpuStatus>()).div_ceil(8);
        let mut buf = vec![0u64; words];
        buf[0] = room as u64;
        // SAFETY: `buf` has room for the header and `room` entries.
        let r = unsafe { ioctl(fd, uapi::GET_VCPU_LIST, buf.as_mut_ptr()) };
        let n = (buf[0] & 0xffff_ffff) as usize;
        if r != 0 {
            room = n + 4;
            continue;
        }
        // SAFETY: the module wrote `n` entries after the 8-byte header; the buffer is
        // 8-aligned and large enough.
        let entries = unsafe {
            core::slice::from_raw_parts((buf.as_ptr() as *const u8).add(8) as *const uapi::VcpuStatus, n)
        };
        for e in entries {
            let f = &e.last_failure;
            vcpus.push(Vcpu {
                vm_id: e.vm_id,
                vcpu_id: e.vcpu_id,
                pid: e.pid,
                vmx_exposed: e.flags & uapi::VCPU_VMX_EXPOSED != 0,
                vmxon: e.flags & uapi::VCPU_VMXON != 0,
                guest_mode: e.flags & uapi::VCPU_GUEST_MODE != 0,
                failure: (f.kind != 0).then(|| EntryFailure {
                    kind: f.kind,
                    field: f.field,
                    value: f.value,
                    qualification: f.qualification,
                    section: cstr(&f.section),
                    rule: cstr(&f.rule),
                }),
            });
        }
        break;
    }
    vcpus.sort_by_key(|v| (v.vm_id, v.vcpu_id));
    let features = VmxFeatures {
        ept: h.features & uapi::HOST_EPT != 0,
        unrestricted_guest: h.features & uapi::HOST_UNRESTRICTED_GUEST != 0,
        vpid: h.features & uapi::HOST_VPID != 0,
        shadow_vmcs: h.features & uapi::HOST_SHADOW_VMCS != 0,
        preemption_timer: h.features & uapi::HOST_PREEMPTION_TIMER != 0,
    };
    let n = Nvmx {
        vmcs_revision: h.vmcs_revision,
        online_cpus: h.online_cpus,
        vmx_cpus: h.vmx_cpus,
        nested: h.flags & uapi::STATUS_NESTED != 0,
        vmx_busy: h.flags & uapi::STATUS_VMX_BUSY != 0,
        vcpus,
    };
    Some((n, h.feature_control, features))
}

/// IA32_FEATURE_CONTROL through the msr driver, where it is there (root).
fn msr_feature_control() -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open("/dev/cpu/0/msr").ok()?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, 0x3a).ok()?;
    Some(u64::from_le_bytes(b))
}

/// The "vmx flags" line Linux prints in /proc/cpuinfo for VMX CPUs.
fn cpuinfo_features(cpuinfo: &str) -> Option<VmxFeatures> {
    let flags = cpuinfo.lines().find(|l| l.starts_with("vmx flags"))?.split(':').nth(1)?;
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    Some(VmxFeatures {
        ept: has("ept"),
        unrestricted_guest: has("unrestricted_guest"),
        vpid: has("vpid"),
        shadow_vmcs: has("shadow_vmcs"),
        preemption_timer: has("preemption_timer"),
    })
}

fn gather() -> Facts {
    let [_, b, c, d] = cpuid(0);
    let vendor: Vec<u8> = [b, d, c].iter().flat_map(|w| w.to_le_bytes()).collect();
    let leaf1 = cpuid(1);
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_string();
    let module = |m: &str| fs::metadata(format!("/sys/module/{m}/initstate")).is_ok() || fs::metadata(format!("/sys/module/{m}/refcnt")).is_ok();
    let nvmx = nvmx_status();
    let (feature_control, features) = match &nvmx {
        Some((_, fc, x)) => (Some(*fc), Some(*x)),
        None => (msr_feature_control(), cpuinfo_features(&cpuinfo)),
    };
    Facts {
        vendor: String::from_utf8_lossy(&vendor).into_owned(),
        model,
        cpuid_vmx: leaf1[2] & (1 << 5) != 0,
        under_hypervisor: leaf1[2] & (1 << 31) != 0,
        feature_control,
        features,
        nvmx_loaded: module("nvmx") || nvmx.is_some(),
        nvmx: nvmx.map(|(n, _, _)| n),
        kvm_intel_loaded: module("kvm_intel"),
        fred: cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.split_whitespace().any(|w| w == "fred")),
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn print_json(f: &Facts, r: &Report) {
    let checks: Vec<String> = r
        .lines
        .iter()
        .map(|l| {
            format!(
                "{{\"check\":{},\"status\":{},\"value\":{},\"hint\":{}}}",
                json_str(l.check),
                json_str(l.status.name()),
                json_str(&l.value),
                json_str(&l.hint)
            )
        })
        .collect();
    let vcpus: Vec<String> = f
        .nvmx
        .iter()
        .flat_map(|n| n.vcpus.iter())
        .map(|v| {
            let failure = match &v.failure {
                None => "null".to_string(),
                Some(e) => format!(
                    "{{\"kind\":{},\"section\":{},\"field\":{},\"field_name\":{},\"value\":{},\"qualification\":{},\"rule\":{},\"explanation\":{}}}",
                    e.kind,
                    json_str(&e.section),
                    e.field,
                    json_str(nvmx_core::field::Field(e.field).name().unwrap_or("")),
                    e.value,
                    e.qualification,
                    json_str(&e.rule),
                    json_str(&verdict::explain(e))
                ),
            };
            format!(
                "{{\"vm_id\":{},\"vcpu_id\":{},\"pid\":{},\"vmx_exposed\":{},\"vmxon\":{},\"guest_mode\":{},\"last_entry_failure\":{}}}",
                v.vm_id, v.vcpu_id, v.pid, v.vmx_exposed, v.vmxon, v.guest_mode, failure
            )
        })
        .collect();
    println!("{{\"usable\":{},\"checks\":[{}],\"vcpus\":[{}]}}", r.usable, checks.join(","), vcpus.join(","));
}

fn print_human(r: &Report) {
    for l in &r.lines {
        println!("{:<10} {:<28} {}", format!("[{}]", l.status.name()), l.check, l.value);
        if !l.hint.is_empty() && l.status != Status::Ok {
            println!("{:<10} {:<28} -> {}", "", "", l.hint);
        }
    }
    println!(
        "verdict: nested virtualization with nvmx is {}",
        if r.usable { "USABLE" } else { "NOT usable (see the FAIL lines)" }
    );
}

fn main() -> ExitCode {
    let mut json = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--json" => json = true,
            "-h" | "--help" => {
                println!("usage: nvmx-status [--json]\n\nReports whether nested virtualization with nvmx is usable on this host,\nwith a fix for each requirement that is not met, and every open nvmx vCPU.\nExit status: 0 usable, 1 not usable, 2 bad arguments.");
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("nvmx-status: unknown argument '{a}' (try --help)");
                return ExitCode::from(2);
            }
        }
    }
    let facts = gather();
    let report = verdict::judge(&facts);
    if json {
        print_json(&facts, &report);
    } else {
        print_human(&report);
    }
    if report.usable { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
