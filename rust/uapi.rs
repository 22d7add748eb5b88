// SPDX-License-Identifier: GPL-2.0
//! The userspace ABI: the subset of `<linux/kvm.h>` /dev/nvmx speaks, and nvmx's own
//! `include/uapi/linux/nvmx.h`, mirrored by hand (out-of-tree modules get no uapi bindings).

use kernel::ioctl::{_IO, _IOR, _IOW, _IOWR};
use kernel::transmute::{AsBytes, FromBytes};

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
    pub(crate) feature_control: u64,
    pub(crate) flags: u32,
    pub(crate) nr_vcpus: u32,
    pub(crate) reserved: [u64; 2],
}

// SAFETY: `repr(C)`, only integer fields, and no padding (4 x u32, 3 x u64, 2 x u32,
// 2 x u64 = 64 bytes, every u64 at an 8-byte offset), so every byte is initialized.
unsafe impl AsBytes for NvmxHostStatus {}

/// `NVMX_STATUS_*` flags.
pub(crate) mod status_flags {
    /// `NVMX_STATUS_NESTED`.
    pub(crate) const NESTED: u32 = 1 << 0;
    /// `NVMX_STATUS_VMX_BUSY`.
    pub(crate) const VMX_BUSY: u32 = 1 << 1;
}

/// `struct nvmx_entry_failure`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct NvmxEntryFailure {
    pub(crate) kind: u32,
    pub(crate) field: u32,
    pub(crate) value: u64,
    pub(crate) qualification: u64,
    pub(crate) section: [u8; 16],
    pub(crate) rule: [u8; 128],
}

impl Default for NvmxEntryFailure {
    fn default() -> Self {
        Self { kind: 0, field: 0, value: 0, qualification: 0, section: [0; 16], rule: [0; 128] }
    }
}

// SAFETY: `repr(C)`, integers and byte arrays, no padding (168 bytes, u64s 8-aligned).
unsafe impl AsBytes for NvmxEntryFailure {}

/// `struct nvmx_vcpu_status`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct NvmxVcpuStatus {
    pub(crate) key: u64,
    pub(crate) vm_id: u32,
    pub(crate) vcpu_id: u32,
    pub(crate) pid: u32,
    pub(crate) flags: u32,
    pub(crate) last_failure: NvmxEntryFailure,
}

// SAFETY: as above (8 + 4 x 4 + 168 = 192 bytes, no padding).
unsafe impl AsBytes for NvmxVcpuStatus {}

/// `struct nvmx_vcpu_stats`: path-length counters of one vCPU since it was created.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct NvmxVcpuStats {
    /// VM exits nvmx took while the vCPU ran (L1 and L2).
    pub(crate) exits: u64,
    /// Of those, while L2 ran.
    pub(crate) l2_exits: u64,
    /// Of those, reflected to L1 (nested VM exits).
    pub(crate) l2_exits_reflected: u64,
    /// L1's VMLAUNCH/VMRESUME that entered L2.
    pub(crate) nested_entries: u64,
    /// VMXON ... VMXOFF pairs (IRQs-off regions, Documentation/nvmx.rst).
    pub(crate) vmx_regions: u64,
    /// EPT02 entries filled on L2's EPT violations (nested EPT).
    pub(crate) ept02_fills: u64,
    /// KVM_RUN returns with an exit for userspace.
    pub(crate) user_exits: u64,
    pub(crate) reserved: [u64; 9],
}

// SAFETY: 16 u64s, no padding.
unsafe impl AsBytes for NvmxVcpuStats {}

const _: () = assert!(core::mem::size_of::<NvmxVcpuStats>() == 128);
const _: () = assert!(core::mem::size_of::<NvmxEntryFailure>() == 168);
const _: () = assert!(core::mem::size_of::<NvmxVcpuStatus>() == 192);

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
/// `NVMX_GET_VCPU_LIST` (`struct nvmx_vcpu_list` is an 8-byte header before its entries).
pub(crate) const NVMX_GET_VCPU_LIST: u32 = _IOWR::<[u32; 2]>(NVMX_IOCTL_TYPE, 0x01);
/// `NVMX_GET_ENTRY_FAILURE` (vCPU fd).
pub(crate) const NVMX_GET_ENTRY_FAILURE: u32 = _IOR::<NvmxEntryFailure>(NVMX_IOCTL_TYPE, 0x02);

/// `NVMX_GET_VCPU_STATS` (vCPU fd).
pub(crate) const NVMX_GET_VCPU_STATS: u32 = _IOR::<NvmxVcpuStats>(NVMX_IOCTL_TYPE, 0x03);

const _: () = assert!(core::mem::size_of::<NvmxHostStatus>() == 64);

/// `KVM_GET_SUPPORTED_CPUID` (`struct kvm_cpuid2` is an 8-byte header before its entries).
pub(crate) const KVM_GET_SUPPORTED_CPUID: u32 = _IOWR::<[u32; 2]>(KVMIO, 0x05);
/// `KVM_MAX_CPUID_ENTRIES`.
pub(crate) const KVM_MAX_CPUID_ENTRIES: u32 = 256;

/// `struct kvm_cpuid_entry2`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmCpuidEntry2 {
    pub(crate) function: u32,
    pub(crate) index: u32,
    pub(crate) flags: u32,
    pub(crate) eax: u32,
    pub(crate) ebx: u32,
    pub(crate) ecx: u32,
    pub(crate) edx: u32,
    pub(crate) padding: [u32; 3],
}

const _: () = assert!(core::mem::size_of::<KvmCpuidEntry2>() == 40);

impl From<&crate::vmx_core::cpuid::CpuidEntry> for KvmCpuidEntry2 {
    fn from(e: &crate::vmx_core::cpuid::CpuidEntry) -> Self {
        KvmCpuidEntry2 {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
            padding: [0; 3],
        }
    }
}

impl From<KvmCpuidEntry2> for crate::vmx_core::cpuid::CpuidEntry {
    fn from(e: KvmCpuidEntry2) -> Self {
        crate::vmx_core::cpuid::CpuidEntry {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
        }
    }
}
// SAFETY: `repr(C)`, ten u32 fields, no padding: every byte initialized, any bits valid.
unsafe impl AsBytes for KvmCpuidEntry2 {}
// SAFETY: as above.
unsafe impl FromBytes for KvmCpuidEntry2 {}

/// `KVM_CREATE_VM`.
pub(crate) const KVM_CREATE_VM: u32 = _IO(KVMIO, 0x01);
/// `KVM_GET_VCPU_MMAP_SIZE`.
pub(crate) const KVM_GET_VCPU_MMAP_SIZE: u32 = _IO(KVMIO, 0x04);
/// `KVM_CREATE_VCPU`.
pub(crate) const KVM_CREATE_VCPU: u32 = _IO(KVMIO, 0x41);
/// `KVM_SET_USER_MEMORY_REGION`.
pub(crate) const KVM_SET_USER_MEMORY_REGION: u32 = _IOW::<KvmUserspaceMemoryRegion>(KVMIO, 0x46);
/// `KVM_SET_USER_MEMORY_REGION2`.
pub(crate) const KVM_SET_USER_MEMORY_REGION2: u32 =
    _IOW::<KvmUserspaceMemoryRegion2>(KVMIO, 0x49);
/// `KVM_RUN`.
pub(crate) const KVM_RUN: u32 = _IO(KVMIO, 0x80);
/// `KVM_GET_REGS`.
pub(crate) const KVM_GET_REGS: u32 = _IOR::<KvmRegs>(KVMIO, 0x81);
/// `KVM_SET_REGS`.
pub(crate) const KVM_SET_REGS: u32 = _IOW::<KvmRegs>(KVMIO, 0x82);
/// `KVM_GET_SREGS`.
pub(crate) const KVM_GET_SREGS: u32 = _IOR::<KvmSregs>(KVMIO, 0x83);
/// `KVM_SET_SREGS`.
pub(crate) const KVM_SET_SREGS: u32 = _IOW::<KvmSregs>(KVMIO, 0x84);

/// `KVM_GET_MSR_INDEX_LIST` (`struct kvm_msr_list`: a u32 count before the indices).
pub(crate) const KVM_GET_MSR_INDEX_LIST: u32 = _IOWR::<u32>(KVMIO, 0x02);
/// `KVM_SET_NR_MMU_PAGES`.
pub(crate) const KVM_SET_NR_MMU_PAGES: u32 = _IO(KVMIO, 0x44);
/// `KVM_MIN_ALLOC_MMU_PAGES`.
pub(crate) const KVM_MIN_ALLOC_MMU_PAGES: usize = 64;
/// `KVM_GET_TSC_KHZ` (VM and vCPU fds).
pub(crate) const KVM_GET_TSC_KHZ: u32 = _IO(KVMIO, 0xa3);
/// `KVM_GET_MSR_FEATURE_INDEX_LIST` (system fd; `struct kvm_msr_list`).
pub(crate) const KVM_GET_MSR_FEATURE_INDEX_LIST: u32 = _IOWR::<u32>(KVMIO, 0x0a);
/// `KVM_GET_MSRS` (`struct kvm_msrs`: nmsrs, pad, then `struct kvm_msr_entry`s).
pub(crate) const KVM_GET_MSRS: u32 = _IOWR::<[u32; 2]>(KVMIO, 0x88);
/// `KVM_SET_MSRS`.
pub(crate) const KVM_SET_MSRS: u32 = _IOW::<[u32; 2]>(KVMIO, 0x89);
/// `KVM_GET_FPU`.
pub(crate) const KVM_GET_FPU: u32 = _IOR::<KvmFpu>(KVMIO, 0x8c);
/// `KVM_SET_FPU`.
pub(crate) const KVM_SET_FPU: u32 = _IOW::<KvmFpu>(KVMIO, 0x8d);
/// `KVM_GET_DEBUGREGS`.
pub(crate) const KVM_GET_DEBUGREGS: u32 = _IOR::<KvmDebugregs>(KVMIO, 0xa1);
/// `KVM_SET_DEBUGREGS`.
pub(crate) const KVM_SET_DEBUGREGS: u32 = _IOW::<KvmDebugregs>(KVMIO, 0xa2);
/// `KVM_SET_CPUID2`.
pub(crate) const KVM_SET_CPUID2: u32 = _IOW::<[u32; 2]>(KVMIO, 0x90);
/// `KVM_GET_CPUID2`.
pub(crate) const KVM_GET_CPUID2: u32 = _IOWR::<[u32; 2]>(KVMIO, 0x91);
/// `KVM_GET_MP_STATE`.
pub(crate) const KVM_GET_MP_STATE: u32 = _IOR::<u32>(KVMIO, 0x98);
/// `KVM_SET_MP_STATE`.
pub(crate) const KVM_SET_MP_STATE: u32 = _IOW::<u32>(KVMIO, 0x99);

/// `struct kvm_device_attr`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KvmDeviceAttr {
    pub(crate) flags: u32,
    pub(crate) group: u32,
    pub(crate) attr: u64,
    pub(crate) addr: u64,
}
const _: () = assert!(core::mem::size_of::<KvmDeviceAttr>() == 24);
// SAFETY: `repr(C)`, integers only, no padding (asserted size = sum of fields).
unsafe impl FromBytes for KvmDeviceAttr {}
/// `KVM_GET_DEVICE_ATTR`.
pub(crate) const KVM_GET_DEVICE_ATTR: u32 = _IOW::<KvmDeviceAttr>(KVMIO, 0xe2);
/// `KVM_HAS_DEVICE_ATTR`.
pub(crate) const KVM_HAS_DEVICE_ATTR: u32 = _IOW::<KvmDeviceAttr>(KVMIO, 0xe3);

/// `struct kvm_dirty_log`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KvmDirtyLog {
    pub(crate) slot: u32,
    pub(crate) padding1: u32,
    pub(crate) dirty_bitmap: u64,
}
const _: () = assert!(core::mem::size_of::<KvmDirtyLog>() == 16);
// SAFETY: `repr(C)`, integers only, no padding (asserted size = sum of fields).
unsafe impl FromBytes for KvmDirtyLog {}
/// `struct kvm_clear_dirty_log`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KvmClearDirtyLog {
    pub(crate) slot: u32,
    pub(crate) num_pages: u32,
    pub(crate) first_page: u64,
    pub(crate) dirty_bitmap: u64,
}
const _: () = assert!(core::mem::size_of::<KvmClearDirtyLog>() == 24);
// SAFETY: `repr(C)`, integers only, no padding (asserted size = sum of fields).
unsafe impl FromBytes for KvmClearDirtyLog {}
/// `KVM_CLEAR_DIRTY_LOG`.
pub(crate) const KVM_CLEAR_DIRTY_LOG: u32 = _IOWR::<KvmClearDirtyLog>(KVMIO, 0xc0);
/// `KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET`: what
/// `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2` may enable.
pub(crate) const KVM_DIRTY_LOG_MANUAL_CAPS: u64 = 1 | 2;
/// `KVM_DIRTY_LOG_INITIALLY_SET`.
pub(crate) const KVM_DIRTY_LOG_INITIALLY_SET: u64 = 2;

/// `KVM_GET_DIRTY_LOG`.
pub(crate) const KVM_GET_DIRTY_LOG: u32 = _IOW::<KvmDirtyLog>(KVMIO, 0x42);

/// `struct kvm_lapic_state`: the APIC register page (KVM_APIC_REG_SIZE = 0x400).
pub(crate) type KvmLapicState = [u32; 256];
/// `KVM_GET_LAPIC`.
pub(crate) const KVM_GET_LAPIC: u32 = _IOR::<[u8; 1024]>(KVMIO, 0x8e);
/// `KVM_SET_LAPIC`.
pub(crate) const KVM_SET_LAPIC: u32 = _IOW::<[u8; 1024]>(KVMIO, 0x8f);

/// `KVM_ENABLE_CAP`.
pub(crate) const KVM_ENABLE_CAP: u32 = _IOW::<KvmEnableCap>(KVMIO, 0xa3);

/// `struct kvm_enable_cap`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KvmEnableCap {
    pub(crate) cap: u32,
    pub(crate) flags: u32,
    pub(crate) args: [u64; 4],
    pub(crate) pad: [u8; 64],
}
const _: () = assert!(core::mem::size_of::<KvmEnableCap>() == 104);
// SAFETY: `repr(C)`, integers only, no padding (asserted size = sum of fields).
unsafe impl FromBytes for KvmEnableCap {}

/// `struct kvm_msi`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KvmMsi {
    pub(crate) address_lo: u32,
    pub(crate) address_hi: u32,
    pub(crate) data: u32,
    pub(crate) flags: u32,
    pub(crate) devid: u32,
    pub(crate) pad: [u8; 12],
}
const _: () = assert!(core::mem::size_of::<KvmMsi>() == 32);
// SAFETY: `repr(C)`, integers only, no padding (asserted size = sum of fields).
unsafe impl FromBytes for KvmMsi {}

/// `KVM_SIGNAL_MSI` (VM fd).
pub(crate) const KVM_SIGNAL_MSI: u32 = _IOW::<KvmMsi>(KVMIO, 0xa5);
/// `KVM_MSI_VALID_DEVID`: the one `kvm_msi.flags` bit KVM accepts (devid is unused on x86).
pub(crate) const KVM_MSI_VALID_DEVID: u32 = 1;

/// `KVM_MAX_IRQ_ROUTES`: the largest IOAPIC-route count KVM_CAP_SPLIT_IRQCHIP takes.
pub(crate) const KVM_MAX_IRQ_ROUTES: u64 = 4096;

/// `KVM_MP_STATE_*` (struct kvm_mp_state is one u32).
pub(crate) mod mp_state {
    /// `KVM_MP_STATE_RUNNABLE`.
    pub(crate) const RUNNABLE: u32 = 0;
    /// `KVM_MP_STATE_UNINITIALIZED`: an application processor waiting for INIT.
    pub(crate) const UNINITIALIZED: u32 = 1;
    /// `KVM_MP_STATE_INIT_RECEIVED`: waiting for a SIPI.
    pub(crate) const INIT_RECEIVED: u32 = 2;
    /// `KVM_MP_STATE_HALTED`: HLT, waiting for an interrupt.
    pub(crate) const HALTED: u32 = 3;
}

/// `struct kvm_msr_entry`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmMsrEntry {
    pub(crate) index: u32,
    pub(crate) reserved: u32,
    pub(crate) data: u64,
}

/// `struct kvm_fpu`: the legacy x87/SSE state, as FXSAVE lays it out but reordered.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KvmFpu {
    pub(crate) fpr: [[u8; 16]; 8],
    pub(crate) fcw: u16,
    pub(crate) fsw: u16,
    pub(crate) ftwx: u8,
    pub(crate) pad1: u8,
    pub(crate) last_opcode: u16,
    pub(crate) last_ip: u64,
    pub(crate) last_dp: u64,
    pub(crate) xmm: [[u8; 16]; 16],
    pub(crate) mxcsr: u32,
    pub(crate) pad2: u32,
}

/// `struct kvm_debugregs`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmDebugregs {
    pub(crate) db: [u64; 4],
    pub(crate) dr6: u64,
    pub(crate) dr7: u64,
    pub(crate) flags: u64,
    pub(crate) reserved: [u64; 9],
}

/// `KVM_CAP_*` numbers nvmx answers (include/uapi/linux/kvm.h).
pub(crate) mod cap {
    /// `KVM_CAP_EXT_CPUID`: KVM_GET_SUPPORTED_CPUID and the CPUID2 ioctls.
    pub(crate) const EXT_CPUID: usize = 7;
    /// `KVM_CAP_MP_STATE`.
    pub(crate) const MP_STATE: usize = 14;
    /// `KVM_CAP_GET_TSC_KHZ`.
    pub(crate) const GET_TSC_KHZ: usize = 61;
    /// `KVM_CAP_ENABLE_CAP_VM`: KVM_ENABLE_CAP on the VM fd.
    pub(crate) const ENABLE_CAP_VM: usize = 98;
    /// `KVM_CAP_SPLIT_IRQCHIP`: in-kernel local APICs, I/O APIC and PIC in userspace.
    pub(crate) const SPLIT_IRQCHIP: usize = 121;
    /// `KVM_CAP_SIGNAL_MSI`.
    pub(crate) const SIGNAL_MSI: usize = 77;
    /// `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`.
    pub(crate) const MANUAL_DIRTY_LOG_PROTECT2: usize = 168;
    /// `KVM_CAP_USER_MEMORY`.
    pub(crate) const USER_MEMORY: usize = 3;
    /// `KVM_CAP_NR_VCPUS`.
    pub(crate) const NR_VCPUS: usize = 9;
    /// `KVM_CAP_NR_MEMSLOTS`.
    pub(crate) const NR_MEMSLOTS: usize = 10;
    /// `KVM_CAP_MAX_VCPUS`.
    pub(crate) const MAX_VCPUS: usize = 66;
    /// `KVM_CAP_IMMEDIATE_EXIT`.
    pub(crate) const IMMEDIATE_EXIT: usize = 136;
    /// `KVM_CAP_MAX_VCPU_ID`.
    pub(crate) const MAX_VCPU_ID: usize = 128;
    /// `KVM_CAP_USER_MEMORY2`.
    pub(crate) const USER_MEMORY2: usize = 231;
    /// `KVM_CAP_GET_MSR_FEATURES`: KVM_GET_MSR_FEATURE_INDEX_LIST and KVM_GET_MSRS on the
    /// system fd.
    pub(crate) const GET_MSR_FEATURES: usize = 153;
    /// `KVM_CAP_DEBUGREGS`: KVM_GET/SET_DEBUGREGS.
    pub(crate) const DEBUGREGS: usize = 50;
    /// `KVM_CAP_DISABLE_QUIRKS2`: the quirks a VMM may disable (a mask).
    pub(crate) const DISABLE_QUIRKS2: usize = 213;
}

/// `struct kvm_userspace_memory_region`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmUserspaceMemoryRegion {
    pub(crate) slot: u32,
    pub(crate) flags: u32,
    pub(crate) guest_phys_addr: u64,
    pub(crate) memory_size: u64,
    pub(crate) userspace_addr: u64,
}

/// `struct kvm_userspace_memory_region2`: `struct kvm_userspace_memory_region` followed by
/// the guest_memfd fields (KVM's SANITY_CHECK_MEM_REGION_FIELD asserts the shared prefix).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct KvmUserspaceMemoryRegion2 {
    pub(crate) v1: KvmUserspaceMemoryRegion,
    pub(crate) guest_memfd_offset: u64,
    pub(crate) guest_memfd: u32,
    pub(crate) pad1: u32,
    pub(crate) pad2: [u64; 14],
}

/// `struct kvm_regs`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct KvmRegs {
    pub(crate) rax: u64,
    pub(crate) rbx: u64,
    pub(crate) rcx: u64,
    pub(crate) rdx: u64,
    pub(crate) rsi: u64,
    pub(crate) rdi: u64,
    pub(crate) rsp: u64,
    pub(crate) rbp: u64,
    pub(crate) r8: u64,
    pub(crate) r9: u64,
    pub(crate) r10: u64,
    pub(crate) r11: u64,
    pub(crate) r12: u64,
    pub(crate) r13: u64,
    pub(crate) r14: u64,
    pub(crate) r15: u64,
    pub(crate) rip: u64,
    pub(crate) rflags: u64,
}

/// `struct kvm_segment`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct KvmSegment {
    pub(crate) base: u64,
    pub(crate) limit: u32,
    pub(crate) selector: u16,
    pub(crate) type_: u8,
    pub(crate) present: u8,
    pub(crate) dpl: u8,
    pub(crate) db: u8,
    pub(crate) s: u8,
    pub(crate) l: u8,
    pub(crate) g: u8,
    pub(crate) avl: u8,
    pub(crate) unusable: u8,
    pub(crate) padding: u8,
}

/// `struct kvm_dtable`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct KvmDtable {
    pub(crate) base: u64,
    pub(crate) limit: u16,
    pub(crate) padding: [u16; 3],
}

/// `struct kvm_sregs`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct KvmSregs {
    pub(crate) cs: KvmSegment,
    pub(crate) ds: KvmSegment,
    pub(crate) es: KvmSegment,
    pub(crate) fs: KvmSegment,
    pub(crate) gs: KvmSegment,
    pub(crate) ss: KvmSegment,
    pub(crate) tr: KvmSegment,
    pub(crate) ldt: KvmSegment,
    pub(crate) gdt: KvmDtable,
    pub(crate) idt: KvmDtable,
    pub(crate) cr0: u64,
    pub(crate) cr2: u64,
    pub(crate) cr3: u64,
    pub(crate) cr4: u64,
    pub(crate) cr8: u64,
    pub(crate) efer: u64,
    pub(crate) apic_base: u64,
    pub(crate) interrupt_bitmap: [u64; 4],
}

// The sizes of <linux/kvm.h> on x86-64: a mismatch here is an ABI break.
const _: () = assert!(core::mem::size_of::<KvmUserspaceMemoryRegion>() == 32);
const _: () = assert!(core::mem::size_of::<KvmUserspaceMemoryRegion2>() == 160);
const _: () = assert!(core::mem::size_of::<KvmRegs>() == 144);
const _: () = assert!(core::mem::size_of::<KvmSegment>() == 24);
const _: () = assert!(core::mem::size_of::<KvmDtable>() == 16);
const _: () = assert!(core::mem::size_of::<KvmSregs>() == 312);
const _: () = assert!(core::mem::size_of::<KvmMsrEntry>() == 16);
const _: () = assert!(core::mem::size_of::<KvmFpu>() == 416);

// SAFETY (all impls below): `repr(C)` structs of integers (and arrays and structs of
// integers) without padding — the size assertions above equal the sum of the field sizes —
// so every byte is initialized (AsBytes) and every bit pattern is valid (FromBytes).
unsafe impl FromBytes for KvmUserspaceMemoryRegion {}
// SAFETY: see above.
unsafe impl FromBytes for KvmUserspaceMemoryRegion2 {}
// SAFETY: see above.
unsafe impl FromBytes for KvmRegs {}
// SAFETY: see above.
unsafe impl AsBytes for KvmRegs {}
// SAFETY: see above.
unsafe impl FromBytes for KvmSregs {}
// SAFETY: see above.
unsafe impl AsBytes for KvmSregs {}
// SAFETY: see above.
unsafe impl FromBytes for KvmMsrEntry {}
// SAFETY: see above.
unsafe impl AsBytes for KvmMsrEntry {}
// SAFETY: see above.
unsafe impl FromBytes for KvmFpu {}
// SAFETY: see above (u64 fields only).
unsafe impl FromBytes for KvmDebugregs {}
// SAFETY: see above.
unsafe impl AsBytes for KvmDebugregs {}
// SAFETY: see above.
unsafe impl AsBytes for KvmFpu {}

/// `struct kvm_run` field offsets used by nvmx (x86-64 layout).
pub(crate) mod run {
    /// `__u8 immediate_exit`.
    pub(crate) const IMMEDIATE_EXIT: usize = 1;
    /// `__u32 exit_reason`.
    pub(crate) const EXIT_REASON: usize = 8;
    /// The exit-specific union.
    pub(crate) const EXIT_UNION: usize = 32;
    /// Total size of `struct kvm_run`.
    pub(crate) const SIZE: usize = 2352;
    // It must fit the first mmap page; PIO data lives in the second.
    const _: () = assert!(SIZE <= 4096);
}

/// `KVM_EXIT_*` reasons nvmx reports.
pub(crate) mod exit {
    /// `KVM_EXIT_IO`.
    pub(crate) const IO: u32 = 2;
    /// `KVM_EXIT_MMIO`.
    pub(crate) const MMIO: u32 = 6;
    /// `KVM_EXIT_HLT`.
    pub(crate) const HLT: u32 = 5;
    /// `KVM_EXIT_SHUTDOWN`.
    pub(crate) const SHUTDOWN: u32 = 8;
    /// `KVM_EXIT_FAIL_ENTRY`.
    pub(crate) const FAIL_ENTRY: u32 = 9;
    /// `KVM_EXIT_INTR`.
    pub(crate) const INTR: u32 = 10;
    /// `KVM_EXIT_INTERNAL_ERROR`.
    pub(crate) const INTERNAL_ERROR: u32 = 17;
}
