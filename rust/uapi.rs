// SPDX-License-Identifier: GPL-2.0
//! The userspace ABI: the subset of `<linux/kvm.h>` /dev/nvmx speaks, and nvmx's own
//! `include/uapi/linux/nvmx.h`, mirrored by hand (out-of-tree modules get no uapi bindings).

use kernel::ioctl::{_IO, _IOR};
use kernel::transmute::AsBytes;

/// `KVMIO`: the KVM ioctl type.
const KVMIO: u32 = 0xae;

/// `KVM_API_VERSION`: the only version KVM has ever returned.
pub(crate) const KVM_API_VERSION: isize = 12;

/// `KVM_GET_API_VERSION`.
pub(crate) const KVM_GET_API_VERSION: u32 = _IO(KVMIO, 0x00);
/// `KVM_CHECK_EXTENSION`.
pub(crate) const KVM_CHECK_EXTENSION: u32 = _IO(KVMIO, 0x03);

/// `NVMX_IOCTL_TYPE`.
const NVMX_IOCTL_TYPE: u32 = 0xbb;

/// `struct nvmx_host_status`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct NvmxHostStatus {
    pub(crate) vmcs_revision: u32,
    pub(crate) online_cpus: u32,
    pub(crate) vmx_cpus: u32,
    pub(crate) features: u32,
    pub(crate) vmx_basic: u64,
    pub(crate) ept_vpid_cap: u64,
    pub(crate) reserved: [u64; 4],
}

// SAFETY: `repr(C)`, only integer fields, and no padding (4 x u32 then 6 x u64 = 64 bytes,
// every u64 at an 8-byte offset), so every byte is initialized.
unsafe impl AsBytes for NvmxHostStatus {}

/// `NVMX_HOST_*` feature bits.
pub(crate) mod host_features {
    /// `NVMX_HOST_EPT`.
    pub(crate) const EPT: u32 = 1 << 0;
    /// `NVMX_HOST_UNRESTRICTED_GUEST`.
    pub(crate) const UNRESTRICTED_GUEST: u32 = 1 << 1;
    /// `NVMX_HOST_VPID`.
    pub(crate) const VPID: u32 = 1 << 2;
    /// `NVMX_HOST_SHADOW_VMCS`.
    pub(crate) const SHADOW_VMCS: u32 = 1 << 3;
    /// `NVMX_HOST_PREEMPTION_TIMER`.
    pub(crate) const PREEMPTION_TIMER: u32 = 1 << 4;
}

/// `NVMX_GET_HOST_STATUS`.
pub(crate) const NVMX_GET_HOST_STATUS: u32 = _IOR::<NvmxHostStatus>(NVMX_IOCTL_TYPE, 0x00);

const _: () = assert!(core::mem::size_of::<NvmxHostStatus>() == 64);
