// SPDX-License-Identifier: GPL-2.0
//! IA32_VMX_BASIC (Intel SDM vol. 3D, appendix A.1).

use super::bits::bitfield;

/// Memory type the processor uses to access the VMCS and related structures (A.1, bits 53:50).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryType {
    /// 0: uncacheable.
    Uncacheable,
    /// 6: write-back, the only type nvmx accepts (as KVM does).
    WriteBack,
    /// Any other value (reserved by the SDM).
    Other(u8),
}

bitfield! {
    /// IA32_VMX_BASIC (SDM A.1).
    pub struct VmxBasic(u64) {
        /// Bits 30:0: VMCS revision identifier, written to the first dword of VMXON/VMCS
        /// regions.
        revision_id, with_revision_id: 30:0 as u32;
        /// Bits 44:32: bytes to allocate for the VMXON region and any VMCS region (at most
        /// 4096).
        region_size, with_region_size: 44:32 as u32;
        /// Bit 48: VMXON/VMCS/bitmap addresses limited to 32 bits (never set on Intel 64 CPUs).
        addresses_32bit_only, with_addresses_32bit_only: 48;
        /// Bit 49: dual-monitor treatment of SMIs and SMM is supported.
        dual_monitor, with_dual_monitor: 49;
        /// Bits 53:50: memory type for the VMCS and the structures it points to
        /// ([`VmxBasic::memory_type`]).
        memory_type_bits, with_memory_type_bits: 53:50 as u8;
        /// Bit 54: VM exits due to INS/OUTS report instruction information.
        ins_outs_info, with_ins_outs_info: 54;
        /// Bit 55: the IA32_VMX_TRUE_*_CTLS MSRs exist and report default1 controls that may
        /// be 0.
        true_controls, with_true_controls: 55;
        /// Bit 56: VM entry may deliver a hardware exception with or without an error code
        /// regardless of vector.
        no_hw_errcode_check, with_no_hw_errcode_check: 56;
    }
}

impl VmxBasic {
    /// The memory type for the VMCS and the structures it points to (bits 53:50).
    pub const fn memory_type(self) -> MemoryType {
        match self.memory_type_bits() {
            0 => MemoryType::Uncacheable,
            6 => MemoryType::WriteBack,
            other => MemoryType::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value Skylake parts report: revision 4, a 1 KiB region, dual-monitor SMM, WB,
    /// INS/OUTS information, TRUE controls.
    const SKYLAKE: u64 = 0x00da_0400_0000_0004;

    #[test]
    fn decodes_skylake() {
        let b = VmxBasic(SKYLAKE);
        assert_eq!(b.revision_id(), 4);
        assert_eq!(b.region_size(), 0x400);
        assert_eq!(b.memory_type(), MemoryType::WriteBack);
        assert!(b.ins_outs_info());
        assert!(b.true_controls());
        assert!(!b.addresses_32bit_only());
        assert!(b.dual_monitor());
        assert!(!b.no_hw_errcode_check());
    }

    #[test]
    fn revision_id_excludes_bit_31() {
        // Bit 31 is always 0 in the MSR (A.1); a set bit 31 must not leak into the id.
        assert_eq!(VmxBasic(0x8000_0001).revision_id(), 1);
        assert_eq!(VmxBasic(0x7fff_ffff).revision_id(), 0x7fff_ffff);
    }

    #[test]
    fn memory_types() {
        assert_eq!(VmxBasic(0).memory_type(), MemoryType::Uncacheable);
        assert_eq!(VmxBasic(6 << 50).memory_type(), MemoryType::WriteBack);
        assert_eq!(VmxBasic(5 << 50).memory_type(), MemoryType::Other(5));
        assert_eq!(VmxBasic(0xf << 50).memory_type(), MemoryType::Other(15));
    }

    #[test]
    fn region_size_is_13_bits() {
        assert_eq!(VmxBasic(0x1fff << 32).region_size(), 0x1fff);
        assert_eq!(VmxBasic(1 << 45).region_size(), 0);
        assert!(VmxBasic(1 << 48).addresses_32bit_only());
        assert!(VmxBasic(1 << 49).dual_monitor());
        assert!(VmxBasic(1 << 56).no_hw_errcode_check());
    }
}
