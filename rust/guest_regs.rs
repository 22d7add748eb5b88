// SPDX-License-Identifier: GPL-2.0
//! The running guest's registers as the current VMCS holds them inside the region: RIP
//! advance, event injection, GPR access by number (RSP is a VMCS field), the guest's view of
//! CR0/CR4, its paging registers and CPU mode. Used by the exit handlers and by nested VMX's
//! instruction emulation alike.

use crate::vmcs::LoadedVmcs;
use crate::vmx_core::arch_state::EFER_LMA;
use crate::vmx_core::controls::cr0;
use crate::vmx_core::exit::{intr_kind, InterruptionInfo};
use crate::vmx_core::segment::AccessRights;
use crate::vmx_core::field_table as f;
use crate::vmx_core::insn::CpuMode;
use crate::vmx_core::paging::PagingRegs;
use crate::vmx_ops;

pub(crate) const GP_VECTOR: u64 = 13;
pub(crate) const UD_VECTOR: u64 = 6;
/// CR0 bits the guest may not own: NE must stay 1 in VMX operation; CD/NW are kept clear in
/// hardware (KVM's KVM_VM_CR0_ALWAYS_OFF), the guest sees its own values through the shadow.
pub(crate) const CR0_CD: u64 = 1 << 30;
pub(crate) const CR0_NW: u64 = 1 << 29;
pub(crate) const CR0_OWNED: u64 = cr0::NE | CR0_CD | CR0_NW | cr0::PG;

/// Complete the exiting instruction: advance RIP and end any STI / MOV-SS shadow, which
/// covers only the instruction that just retired (SDM 26.3.1.5; KVM's
/// skip_emulated_instruction does the same).
pub(crate) fn skip_instruction(cur: &LoadedVmcs<'_>) {
    advance_rip(cur, u64::from(cur.r(f::VM_EXIT_INSTRUCTION_LEN)));
}

/// Inject a hardware exception at the next entry. Real mode pushes no error code, and
/// VM entry rejects one there (SDM 27.2.1.3), so it is delivered only in protected mode.
pub(crate) fn inject(cur: &LoadedVmcs<'_>, vector: u64, code: Option<u32>) {
    let protected = cur.r(f::GUEST_CR0) & cr0::PE != 0;
    let code = code.filter(|_| protected);
    let info = InterruptionInfo::event(intr_kind::HW_EXCEPTION, vector as u8, code.is_some());
    cur.set(f::VM_ENTRY_INTR_INFO_FIELD, info.0);
    cur.set(f::VM_ENTRY_EXCEPTION_ERROR_CODE, code.unwrap_or(0));
}

/// Guest general-purpose register `n` (x86 number) in the guest loop: RSP lives in the
/// VMCS, the others in `g`.
pub(crate) fn read_reg(cur: &LoadedVmcs<'_>, g: &[u64; 16], n: u8) -> u64 {
    if n & 15 == 4 { cur.r(f::GUEST_RSP) } else { g[(n & 15) as usize] }
}

pub(crate) fn write_reg(cur: &LoadedVmcs<'_>, g: &mut [u64; 16], n: u8, v: u64) {
    if n & 15 == 4 {
        cur.set(f::GUEST_RSP, v);
    } else {
        g[(n & 15) as usize] = v;
    }
}

/// The current guest's paging registers (inside the region).
pub(crate) fn paging_regs(cur: &LoadedVmcs<'_>) -> PagingRegs {
    PagingRegs { cr0: cur.r(f::GUEST_CR0), cr3: cur.r(f::GUEST_CR3), cr4: cur.r(f::GUEST_CR4), efer: cur.r(f::GUEST_IA32_EFER) }
}

/// #PF at linear address `la` for an access nvmx made for the guest (an instruction's
/// memory operand): CR2 is the guest's own while the region runs, so it is set here.
/// The error code says not-present, supervisor, and whether it was a write.
pub(crate) fn inject_page_fault(cur: &LoadedVmcs<'_>, la: u64, write: bool) {
    // SAFETY: CR2 holds the guest's value during the region (rust/run.rs, region()).
    unsafe { vmx_ops::write_cr2(la) };
    inject(cur, 14, Some(if write { 2 } else { 0 }));
}

/// The mode of the guest's code segment.
pub(crate) fn cpu_mode(cur: &LoadedVmcs<'_>) -> CpuMode {
    let cs = AccessRights(cur.r(f::GUEST_CS_AR_BYTES));
    if cur.r(f::GUEST_IA32_EFER) & EFER_LMA != 0 && cs.long_mode() {
        CpuMode::Bits64
    } else if cs.db() {
        CpuMode::Bits32
    } else {
        CpuMode::Bits16
    }
}

/// Move RIP past an instruction of `len` bytes that nvmx completed (see skip_instruction).
pub(crate) fn advance_rip(cur: &LoadedVmcs<'_>, len: u64) {
    cur.set(f::GUEST_RIP, cur.r(f::GUEST_RIP).wrapping_add(len));
    let blocking = cur.r(f::GUEST_INTERRUPTIBILITY_INFO);
    if blocking & 3 != 0 {
        cur.set(f::GUEST_INTERRUPTIBILITY_INFO, blocking & !3);
    }
}

/// The guest's CR0 and CR4 as it sees them (owned bits from the read shadows).
pub(crate) fn guest_cr0(cur: &LoadedVmcs<'_>) -> u64 {
    (cur.r(f::GUEST_CR0) & !CR0_OWNED) | (cur.r(f::CR0_READ_SHADOW) & CR0_OWNED)
}

pub(crate) fn guest_cr4(cur: &LoadedVmcs<'_>) -> u64 {
    let mask = cur.r(f::CR4_GUEST_HOST_MASK);
    (cur.r(f::GUEST_CR4) & !mask) | (cur.r(f::CR4_READ_SHADOW) & mask)
}
