// SPDX-License-Identifier: GPL-2.0
//! L1's MSR lists (SDM 25.7.2, 25.8.2 "VM-exit/VM-entry controls for MSRs"; 27.4 "Loading
//! MSRs"; 28.4 "Saving MSRs"; 28.6 "Loading host MSRs"; 28.7 "VMX aborts"): which entries
//! a nested VM entry or exit may process, and what a failure is. The module reads the
//! entries from L1's memory and carries them out on the vCPU's MSRs.
//!
//! KVM's nested_vmx_load_msr_check / nested_vmx_store_msr_check are the reference reading of
//! the SDM's rules; nvmx has no SMM, so the SMM MSRs fail as on a CPU outside SMX/SMM use.

use super::guest_msr::Msr;

/// One 16-byte entry: bits 31:0 the MSR index, 63:32 reserved (must be 0), 127:64 the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrEntry {
    /// The MSR (bits 31:0).
    pub index: u32,
    /// Bits 63:32, reserved: an entry with any set fails.
    pub reserved: u32,
    /// The value to load, or where a store puts it.
    pub value: u64,
}

/// Bytes per entry; list addresses are 16-byte aligned (checked at VM entry), so an entry
/// never crosses a page.
pub const ENTRY_BYTES: u64 = 16;

impl MsrEntry {
    /// An entry as it is in L1's memory.
    pub fn from_bytes(b: [u8; 16]) -> Self {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[8..16]);
        MsrEntry { index: u32_at(0), reserved: u32_at(4), value: u64::from_le_bytes(v) }
    }
}

/// Which list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum List {
    /// VM-entry MSR-load: L2's MSRs, loaded after L2's state (SDM 27.4).
    EntryLoad,
    /// VM-exit MSR-store: L2's MSRs saved into the list (SDM 28.4).
    ExitStore,
    /// VM-exit MSR-load: L1's MSRs, loaded after the host state (SDM 28.6).
    ExitLoad,
}

const MSR_IA32_SMM_MONITOR_CTL: u32 = 0x9b;
const MSR_IA32_SMBASE: u32 = 0x9e;
const MSR_IA32_UCODE_WRITE: u32 = 0x79;
const MSR_IA32_UCODE_REV: u32 = 0x8b;
const MSR_FS_BASE: u32 = Msr::FsBase.index();
const MSR_GS_BASE: u32 = Msr::GsBase.index();

/// Whether `e` may be processed in `list` (before the MSR access itself, which fails too
/// where RDMSR/WRMSR would #GP). `x2apic`: the vCPU's local APIC is in x2APIC mode, when
/// the x2APIC MSRs are off limits.
pub fn allowed(list: List, e: &MsrEntry, x2apic: bool) -> bool {
    // Common to all three (SDM 27.4, 28.4): reserved bits, x2APIC MSRs in x2APIC mode, the
    // microcode-update MSRs.
    if e.reserved != 0 || (x2apic && e.index >> 8 == 0x8) || matches!(e.index, MSR_IA32_UCODE_WRITE | MSR_IA32_UCODE_REV) {
        return false;
    }
    match list {
        // FS/GS bases come from the segment fields, SMM's MSRs are SMM's.
        List::EntryLoad | List::ExitLoad => !matches!(e.index, MSR_FS_BASE | MSR_GS_BASE | MSR_IA32_SMM_MONITOR_CTL),
        List::ExitStore => e.index != MSR_IA32_SMBASE,
    }
}

/// The most entries a list may have: 512 · (IA32_VMX_MISC[27:25] + 1) (SDM A.6); a longer
/// list fails at the first entry past it, as KVM's does.
pub fn max_entries(vmx_misc: u64) -> u32 {
    512 * (((vmx_misc >> 25) & 7) as u32 + 1)
}

/// VMX-abort indicators (SDM 28.7).
pub mod abort {
    /// A failure saving guest MSRs (the VM-exit MSR-store list).
    pub const SAVING_GUEST_MSRS: u32 = 1;
    /// A failure loading host MSRs (the VM-exit MSR-load list).
    pub const LOADING_HOST_MSRS: u32 = 4;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u32) -> MsrEntry {
        MsrEntry { index, reserved: 0, value: 0 }
    }

    #[test]
    fn entries_decode_little_endian() {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&0xc000_0102u32.to_le_bytes());
        b[8..16].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(MsrEntry::from_bytes(b), MsrEntry { index: 0xc000_0102, reserved: 0, value: 0x1122_3344_5566_7788 });
        b[4] = 1;
        assert_eq!(MsrEntry::from_bytes(b).reserved, 1);
    }

    #[test]
    fn sdm_rules_per_list() {
        for list in [List::EntryLoad, List::ExitStore, List::ExitLoad] {
            assert!(allowed(list, &e(0xc000_0102), false), "KERNEL_GS_BASE in {list:?}");
            assert!(!allowed(list, &MsrEntry { reserved: 1, ..e(0x174) }, false));
            assert!(!allowed(list, &e(0x808), true), "x2APIC TPR in x2APIC mode");
            assert!(allowed(list, &e(0x808), false), "not an x2APIC MSR outside x2APIC mode (RDMSR decides)");
            assert!(!allowed(list, &e(MSR_IA32_UCODE_REV), false));
        }
        for load in [List::EntryLoad, List::ExitLoad] {
            assert!(!allowed(load, &e(MSR_FS_BASE), false));
            assert!(!allowed(load, &e(MSR_GS_BASE), false));
            assert!(!allowed(load, &e(MSR_IA32_SMM_MONITOR_CTL), false));
            assert!(allowed(load, &e(MSR_IA32_SMBASE), false));
        }
        assert!(allowed(List::ExitStore, &e(MSR_FS_BASE), false));
        assert!(!allowed(List::ExitStore, &e(MSR_IA32_SMBASE), false));
    }

    #[test]
    fn list_size_limit_from_vmx_misc() {
        assert_eq!(max_entries(0), 512);
        assert_eq!(max_entries(7 << 25), 4096);
    }
}
