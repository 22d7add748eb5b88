// SPDX-License-Identifier: GPL-2.0
//! What nvmx does around VM entry and exit against transient-execution attacks, decided from
//! the host kernel's own mitigation state: the CPU bug and feature flags the kernel set at
//! boot from the CPU model, ARCH_CAPABILITIES and its command line (`mitigations=`,
//! `mds=`, `l1tf=`, `spectre_v2=`, ...). nvmx applies what the kernel would have KVM apply,
//! with its own instructions where the kernel's helpers are exported to KVM only
//! (Documentation/nvmx.rst, "Host protection").
//!
//! - Guest general-purpose registers are cleared after every VM exit (always; rust/vmx_asm.S),
//!   so that no guest value is left for speculation in host code.
//! - VERW before VM entry clears CPU buffers (MDS, TAA, MMIO stale data, RFDS) where the
//!   kernel's choice is X86_FEATURE_CLEAR_CPU_BUF_VM (an alternative in rust/vmx_asm.S).
//!   nvmx guests never map host MMIO, so the MMIO-only variant never applies.
//! - The return stack buffer is refilled after VM exit, before the first RET, where the
//!   kernel set X86_FEATURE_RSB_VMEXIT (or the one-entry _LITE form with eIBRS).
//! - L1D is flushed before VM entry where the CPU has L1TF and does not report that the
//!   flush can be skipped (ARCH_CAPABILITIES.SKIP_L1DFL_VMENTRY): with IA32_FLUSH_CMD where
//!   the CPU has it, else by reading a 64 KiB buffer (KVM's software flush), at the first
//!   entry after host code ran (KVM's `vmentry_l1d_flush=cond`; rust/run.rs).
//! - IBPB when the CPU enters a different vCPU than it last ran (not between a vCPU's VMCS01
//!   and VMCS02), where the CPU has IBPB.
//! - SPEC_CTRL: guests cannot read or write IA32_SPEC_CTRL or IA32_PRED_CMD (#GP; nvmx does
//!   not offer them), so a guest runs under the host's SPEC_CTRL and cannot change it.

use core::fmt;

/// The host kernel's flags that decide nvmx's mitigations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostFlags {
    /// X86_FEATURE_CLEAR_CPU_BUF_VM.
    pub clear_cpu_buf_vm: bool,
    /// X86_FEATURE_RSB_VMEXIT.
    pub rsb_vmexit: bool,
    /// X86_FEATURE_RSB_VMEXIT_LITE.
    pub rsb_vmexit_lite: bool,
    /// X86_BUG_L1TF.
    pub l1tf: bool,
    /// ARCH_CAPABILITIES bit 3: the CPU needs no L1D flush on VM entry.
    pub skip_l1d_flush: bool,
    /// X86_FEATURE_FLUSH_L1D: IA32_FLUSH_CMD exists.
    pub flush_l1d_msr: bool,
    /// X86_FEATURE_IBPB.
    pub ibpb: bool,
}

/// How L1D is flushed before VM entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L1dFlush {
    /// Not needed.
    None,
    /// WRMSR IA32_FLUSH_CMD.L1D_FLUSH.
    Msr,
    /// Read a 64 KiB buffer through the cache.
    Software,
}

/// What nvmx does for its guests on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// VERW before VM entry.
    pub verw_on_entry: bool,
    /// RSB refilled after VM exit (the whole RSB, or one entry with eIBRS).
    pub rsb: Rsb,
    /// L1D flush before VM entry.
    pub l1d_flush: L1dFlush,
    /// IBPB when a CPU enters a different vCPU.
    pub ibpb_on_vcpu_switch: bool,
}

/// RSB refill after VM exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rsb {
    /// Not needed.
    None,
    /// One entry (eIBRS hosts: RSB_VMEXIT_LITE).
    Lite,
    /// All entries.
    Full,
}

impl Plan {
    /// The plan for a host with these flags.
    pub const fn for_host(h: &HostFlags) -> Plan {
        Plan {
            verw_on_entry: h.clear_cpu_buf_vm,
            rsb: if h.rsb_vmexit {
                Rsb::Full
            } else if h.rsb_vmexit_lite {
                Rsb::Lite
            } else {
                Rsb::None
            },
            l1d_flush: if !h.l1tf || h.skip_l1d_flush {
                L1dFlush::None
            } else if h.flush_l1d_msr {
                L1dFlush::Msr
            } else {
                L1dFlush::Software
            },
            ibpb_on_vcpu_switch: h.ibpb,
        }
    }
}

/// Bytes the software L1D flush reads (twice the largest L1D KVM knows of).
pub const L1D_FLUSH_BYTES: usize = 64 * 1024;

impl fmt::Display for Plan {
    /// The one dmesg line nvmx logs at load (make check compares it with the kernel's flags).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let rsb = match self.rsb {
            Rsb::None => "no",
            Rsb::Lite => "one entry",
            Rsb::Full => "yes",
        };
        let l1d = match self.l1d_flush {
            L1dFlush::None => "no",
            L1dFlush::Msr => "IA32_FLUSH_CMD",
            L1dFlush::Software => "software",
        };
        write!(
            f,
            "transient-execution mitigations: guest GPRs cleared after exit yes, VERW before entry {}, \
             RSB refill after exit {}, L1D flush before entry {}, IBPB on vCPU switch {}",
            yes(self.verw_on_entry),
            rsb,
            l1d,
            yes(self.ibpb_on_vcpu_switch)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unaffected_host_needs_nothing() {
        let p = Plan::for_host(&HostFlags::default());
        assert_eq!(p, Plan { verw_on_entry: false, rsb: Rsb::None, l1d_flush: L1dFlush::None, ibpb_on_vcpu_switch: false });
        assert!(p.to_string().contains("VERW before entry no"));
    }

    #[test]
    fn each_flag_turns_its_mitigation_on() {
        let h = HostFlags { clear_cpu_buf_vm: true, ..HostFlags::default() };
        assert!(Plan::for_host(&h).verw_on_entry);
        let h = HostFlags { rsb_vmexit: true, rsb_vmexit_lite: true, ..HostFlags::default() };
        assert_eq!(Plan::for_host(&h).rsb, Rsb::Full, "full wins");
        let h = HostFlags { rsb_vmexit_lite: true, ..HostFlags::default() };
        assert_eq!(Plan::for_host(&h).rsb, Rsb::Lite);
        let h = HostFlags { ibpb: true, ..HostFlags::default() };
        assert!(Plan::for_host(&h).ibpb_on_vcpu_switch);
    }

    #[test]
    fn l1d_flush_follows_l1tf() {
        let l1tf = HostFlags { l1tf: true, ..HostFlags::default() };
        assert_eq!(Plan::for_host(&l1tf).l1d_flush, L1dFlush::Software);
        let msr = HostFlags { flush_l1d_msr: true, ..l1tf };
        assert_eq!(Plan::for_host(&msr).l1d_flush, L1dFlush::Msr);
        assert!(Plan::for_host(&msr).to_string().contains("L1D flush before entry IA32_FLUSH_CMD"));
        let skip = HostFlags { skip_l1d_flush: true, ..msr };
        assert_eq!(Plan::for_host(&skip).l1d_flush, L1dFlush::None, "ARCH_CAPABILITIES says skip");
        let no_bug = HostFlags { l1tf: false, ..msr };
        assert_eq!(Plan::for_host(&no_bug).l1d_flush, L1dFlush::None);
    }
}
