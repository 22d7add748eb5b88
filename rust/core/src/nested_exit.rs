// SPDX-License-Identifier: GPL-2.0
//! Which L2 exits go to L1 (nested VMX): an exit is reflected exactly when L1's
//! VMCS12 controls would have caused it on real hardware (SDM vol. 3C 26.1-26.2, "Instructions
//! that cause VM exits" conditionally and unconditionally), including the I/O and MSR bitmaps
//! and the CR0/CR4 guest/host masks. Everything else is L0's: exits caused by nvmx's own
//! controls (external interrupts, NMIs, the preemption timer, EPT faults on L0's EPT, I/O
//! and MSR accesses L1 lets through) are handled by nvmx and L2 is resumed.
//!
//! Reference reading: KVM's nested_vmx_l1_wants_exit / nested_vmx_l0_wants_exit
//! (arch/x86/kvm/vmx/nested.c).

use super::controls::{primary, secondary};
use super::exit::{reason, CrAccess, IoQualification};
use super::field_table as f;
use super::vmcs12::Vmcs12;
use super::vmx_insn::InsnInfo;

const CR0_TS: u64 = 1 << 3;

/// The exit to decide on.
#[derive(Clone, Copy, Debug)]
pub struct L2Exit {
    /// Basic exit reason.
    pub reason: u16,
    /// Exit qualification.
    pub qualification: u64,
    /// VM-exit interruption information (exceptions and NMIs).
    pub intr_info: u64,
    /// VM-exit interruption error code.
    pub error_code: u64,
    /// RCX (the MSR index of RDMSR/WRMSR).
    pub rcx: u64,
    /// VM-exit instruction information (VMREAD/VMWRITE: the register with the encoding).
    pub insn_info: u32,
}

/// Whether L1 asked for this exit. `gpr` reads L2's general-purpose registers (MOV to CR
/// sources); `read_byte` reads L1 guest-physical memory (the bitmaps) — an unreadable bitmap
/// byte counts as set, as on KVM (the access exits to L1).
pub fn l1_wants(v: &Vmcs12, e: &L2Exit, gpr: impl Fn(u8) -> u64, read_byte: impl Fn(u64) -> Option<u8>) -> bool {
    let prim = v.get(f::CPU_BASED_VM_EXEC_CONTROL);
    let sec = v.secondary_controls();
    match e.reason {
        reason::EXCEPTION_NMI => {
            // A hardware NMI is the host's (L0's NMI exiting); NMIs meant for L1 are
            // virtual and turned into exits by nvmx itself.
            if (e.intr_info >> 8) & 7 == 2 {
                return false;
            }
            exception_wanted(v, e.intr_info & 0xff, e.error_code)
        }
        // Host interrupts are L0's: L2 runs with L0's external-interrupt exiting, and an
        // interrupt for L1 is turned into an exit by nvmx itself (rust/nested.rs).
        reason::EXTERNAL_INTERRUPT => false,
        reason::TRIPLE_FAULT => true,
        reason::INTERRUPT_WINDOW => prim & primary::INTR_WINDOW_EXITING != 0,
        reason::NMI_WINDOW => prim & primary::NMI_WINDOW_EXITING != 0,
        reason::HLT => prim & primary::HLT_EXITING != 0,
        reason::INVLPG => prim & primary::INVLPG_EXITING != 0,
        reason::RDPMC => prim & primary::RDPMC_EXITING != 0,
        reason::RDTSC => prim & primary::RDTSC_EXITING != 0,
        reason::RDTSCP => prim & primary::RDTSC_EXITING != 0,
        reason::CR_ACCESS => cr_wanted(v, prim, CrAccess::decode(e.qualification), gpr),
        reason::DR_ACCESS => prim & primary::MOV_DR_EXITING != 0,
        reason::IO_INSTRUCTION => io_wanted(v, prim, IoQualification(e.qualification), read_byte),
        reason::RDMSR | reason::WRMSR => {
            msr_wanted(v, prim, e.rcx as u32, e.reason == reason::WRMSR, read_byte)
        }
        reason::MWAIT => prim & primary::MWAIT_EXITING != 0,
        reason::MONITOR => prim & primary::MONITOR_EXITING != 0,
        reason::PAUSE => prim & primary::PAUSE_EXITING != 0,
        reason::WBINVD => sec & secondary::WBINVD_EXITING != 0,
        // Only L1's TPR shadow and APIC-access page cause these (nested_apic.rs).
        reason::TPR_BELOW_THRESHOLD | reason::APIC_ACCESS => true,
        // GDTR/IDTR and LDTR/TR accesses (46, 47).
        46 | 47 => sec & secondary::DESC_TABLE_EXITING != 0,
        // EPT faults are L0's EPT or EPT02's: nested EPT decides which are L1's after its
        // own walk of EPT12 (nested_ept.rs). The preemption timer is L0's (not offered).
        reason::EPT_VIOLATION | reason::EPT_MISCONFIG | reason::PREEMPTION_TIMER => false,
        reason::VMREAD | reason::VMWRITE => vmcs_access_wanted(v, sec, e, gpr, read_byte),
        // CPUID, GETSEC, INVD, XSETBV, VMCALL and the other VMX instructions exit unconditionally
        // (SDM 26.1.2); so does everything nvmx has no rule for, as on KVM.
        _ => true,
    }
}

/// L2's VMREAD/VMWRITE (SDM 26.1.3 and 25.6.15): with L1's "VMCS shadowing" off, always
/// L1's; with it on, L1's if the encoding has a bit set above bit 14 or its bit in the
/// VMREAD/VMWRITE bitmap (bits 14:0 index it) is 1 — else it acts on the shadow VMCS, which
/// nvmx emulates (rust/nested.rs).
fn vmcs_access_wanted(v: &Vmcs12, sec: u32, e: &L2Exit, gpr: impl Fn(u8) -> u64, read_byte: impl Fn(u64) -> Option<u8>) -> bool {
    if sec & secondary::SHADOW_VMCS == 0 {
        return true;
    }
    let encoding = gpr(InsnInfo(e.insn_info).reg2());
    if encoding >> 15 != 0 {
        return true;
    }
    let bitmap = if e.reason == reason::VMREAD { v.get(f::VMREAD_BITMAP) } else { v.get(f::VMWRITE_BITMAP) };
    read_byte(bitmap + encoding / 8).is_none_or(|b| b & (1 << (encoding % 8)) != 0)
}

/// The exception bitmap, with the page-fault error-code mask/match rule (SDM 26.2): for #PF,
/// bit 14 applies as is when (error code & mask) == match, inverted otherwise.
pub fn exception_wanted(v: &Vmcs12, vector: u64, error_code: u64) -> bool {
    let bitmap = v.get(f::EXCEPTION_BITMAP);
    let bit = bitmap & (1 << (vector & 31)) != 0;
    if vector == 14 {
        let matches = error_code & u64::from(v.get(f::PAGE_FAULT_ERROR_CODE_MASK)) == u64::from(v.get(f::PAGE_FAULT_ERROR_CODE_MATCH));
        return bit == matches;
    }
    bit
}

fn cr_wanted(v: &Vmcs12, prim: u32, a: CrAccess, gpr: impl Fn(u8) -> u64) -> bool {
    let mask0 = v.get(f::CR0_GUEST_HOST_MASK);
    let shadow0 = v.get(f::CR0_READ_SHADOW);
    match a {
        CrAccess::MovTo { cr: 0, gpr: r } => (gpr(r) ^ shadow0) & mask0 != 0,
        CrAccess::MovTo { cr: 4, gpr: r } => {
            (gpr(r) ^ v.get(f::CR4_READ_SHADOW)) & v.get(f::CR4_GUEST_HOST_MASK) != 0
        }
        // No CR3-target values are offered (IA32_VMX_MISC[24:16] = 0).
        CrAccess::MovTo { cr: 3, .. } => prim & primary::CR3_LOAD_EXITING != 0,
        CrAccess::MovTo { cr: 8, .. } => prim & primary::CR8_LOAD_EXITING != 0,
        CrAccess::MovFrom { cr: 3, .. } => prim & primary::CR3_STORE_EXITING != 0,
        CrAccess::MovFrom { cr: 8, .. } => prim & primary::CR8_STORE_EXITING != 0,
        CrAccess::Clts => mask0 & CR0_TS != 0 && shadow0 & CR0_TS != 0,
        // LMSW changes PE, MP, EM, TS; it cannot clear PE.
        CrAccess::Lmsw(src) => {
            let val = src as u64;
            (mask0 & 0xe & (val ^ shadow0)) != 0 || (mask0 & 1 != 0 && shadow0 & 1 == 0 && val & 1 != 0)
        }
        _ => true,
    }
}

/// I/O: unconditional I/O exiting, or the bitmaps (A: ports 0-7FFFH, B: 8000H-FFFFH); an
/// access whose bytes wrap past FFFFH exits (SDM 26.1.3).
pub fn io_wanted(v: &Vmcs12, prim: u32, io: IoQualification, read_byte: impl Fn(u64) -> Option<u8>) -> bool {
    if prim & primary::USE_IO_BITMAPS == 0 {
        return prim & primary::UNCOND_IO_EXITING != 0;
    }
    let first = io.port() as u32;
    (first..first + io.size() as u32).any(|p| {
        if p > 0xffff {
            return true;
        }
        let base = if p < 0x8000 { v.get(f::IO_BITMAP_A) } else { v.get(f::IO_BITMAP_B) };
        let i = (p & 0x7fff) as u64;
        read_byte(base + i / 8).is_none_or(|b| b & (1 << (i % 8)) != 0)
    })
}

/// RDMSR/WRMSR: without MSR bitmaps every access exits; with them, the read or write bitmap
/// for low (0-1FFFH) and high (C0000000H-C0001FFFH) MSRs; any other MSR exits (SDM 26.1.3).
pub fn msr_wanted(v: &Vmcs12, prim: u32, msr: u32, write: bool, read_byte: impl Fn(u64) -> Option<u8>) -> bool {
    if prim & primary::USE_MSR_BITMAPS == 0 {
        return true;
    }
    let (half, i) = match msr {
        0..=0x1fff => (0, msr),
        0xc000_0000..=0xc000_1fff => (1024, msr - 0xc000_0000),
        _ => return true,
    };
    let offset = half + if write { 2048 } else { 0 } + (i / 8) as u64;
    read_byte(v.get(f::MSR_BITMAP) + offset).is_none_or(|b| b & (1 << (i % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::super::controls::pin;
    use super::*;
    use std::collections::HashMap;

    fn exit(reason: u16, q: u64) -> L2Exit {
        L2Exit { reason, qualification: q, intr_info: 0, error_code: 0, rcx: 0, insn_info: 0 }
    }

    fn vmcs(prim: u32) -> Vmcs12 {
        let mut v = Vmcs12::default();
        v.set(f::CPU_BASED_VM_EXEC_CONTROL, prim);
        v
    }

    const NO_MEM: fn(u64) -> Option<u8> = |_| None;
    const ZERO: fn(u8) -> u64 = |_| 0;

    #[test]
    fn unconditional_exits_go_to_l1() {
        let v = vmcs(0);
        for r in [reason::CPUID, reason::VMCALL, reason::VMCLEAR, reason::VMXON, reason::INVEPT, reason::XSETBV, reason::TRIPLE_FAULT] {
            assert!(l1_wants(&v, &exit(r, 0), ZERO, NO_MEM), "reason {r}");
        }
        for r in [reason::EXTERNAL_INTERRUPT, reason::EPT_VIOLATION, reason::PREEMPTION_TIMER, reason::HLT, reason::INTERRUPT_WINDOW] {
            assert!(!l1_wants(&v, &exit(r, 0), ZERO, NO_MEM), "reason {r}");
        }
        assert!(l1_wants(&vmcs(primary::HLT_EXITING), &exit(reason::HLT, 0), ZERO, NO_MEM));
    }

    #[test]
    fn io_bitmaps_and_unconditional_io() {
        // OUT to port 0x80, 1 byte: qualification port in 31:16.
        let out80 = exit(reason::IO_INSTRUCTION, 0x80 << 16);
        assert!(!l1_wants(&vmcs(0), &out80, ZERO, NO_MEM));
        assert!(l1_wants(&vmcs(primary::UNCOND_IO_EXITING), &out80, ZERO, NO_MEM));
        let mut v = vmcs(primary::USE_IO_BITMAPS | primary::UNCOND_IO_EXITING);
        v.set(f::IO_BITMAP_A, 0x1000);
        v.set(f::IO_BITMAP_B, 0x2000);
        let mem: HashMap<u64, u8> = [(0x1000 + 0x80 / 8, 1u8), (0x2000 + 0x7fff / 8, 0x80)].into_iter().collect();
        let read = |a: u64| Some(*mem.get(&a).unwrap_or(&0));
        // Bitmaps take precedence over unconditional I/O exiting.
        assert!(l1_wants(&v, &out80, ZERO, read));
        assert!(!l1_wants(&v, &exit(reason::IO_INSTRUCTION, 0x81 << 16), ZERO, read));
        // A 4-byte access at 0x7e: bytes 0x7e..0x81 include 0x80.
        assert!(l1_wants(&v, &exit(reason::IO_INSTRUCTION, (0x7e << 16) | 3), ZERO, read));
        assert!(l1_wants(&v, &exit(reason::IO_INSTRUCTION, 0xffff << 16), ZERO, read));
        // Wrapping past 0xffff exits.
        assert!(l1_wants(&v, &exit(reason::IO_INSTRUCTION, (0xfffe << 16) | 3), ZERO, |_| Some(0)));
        // Unreadable bitmap: exit.
        assert!(l1_wants(&v, &exit(reason::IO_INSTRUCTION, 0x10 << 16), ZERO, NO_MEM));
    }

    #[test]
    fn msr_bitmaps() {
        let rd = |msr: u64| L2Exit { rcx: msr, ..exit(reason::RDMSR, 0) };
        let wr = |msr: u64| L2Exit { rcx: msr, ..exit(reason::WRMSR, 0) };
        assert!(l1_wants(&vmcs(0), &rd(0x10), ZERO, NO_MEM), "no bitmaps: every MSR exits");
        let mut v = vmcs(primary::USE_MSR_BITMAPS);
        v.set(f::MSR_BITMAP, 0x3000);
        // Write bitmap for low MSRs: bit for 0x10 (TSC) set; read bitmap for high MSR
        // 0xc0000080 (EFER) set.
        let mem: HashMap<u64, u8> = [(0x3000 + 2048 + 2, 1u8), (0x3000 + 1024 + 0x10, 1)].into_iter().collect();
        let read = |a: u64| Some(*mem.get(&a).unwrap_or(&0));
        assert!(!l1_wants(&v, &rd(0x10), ZERO, read));
        assert!(l1_wants(&v, &wr(0x10), ZERO, read));
        assert!(l1_wants(&v, &rd(0xc000_0080), ZERO, read));
        assert!(!l1_wants(&v, &wr(0xc000_0080), ZERO, read));
        assert!(l1_wants(&v, &rd(0x4000_0000), ZERO, read), "outside both ranges");
    }

    #[test]
    fn cr_masks_and_shadows() {
        let mut v = vmcs(primary::CR3_LOAD_EXITING);
        v.set(f::CR0_GUEST_HOST_MASK, CR0_TS | 1);
        v.set(f::CR0_READ_SHADOW, CR0_TS | 1);
        // mov %rax, %cr0 with RAX = shadow: nothing L1 owns changes.
        let mov_cr0 = exit(reason::CR_ACCESS, 0);
        assert!(!l1_wants(&v, &mov_cr0, |_| CR0_TS | 1 | 0x8000_0000, NO_MEM));
        assert!(l1_wants(&v, &mov_cr0, |_| 1, NO_MEM));
        assert!(l1_wants(&v, &exit(reason::CR_ACCESS, 3), ZERO, NO_MEM), "mov to cr3");
        assert!(!l1_wants(&v, &exit(reason::CR_ACCESS, 3 | (1 << 4)), ZERO, NO_MEM), "mov from cr3");
        assert!(l1_wants(&v, &exit(reason::CR_ACCESS, 2 << 4), ZERO, NO_MEM), "clts with TS owned and set");
        // LMSW setting PE when the shadow has it clear and L1 owns it.
        v.set(f::CR0_READ_SHADOW, CR0_TS);
        assert!(l1_wants(&v, &exit(reason::CR_ACCESS, (3 << 4) | ((CR0_TS | 1) << 16)), ZERO, NO_MEM));
        assert!(!l1_wants(&v, &exit(reason::CR_ACCESS, (3 << 4) | (CR0_TS << 16)), ZERO, NO_MEM));
    }

    #[test]
    fn exceptions_and_page_fault_mask_match() {
        let mut v = vmcs(0);
        v.set(f::EXCEPTION_BITMAP, (1 << 14) | (1 << 6));
        let ex = |vector: u64, code: u64| L2Exit { intr_info: (1 << 31) | (3 << 8) | vector, error_code: code, ..exit(reason::EXCEPTION_NMI, 0) };
        assert!(l1_wants(&v, &ex(6, 0), ZERO, NO_MEM));
        assert!(!l1_wants(&v, &ex(13, 0), ZERO, NO_MEM));
        // #PF: mask 1 (present), match 1: only protection faults are as the bitmap says.
        v.set(f::PAGE_FAULT_ERROR_CODE_MASK, 1);
        v.set(f::PAGE_FAULT_ERROR_CODE_MATCH, 1);
        assert!(l1_wants(&v, &ex(14, 3), ZERO, NO_MEM));
        assert!(!l1_wants(&v, &ex(14, 2), ZERO, NO_MEM));
        // A hardware NMI is the host's even when L1 has NMI exiting.
        let nmi = L2Exit { intr_info: (1 << 31) | (2 << 8) | 2, ..exit(reason::EXCEPTION_NMI, 0) };
        v.set(f::PIN_BASED_VM_EXEC_CONTROL, pin::NMI_EXITING);
        assert!(!l1_wants(&v, &nmi, ZERO, NO_MEM));
    }

    #[test]
    fn vmread_vmwrite_under_vmcs_shadowing() {
        let mut v = Vmcs12::default();
        v.set(f::CPU_BASED_VM_EXEC_CONTROL, primary::SECONDARY_CONTROLS);
        v.set(f::VMREAD_BITMAP, 0x5000);
        v.set(f::VMWRITE_BITMAP, 0x6000);
        // The encoding in RAX (reg2 = 0); GUEST_RIP (0x681e) has its bit set in the VMWRITE
        // bitmap only.
        let rd = L2Exit { insn_info: 0, ..exit(reason::VMREAD, 0) };
        let wr = L2Exit { insn_info: 0, ..exit(reason::VMWRITE, 0) };
        let bitmaps = |a: u64| Some(if a == 0x6000 + 0x681e / 8 { 1 << (0x681e % 8) } else { 0 });
        let rip = |_: u8| 0x681e;
        assert!(l1_wants(&v, &rd, rip, bitmaps), "shadowing off: always L1's");
        v.set(f::SECONDARY_VM_EXEC_CONTROL, secondary::SHADOW_VMCS);
        assert!(!l1_wants(&v, &rd, rip, bitmaps), "bit clear: the shadow VMCS");
        assert!(l1_wants(&v, &wr, rip, bitmaps), "bit set: L1's");
        assert!(l1_wants(&v, &rd, |_| 1 << 15, bitmaps), "an encoding above bit 14");
        assert!(l1_wants(&v, &rd, rip, |_| None), "an unreadable bitmap");
        // The register comes from bits 31:28 of the instruction information.
        let rd_rbx = L2Exit { insn_info: 3 << 28, ..rd };
        assert!(!l1_wants(&v, &rd_rbx, |r| if r == 3 { 0x681e } else { 1 << 20 }, bitmaps));
    }
}
