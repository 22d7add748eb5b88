// SPDX-License-Identifier: GPL-2.0
//! `/dev/nvmx`: the system fd. It speaks the KVM ABI's system ioctls (type 0xAE) and nvmx's
//! own (type 0xBB); every other command is ENOTTY, as on /dev/kvm.

use kernel::fs::File;
use kernel::miscdevice::{MiscDevice, MiscDeviceRegistration};
use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use crate::uapi::{self, host_features, status_flags, NvmxHostStatus, NvmxVcpuStatus};
use crate::vm::Vm;
use crate::{vcpu, HOST};

/// One open of /dev/nvmx. It holds no state yet: VMs will hang off it.
pub(crate) struct NvmxFile;

#[vtable]
impl MiscDevice for NvmxFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(NvmxFile, GFP_KERNEL)?)
    }

    fn ioctl(_me: &NvmxFile, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            // KVM returns EINVAL for a non-zero argument (kvm_dev_ioctl).
            uapi::KVM_GET_API_VERSION if arg != 0 => Err(EINVAL),
            uapi::KVM_GET_API_VERSION => Ok(uapi::KVM_API_VERSION),
            uapi::KVM_CHECK_EXTENSION => Ok(crate::vm_fd::check_extension(arg)),
            uapi::KVM_CREATE_VM => Vm::create(arg),
            // Two pages: struct kvm_run and the PIO data page (no coalesced MMIO ring).
            uapi::KVM_GET_VCPU_MMAP_SIZE if arg != 0 => Err(EINVAL),
            uapi::KVM_GET_VCPU_MMAP_SIZE => Ok((vcpu::MMAP_PAGES * 4096) as isize),
            uapi::NVMX_GET_HOST_STATUS => get_host_status(arg),
            uapi::NVMX_GET_VCPU_LIST => get_vcpu_list(arg),
            uapi::KVM_GET_SUPPORTED_CPUID => get_supported_cpuid(arg),
            uapi::KVM_GET_MSR_INDEX_LIST => crate::vcpu_fd::get_msr_index_list(arg),
            uapi::KVM_GET_MSR_FEATURE_INDEX_LIST => crate::vcpu_fd::get_msr_feature_index_list(arg),
            uapi::KVM_GET_MSRS => crate::vcpu_fd::get_feature_msrs(arg),
            uapi::KVM_X86_GET_MCE_CAP_SUPPORTED => {
                let cap: u64 = crate::vmx_core::mce::SUPPORTED_CAP;
                kernel::uaccess::UserSlice::new(kernel::uaccess::UserPtr::from_addr(arg), 8).writer().write(&cap)?;
                Ok(0)
            }
            // System attributes (KVM_X86_XCOMP_GUEST_SUPP, ...): nvmx has none, so every
            // attribute is ENXIO, KVM's answer for one it does not know; a client then
            // knows the feature behind it (dynamic XSAVE state) is not there.
            uapi::KVM_GET_DEVICE_ATTR | uapi::KVM_HAS_DEVICE_ATTR => {
                let _: uapi::KvmDeviceAttr = crate::vm::read_user(arg)?;
                Err(ENXIO)
            }
            _ => Err(ENOTTY),
        }
    }
}

/// `KVM_GET_SUPPORTED_CPUID`, with KVM's rules (kvm_dev_ioctl_get_cpuid): `nent` is the
/// room the caller has; too little is E2BIG (nothing written), else the entries and the real
/// `nent` are written back.
fn get_supported_cpuid(arg: usize) -> Result<isize> {
    let host = HOST.as_ref().ok_or(ENODEV)?;
    let entries = host.cpuid.entries();
    let nent: u32 = UserSlice::new(UserPtr::from_addr(arg), 4).reader().read()?;
    let room = nent.min(uapi::KVM_MAX_CPUID_ENTRIES) as usize;
    if room < entries.len() {
        return Err(E2BIG);
    }
    let size = 8 + entries.len() * core::mem::size_of::<uapi::KvmCpuidEntry2>();
    let mut w = UserSlice::new(UserPtr::from_addr(arg), size).writer();
    w.write(&[entries.len() as u32, 0u32])?;
    for e in entries {
        w.write(&uapi::KvmCpuidEntry2::from(e))?;
    }
    Ok(0)
}

/// The `NVMX_HOST_*` bits of this host (EPT and unrestricted guest: nvmx refuses to load
/// without them).
pub(crate) fn host_features(host: &crate::HostInfo) -> u32 {
    let caps = &host.caps;
    let mut features = host_features::EPT | host_features::UNRESTRICTED_GUEST;
    if caps.vpid() {
        features |= host_features::VPID;
    }
    if caps.shadow_vmcs() {
        features |= host_features::SHADOW_VMCS;
    }
    if caps.preemption_timer() {
        features |= host_features::PREEMPTION_TIMER;
    }
    features
}

fn get_host_status(arg: usize) -> Result<isize> {
    let host = HOST.as_ref().ok_or(ENODEV)?;
    let caps = &host.caps;
    let features = host_features(host);
    let closed = crate::status::closed_totals();
    let status = NvmxHostStatus {
        vmcs_revision: caps.basic.revision_id(),
        online_cpus: host.online_cpus,
        vmx_cpus: host.vmx_cpus,
        features,
        vmx_basic: caps.basic.0,
        ept_vpid_cap: caps.ept_vpid.0,
        // Readable: nvmx loaded, so the load-time probe read it.
        feature_control: crate::vmx_ops::rdmsr(0x3a),
        flags: (if host.nested { status_flags::NESTED } else { 0 })
            // nvmx sets CR4.VMXE only inside IRQs-off regions: set here, it is another
            // hypervisor's (kvm_intel loaded after nvmx enables VMX on every CPU).
            | (if crate::vmx_ops::read_cr4() & (1 << 13) != 0 { status_flags::VMX_BUSY } else { 0 }),
        nr_vcpus: crate::status::count() as u32,
        closed_l2_exits: closed.l2_exits,
        closed_l2_exits_reflected: closed.l2_exits_reflected,
    };
    let user = UserSlice::new(UserPtr::from_addr(arg), core::mem::size_of::<NvmxHostStatus>());
    user.writer().write(&status)?;
    Ok(0)
}

/// `NVMX_GET_VCPU_LIST`: every open vCPU, with KVM_GET_MSR_INDEX_LIST's size rules (`nent`
/// too small: E2BIG with the number needed written back).
fn get_vcpu_list(arg: usize) -> Result<isize> {
    let room: u32 = UserSlice::new(UserPtr::from_addr(arg), 4).reader().read()?;
    // Copied out of the list first: writing user memory may fault and sleep.
    let list = crate::status::snapshot()?;
    let n = list.len();
    if (room as usize) < n {
        UserSlice::new(UserPtr::from_addr(arg), 4).writer().write(&(n as u32))?;
        return Err(E2BIG);
    }
    let size = 8 + n * core::mem::size_of::<NvmxVcpuStatus>();
    let mut w = UserSlice::new(UserPtr::from_addr(arg), size).writer();
    w.write(&[n as u32, 0u32])?;
    for e in list.iter() {
        w.write(e)?;
    }
    Ok(0)
}
