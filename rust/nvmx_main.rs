// SPDX-License-Identifier: GPL-2.0
//! nvmx: a minimal VMX hypervisor with nested virtualization, driven through `/dev/nvmx`,
//! which speaks a subset of the KVM ABI.
//!
//! Load: probe the host (vendor, CPUID.VMX, IA32_FEATURE_CONTROL, the VMX capability MSRs),
//! allocate a VMXON region per possible CPU, and prove VMX operation on every online CPU with
//! a VMXON/VMXOFF round trip in an IRQs-off region. Any refusal is one dmesg line and the
//! errno documented in Documentation/nvmx.rst.

use kernel::miscdevice::{MiscDeviceOptions, MiscDeviceRegistration};
use kernel::prelude::*;
use kernel::sync::SetOnce;

mod apic;
mod cpu;
mod device;
mod ept;
mod guest_memory;
mod guest_regs;
mod ioeventfd;
mod irqfd;
mod irq_routing;
mod pinned;
mod kvm_state;
mod nested;
mod nested_ept;
mod nested_save;
mod run;
mod shadow_vmcs;
mod shim;
mod status;
mod uapi;
mod msr_route;
mod nested_msrs;
mod nested_state;
mod vcpu;
mod vcpu_fd;
mod vcpu_state;
mod vm;
mod vm_fd;
mod vmcs;
mod vmx_ops;
pub mod vmx_core;

use vmx_core::host::{self, GuestControls, HostCaps, HostProbe};

module! {
    type: Nvmx,
    name: "nvmx",
    authors: ["nvmx developers"],
    description: "Minimal VMX hypervisor with nested virtualization (KVM ABI subset)",
    license: "GPL",
    params: {
        nested: bool {
            default: true,
            description: "Offer VMX to guests whose VMM sets CPUID.1:ECX.VMX (nested virtualization)",
        },
    },
}

/// Host facts fixed at load, read by the device.
pub(crate) struct HostInfo {
    pub(crate) caps: HostCaps,
    /// Controls of every guest VMCS, derived from `caps` at load.
    pub(crate) controls: GuestControls,
    /// What guests get from CPUID (`KVM_GET_SUPPORTED_CPUID`), from this CPU's CPUID.
    pub(crate) cpuid: vmx_core::cpuid::CpuidTable,
    /// Physical address of each CPU's VMXON region (owned by the module's `VmxCpus`, which
    /// outlives every VM: an open VM or vCPU fd holds a module reference).
    pub(crate) vmxon_phys: KVec<u64>,
    pub(crate) online_cpus: u32,
    pub(crate) vmx_cpus: u32,
    /// The extended state nvmx switches for guests (rust/core/src/xsave.rs).
    pub(crate) xsave: vmx_core::xsave::XsaveHost,
    /// MXCSR bits FXRSTOR accepts (SDM vol. 1 11.6.6): guest FPU state is checked against it.
    pub(crate) mxcsr_mask: u32,
    /// The TSC frequency guests see (`KVM_GET_TSC_KHZ`): the host's, unscaled.
    pub(crate) tsc_khz: u32,
    /// IA32_DEBUGCTL can be read (every VMX CPU has it; some emulators do not).
    pub(crate) has_debugctl: bool,
    /// Nested VMX is offered (the `nested` parameter).
    pub(crate) nested: bool,
    /// The IA32_VMX_* MSRs an L1 is offered (every vCPU starts with these).
    pub(crate) l1_caps: vmx_core::nested_caps::L1VmxCaps,
    /// VMCS shadowing for L1's VMREAD/VMWRITE, when nested and the CPU has it.
    pub(crate) shadow_bitmaps: Option<shadow_vmcs::Bitmaps>,
    /// Transient-execution mitigations around VM entry and exit (mitigation.rs).
    pub(crate) mitigations: vmx_core::mitigation::Plan,
    /// The software L1D flush's buffer (L1dFlush::Software only).
    pub(crate) l1d_flush_pages: KVec<kernel::page::Page>,
    /// Per possible CPU: the vCPU (status key) it last entered, for IBPB on a switch.
    pub(crate) last_vcpu: KVec<core::sync::atomic::AtomicU64>,
}

/// Set once in `init`; lives as long as the module.
pub(crate) static HOST: SetOnce<HostInfo> = SetOnce::new();

/// The host as the core's load-time checks see it: CPUID and RDMSR on this CPU.
struct ThisCpu;

impl HostProbe for ThisCpu {
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        vmx_ops::cpuid(leaf, subleaf)
    }
    fn rdmsr(&mut self, index: u32) -> Option<u64> {
        shim::rdmsr_safe(index)
    }
}

#[pin_data(PinnedDrop)]
struct Nvmx {
    _sysfs: shim::Sysfs,
    _vmx: cpu::VmxCpus,
    #[pin]
    _misc: MiscDeviceRegistration<device::NvmxFile>,
}

fn probe_host() -> Result<cpu::VmxCpus> {
    host::kernel_supported(vmx_ops::read_cr4()).map_err(|r| {
        pr_err!("{}\n", format_args!("{r}"));
        Error::from_errno(-r.errno())
    })?;
    let caps = host::probe(&mut ThisCpu).map_err(|r| {
        pr_err!("{}\n", format_args!("{r}"));
        Error::from_errno(-r.errno())
    })?;
    pr_info!("{}\n", format_args!("{caps}"));
    let controls = GuestControls::for_host(&caps).map_err(|r| {
        pr_err!("{}\n", format_args!("{r}"));
        Error::from_errno(-r.errno())
    })?;
    let vmx = cpu::VmxCpus::bring_up(&caps)?;
    let online = shim::num_online_cpus();
    pr_info!("VMX operation verified on {} of {} online CPUs\n", vmx.vmx_cpus, online);
    let vmxon_phys = vmx.vmxon_phys()?;
    // Linux sets XCR0 once at boot (dynamic features use XFD, not XCR0).
    let osxsave = vmx_ops::read_cr4() & vmx_core::guest_cr::CR4_OSXSAVE != 0;
    let host_xcr0 = if osxsave { vmx_ops::xgetbv0() } else { 0 };
    let xsave = vmx_core::xsave::XsaveHost::probe(osxsave, host_xcr0, &mut |leaf, sub| vmx_ops::cpuid(leaf, sub));
    pr_info!("guest extended state: XCR0 {:#x} of the host's {:#x}\n", xsave.supported, host_xcr0);
    let mut cpuid = vmx_core::cpuid::supported(&mut |leaf, sub| vmx_ops::cpuid(leaf, sub), &xsave);
    let nested = module_parameters::nested.value();
    if nested {
        cpuid.offer_vmx();
    }
    // IA32_VMX_VMCS_ENUM: the highest field index of VMCS12's table.
    let max_index = vmx_core::field_table::ALL_FIELDS.iter().map(|&(_, f)| f.index()).max().unwrap_or(0);
    let l1_caps = vmx_core::nested_caps::L1VmxCaps::offer(&caps, max_index);
    pr_info!("nested VMX {}\n", if nested { "offered (nested=1)" } else { "off (nested=0)" });
    // MXCSR_MASK is bytes 28..32 of an FXSAVE image; 0 there means the default 0xffbf.
    let mut fx = vmx_ops::FxArea([0; 512]);
    vmx_ops::fxsave(&mut fx);
    let mask = u32::from_le_bytes([fx.0[28], fx.0[29], fx.0[30], fx.0[31]]);
    let mitigations = vmx_core::mitigation::Plan::for_host(&shim::mitigation_flags());
    pr_info!("{}\n", format_args!("{mitigations}"));
    let mut l1d_flush_pages = KVec::new();
    if mitigations.l1d_flush == vmx_core::mitigation::L1dFlush::Software {
        for _ in 0..vmx_core::mitigation::L1D_FLUSH_BYTES / kernel::page::PAGE_SIZE {
            l1d_flush_pages.push(kernel::page::Page::alloc_page(GFP_KERNEL)?, GFP_KERNEL)?;
        }
    }
    let mut last_vcpu = KVec::with_capacity(vmxon_phys.len(), GFP_KERNEL)?;
    for _ in 0..vmxon_phys.len() {
        last_vcpu.push(core::sync::atomic::AtomicU64::new(0), GFP_KERNEL)?;
    }
    HOST.populate(HostInfo {
        mitigations,
        xsave,
        l1d_flush_pages,
        last_vcpu,
        mxcsr_mask: if mask == 0 { 0xffbf } else { mask },
        tsc_khz: shim::tsc_khz(),
        has_debugctl: shim::rdmsr_safe(0x1d9).is_some(),
        nested,
        l1_caps,
        shadow_bitmaps: if nested && caps.shadow_vmcs() { Some(shadow_vmcs::Bitmaps::new(caps.misc)?) } else { None },
        caps,
        controls,
        cpuid,
        vmxon_phys,
        online_cpus: online,
        vmx_cpus: vmx.vmx_cpus,
    });
    Ok(vmx)
}

impl kernel::InPlaceModule for Nvmx {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            _vmx: {
                status::init();
                probe_host()?
            },
            _sysfs: {
                let h = HOST.as_ref().ok_or(ENODEV)?;
                shim::Sysfs::create(h.nested, h.caps.basic.revision_id(), h.vmx_cpus, h.online_cpus, device::host_features(h))?
            },
            _misc <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"nvmx" }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for Nvmx {
    fn drop(self: Pin<&mut Self>) {
        // nvmx is in VMX operation only inside IRQs-off regions, so at this point no CPU is.
        let failures = crate::vmcs::failures();
        if failures != 0 {
            pr_warn!("{failures} VMREAD/VMWRITE failures since load\n");
        }
        pr_info!("unloaded; no CPU is in VMX operation\n");
    }
}
