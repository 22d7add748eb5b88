// SPDX-License-Identifier: GPL-2.0
//! Nested VMX for one vCPU: L1's VMX operation, its current VMCS12 (cached here while
//! current, rust/core/src/vmcs12.rs), the emulated VMX instructions, and the two transitions —
//! VM entry into L2 (VMCS12 guest state becomes the vCPU's state and runs on VMCS02) and VM
//! exit to L1 (L2's state and the exit information go into VMCS12, L1 continues with VMCS12's
//! host state).
//!
//! The decisions are the core's (vmx_insn: instruction semantics; nested_entry: SDM 27.2/27.3
//! checks; nested_exit: which L2 exits L1 asked for); this file fetches operands and carries
//! out the effects. Reference reading: KVM's arch/x86/kvm/vmx/nested.c.
//!
//! L2 under L1's EPT runs on EPT02 (rust/nested_ept.rs); L1's VMX-preemption timer runs on the
//! CPU's; MSR-load/store lists are in nested_msr_list; L1's TPR shadow and APIC-access page
//! run on the CPU, its virtualize x2APIC mode here (nested_apic). Not offered to L1 (IA32_VMX_MISC and
//! the secondary controls say so, and entry checks refuse them): activity states other than
//! active (HLT, shutdown, wait-for-SIPI), VMCS shadowing for L1's own use.

use kernel::prelude::*;

use crate::guest_memory::{self, GuestMemory};
use crate::guest_regs;
use crate::vmcs::{CurrentVmcs, LoadedVmcs};
use crate::vmx_core::nested_switch::{self, L0Controls, Vmcs02Pages};
use crate::vcpu_state::VcpuState;
pub(crate) use crate::nested_state::Switch;
use crate::nested_state::L1AtEntry;
pub(crate) use crate::nested_msrs::{available, cpuid_changed, get_msr, is_nested_msr, set_msr, MSR_FEATURE_CONTROL};
pub(crate) use crate::msr_route::vmcs02_tsc_offset;
use crate::vmx_core::controls::{cr0, cr4, exit as exit_ctl};
use crate::vmx_core::exit::{intr_kind, reason, ExitReason, InterruptionInfo};
use crate::vmx_core::field_table as f;
use crate::vmx_core::field::Field;
use crate::vmx_core::segment::AccessRights;
use crate::vmx_core::lapic::ApicError;
use crate::vmx_core::nested_apic::{self, ApicVirt};
use crate::vmx_core::nested_entry::{self, EntryEnv, EntryFailure};
use crate::vmx_core::nested_ept;
use crate::vmx_core::nested_exit::{self, L2Exit};
use crate::vmx_core::nested_msr_list::{self as msr_list, List, MsrEntry};
use crate::msr_route::{self, MsrHome};
use crate::vmx_core::vmcs12::{Vmcs12, LAUNCH_STATE_OFFSET, REGION_BYTES};
use crate::nested_ept::ShadowEpt;
use crate::vmx_core::vmx_insn::{
    rflags_after, InsnInfo, L1Cpu, LaunchState, Operand, Outcome, Place, VmError,
};

const EFER_LMA: u64 = crate::vmx_core::arch_state::EFER_LMA;

pub(crate) use crate::vmx_core::nested_switch::ExitInfo;

pub(crate) use crate::vmcs::exit_info_from_vmcs;

/// Process context, before an IRQs-off region: EPT02 exists and has spare tables when L2
/// runs under L1's EPT (inside the region nothing may allocate).
pub(crate) fn prepare_region(st: &mut VcpuState) -> Result {
    if !st.nested.l2_under_ept() {
        return Ok(());
    }
    if st.nested.shadow_ept.is_none() {
        st.nested.shadow_ept = Some(KBox::new(ShadowEpt::new()?, GFP_KERNEL_ACCOUNT)?);
    }
    if let Some(s) = st.nested.shadow_ept.as_mut() {
        s.top_up()?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Guest memory.

use crate::ept::host_page as l1_page;

fn read_phys_u32(eptp: u64, gpa: u64) -> Option<u32> {
    if gpa & 3 != 0 {
        return None;
    }
    let p = l1_page(eptp, gpa)?;
    // SAFETY: a pinned guest page the live EPT maps; aligned 4-byte read inside it.
    Some(unsafe { (p.add((gpa & 0xfff) as usize) as *const u32).read_volatile() })
}

pub(crate) fn read_phys_byte(eptp: u64, gpa: u64) -> Option<u8> {
    let p = l1_page(eptp, gpa)?;
    // SAFETY: as above, one byte inside the page.
    Some(unsafe { p.add((gpa & 0xfff) as usize).read_volatile() })
}

/// The host pages behind L1's virtual-APIC page and APIC-access page, which the CPU uses
/// while L2 runs (merge_vmcs02).
struct ApicPages {
    virtual_apic: Option<u64>,
    apic_access: Option<u64>,
}

/// Look up the pages `apic` names in L0's EPT: Err(the field) for one that is not guest RAM.
/// The virtual-APIC page is written by the CPU, so it must be writable RAM (a read-only slot
/// or MMIO has none, as for KVM's kvm_vcpu_map) and, those writes bypassing the EPT, it is
/// logged as written here; the APIC-access page is only compared against.
fn apic_pages(apic: &ApicVirt, eptp: u64) -> core::result::Result<ApicPages, Field> {
    let virtual_apic = match apic.virtual_apic {
        Some(gpa) => {
            crate::ept::log_write(eptp, gpa);
            let writable = crate::ept::lookup(eptp, gpa & !0xfff)
                .and_then(|(hpa, rights)| (rights & crate::vmx_core::ept::WRITE != 0).then_some(hpa));
            Some(writable.ok_or(f::VIRTUAL_APIC_PAGE_ADDR)?)
        }
        None => None,
    };
    let apic_access = match apic.apic_access {
        Some(gpa) => Some(crate::ept::translate(eptp, gpa & !0xfff).ok_or(f::APIC_ACCESS_ADDR)?),
        None => None,
    };
    Ok(ApicPages { virtual_apic, apic_access })
}

/// The shadow VMCS12 of the current VMCS12 while L2 runs under VMCS shadowing: its link
/// pointer, if VMCS12 enables shadowing and the pointer is not all ones.
pub(crate) fn shadow_vmcs12_pointer(st: &VcpuState) -> Option<u64> {
    st.nested.vmcs12.as_ref().filter(|_| st.nested.guest_mode)?.shadow_vmcs_link()
}

/// The shadow VMCS12 at `gpa` in L1's memory, as `KVM_GET_NESTED_STATE` saves it.
pub(crate) fn read_shadow_vmcs12(eptp: u64, gpa: u64, out: &mut [u8]) -> bool {
    load_vmcs12(eptp, gpa & !0xfff).map(|v| v.to_region(out)).is_some()
}

/// `KVM_SET_NESTED_STATE`: the shadow VMCS12 back into L1's memory at `gpa` (nvmx keeps no
/// copy of it: L2's VMREAD/VMWRITE act on L1's memory).
pub(crate) fn write_shadow_vmcs12(eptp: u64, gpa: u64, v: &Vmcs12) -> bool {
    if crate::ept::writable_host_page(eptp, gpa & !0xfff).is_none() {
        return false;
    }
    store_vmcs12(eptp, gpa, v);
    true
}

/// Load a VMCS12 from L1's region at `gpa` (4 KiB aligned: VMPTRLD checked it).
fn load_vmcs12(eptp: u64, gpa: u64) -> Option<KBox<Vmcs12>> {
    let p = l1_page(eptp, gpa)?;
    // SAFETY: a whole pinned guest page; L1 may write it concurrently (its own doing: the SDM
    // forbids touching a current VMCS), which tears only its own values.
    let region = unsafe { core::slice::from_raw_parts(p as *const u8, REGION_BYTES) };
    KBox::new(Vmcs12::from_region(region), GFP_ATOMIC).ok()
}

fn store_vmcs12(eptp: u64, gpa: u64, v: &Vmcs12) {
    if let Some(p) = crate::ept::writable_host_page(eptp, gpa) {
        // SAFETY: as in load_vmcs12, writing.
        let region = unsafe { core::slice::from_raw_parts_mut(p, REGION_BYTES) };
        v.to_region(region);
    }
}

/// Write the cached VMCS12, which was current at `addr`, back to L1's memory and forget it.
fn write_back(st: &mut VcpuState, eptp: u64, addr: Option<u64>) {
    if let (Some(addr), Some(v)) = (addr, st.nested.vmcs12.take()) {
        store_vmcs12(eptp, addr, &v);
    }
}

// ---------------------------------------------------------------------------------------
// VMX instructions executed by L1 (inside the IRQs-off region, VMCS01 current).

/// L1's processor state as the permission checks read it.
fn l1_cpu(cur: &LoadedVmcs<'_>) -> L1Cpu {
    let cs = AccessRights(cur.r(f::GUEST_CS_AR_BYTES));
    L1Cpu {
        cr0: guest_regs::guest_cr0(cur),
        cr4: guest_regs::guest_cr4(cur),
        v8086: cur.r(f::GUEST_RFLAGS) & crate::vmx_core::arch_state::RFLAGS_VM != 0,
        lma: cur.r(f::GUEST_IA32_EFER) & EFER_LMA != 0,
        cs_l: cs.long_mode(),
        cpl: AccessRights(cur.r(f::GUEST_SS_AR_BYTES)).dpl(),
    }
}

/// Carry out an outcome that ends the instruction.
fn finish(cur: &LoadedVmcs<'_>, st: &mut VcpuState, o: Outcome) {
    match o {
        Outcome::Ud => guest_regs::inject(cur, guest_regs::UD_VECTOR, None),
        Outcome::Gp => guest_regs::inject(cur, guest_regs::GP_VECTOR, Some(0)),
        _ => {
            if let Outcome::FailValid(e) = o {
                if let Some(v) = st.nested.vmcs12.as_mut() {
                    v.set(f::VM_INSTRUCTION_ERROR, e as u32);
                }
            }
            cur.set(f::GUEST_RFLAGS, rflags_after(cur.r(f::GUEST_RFLAGS), o));
            guest_regs::skip_instruction(cur);
        }
    }
}

/// An operand's linear address (or register), from the instruction information.
fn operand(cur: &LoadedVmcs<'_>, g: &[u64; 16], info: InsnInfo, q: u64) -> Place {
    let bits64 = cur.r(f::GUEST_IA32_EFER) & EFER_LMA != 0 && AccessRights(cur.r(f::GUEST_CS_AR_BYTES)).long_mode();
    let seg_base = match info.segment() {
        4 => cur.r(f::GUEST_FS_BASE),
        5 => cur.r(f::GUEST_GS_BASE),
        _ if bits64 => 0,
        0 => cur.r(f::GUEST_ES_BASE),
        1 => cur.r(f::GUEST_CS_BASE),
        2 => cur.r(f::GUEST_SS_BASE),
        _ => cur.r(f::GUEST_DS_BASE),
    };
    // The displacement is sign-extended to the address size in the qualification.
    info.operand(q, |n| guest_regs::read_reg(cur, g, n), seg_base, bits64)
}

/// Read `buf.len()` bytes at linear `la` of L1; on a translation failure L1 gets #PF.
fn read_linear(cur: &LoadedVmcs<'_>, eptp: u64, la: u64, buf: &mut [u8]) -> bool {
    let ok = guest_memory::copy_guest(&guest_regs::paging_regs(cur), GuestMemory::Ept(eptp), la, buf, false).is_ok();
    if !ok {
        guest_regs::inject_page_fault(cur, la, false);
    }
    ok
}

fn write_linear(cur: &LoadedVmcs<'_>, eptp: u64, la: u64, buf: &mut [u8]) -> bool {
    let ok = guest_memory::copy_guest(&guest_regs::paging_regs(cur), GuestMemory::Ept(eptp), la, buf, true).is_ok();
    if !ok {
        guest_regs::inject_page_fault(cur, la, true);
    }
    ok
}

/// The 128-bit descriptor of INVEPT/INVVPID (a memory operand). Err: the outcome for a
/// register operand (#UD), or `None` when reading it injected #PF.
fn descriptor(cur: &LoadedVmcs<'_>, g: &[u64; 16], eptp: u64, info: InsnInfo, q: u64) -> core::result::Result<[u8; 16], Option<Outcome>> {
    match operand(cur, g, info, q) {
        Place::Reg(_) => Err(Some(Outcome::Ud)),
        Place::Mem(la) => {
            let mut d = [0u8; 16];
            if read_linear(cur, eptp, la, &mut d) { Ok(d) } else { Err(None) }
        }
    }
}

/// A 64-bit memory operand (VMXON, VMCLEAR, VMPTRLD). None: #UD or #PF already injected.
fn mem_u64(cur: &LoadedVmcs<'_>, g: &[u64; 16], eptp: u64, info: InsnInfo, q: u64) -> Option<u64> {
    match operand(cur, g, info, q) {
        Place::Reg(_) => {
            guest_regs::inject(cur, guest_regs::UD_VECTOR, None);
            None
        }
        Place::Mem(la) => {
            let mut b = [0u8; 8];
            read_linear(cur, eptp, la, &mut b).then(|| u64::from_le_bytes(b))
        }
    }
}

/// What an L1 VMX-instruction exit leads to.
pub(crate) enum Handled {
    /// Done; L1 resumes.
    Resume,
    /// A VM entry passed its checks: the region switches to VMCS02 (`st.nested.switch`).
    Switch,
    /// Userspace must look (KVM_EXIT_INTERNAL_ERROR with this data).
    Unsupported(u64),
}

/// L2's VMREAD/VMWRITE that L1's "VMCS shadowing" and bitmaps let through (SDM 26.1.3,
/// 31.3 "VMREAD"/"VMWRITE" in VMX non-root operation): they act on the shadow VMCS that
/// VMCS12's link pointer names, in L1's memory — VMfailInvalid if the link pointer is all
/// ones. The instruction runs as L1's would against that VMCS made current for it (the same
/// checks, operands and outcomes), the shadow VMCS written back after a VMWRITE. A memory
/// operand of an L2 under L1's EPT is not emulated (an emulation error to userspace).
pub(crate) fn l2_vmcs_access(cur: &LoadedVmcs<'_>, st: &mut VcpuState, g: &mut [u64; 16], eptp: u64, basic: u16, q: u64) -> Handled {
    let link = st.nested.vmcs12.as_ref().map_or(u64::MAX, |v| v.get(f::VMCS_LINK_POINTER));
    if link == u64::MAX {
        finish(cur, st, Outcome::FailInvalid);
        return Handled::Resume;
    }
    if !InsnInfo(cur.r(f::VMX_INSTRUCTION_INFO)).is_register() && st.nested.l2_eptp12().is_some() {
        return Handled::Unsupported(link);
    }
    let Some(shadow) = load_vmcs12(eptp, link) else { return Handled::Unsupported(link) };
    let own = core::mem::replace(&mut st.nested.vmcs12, Some(shadow));
    let current = core::mem::replace(&mut st.nested.l1.current, Some(link));
    let handled = vmx_instruction(cur, st, g, eptp, basic, q);
    st.nested.l1.current = current;
    if let Some(shadow) = core::mem::replace(&mut st.nested.vmcs12, own) {
        if basic == reason::VMWRITE {
            store_vmcs12(eptp, link, &shadow);
        }
    }
    handled
}

/// Emulate the VMX instruction L1 executed (exit reason `basic`).
pub(crate) fn vmx_instruction(cur: &LoadedVmcs<'_>, st: &mut VcpuState, g: &mut [u64; 16], eptp: u64, basic: u16, q: u64) -> Handled {
    let cpu = l1_cpu(cur);
    let offered = st.nested.offered(st.features.maxphyaddr);
    let info = InsnInfo(cur.r(f::VMX_INSTRUCTION_INFO));
    let outcome = match basic {
        reason::VMCALL => {
            // In VMX root operation VMCALL fails (SDM 32.3 "VMCALL", error 1); outside VMX
            // operation there is no hypercall interface: #UD.
            if st.nested.l1.vmxon.is_some() {
                if let Some(o) = st.nested.l1.permission(&cpu) {
                    o
                } else if st.nested.l1.current.is_some() {
                    Outcome::FailValid(VmError::VmcallInRoot)
                } else {
                    Outcome::FailInvalid
                }
            } else {
                Outcome::Ud
            }
        }
        reason::VMXON => {
            // #UD checks come before the operand is read (SDM order).
            if st.nested.l1.vmxon.is_none() && (cpu.cr4 & cr4::VMXE == 0 || cpu.cr0 & cr0::PE == 0) {
                Outcome::Ud
            } else {
                let Some(addr) = mem_u64(cur, g, eptp, info, q) else { return Handled::Resume };
                st.nested.l1.vmxon(&cpu, &offered, Operand::Memory(addr), |a| read_phys_u32(eptp, a).unwrap_or(0))
            }
        }
        reason::VMXOFF => {
            let current = st.nested.l1.current;
            let o = st.nested.l1.vmxoff(&cpu);
            if o == Outcome::Succeed {
                write_back(st, eptp, current);
            }
            o
        }
        reason::VMCLEAR => {
            if let Some(o) = st.nested.l1.permission(&cpu) {
                o
            } else {
                let Some(addr) = mem_u64(cur, g, eptp, info, q) else { return Handled::Resume };
                let was_current = st.nested.l1.current == Some(addr);
                let o = st.nested.l1.vmclear(&cpu, &offered, Operand::Memory(addr));
                if o == Outcome::Succeed {
                    if was_current {
                        if let Some(mut v) = st.nested.vmcs12.take() {
                            v.launched = false;
                            store_vmcs12(eptp, addr, &v);
                        }
                    } else if let Some(p) = crate::ept::writable_host_page(eptp, addr) {
                        // The launch state lives in the region.
                        // SAFETY: a pinned guest page; 4 aligned bytes inside it.
                        unsafe { (p.add(LAUNCH_STATE_OFFSET) as *mut u32).write_volatile(0) };
                    }
                }
                o
            }
        }
        reason::VMPTRLD => {
            if let Some(o) = st.nested.l1.permission(&cpu) {
                o
            } else {
                let Some(addr) = mem_u64(cur, g, eptp, info, q) else { return Handled::Resume };
                let old = st.nested.l1.current;
                let o = st.nested.l1.vmptrld(&cpu, &offered, Operand::Memory(addr), |a| read_phys_u32(eptp, a).unwrap_or(0));
                if o == Outcome::Succeed && old != Some(addr) {
                    // Back to the old one's region; the new one is loaded from its own.
                    write_back(st, eptp, old);
                    match load_vmcs12(eptp, addr) {
                        Some(v) => st.nested.vmcs12 = Some(v),
                        None => {
                            st.nested.l1.current = None;
                            return Handled::Unsupported(addr);
                        }
                    }
                }
                o
            }
        }
        reason::VMPTRST => match st.nested.l1.vmptrst(&cpu, Operand::Memory(0)) {
            Err(o) => o,
            Ok(ptr) => match operand(cur, g, info, q) {
                Place::Reg(_) => Outcome::Ud,
                Place::Mem(la) => {
                    if !write_linear(cur, eptp, la, &mut ptr.to_le_bytes()) {
                        return Handled::Resume;
                    }
                    Outcome::Succeed
                }
            },
        },
        reason::VMREAD => {
            let encoding = guest_regs::read_reg(cur, g, info.reg2());
            let has = |fl| st.nested.vmcs12.as_ref().is_some_and(|v| v.read(fl).is_some());
            match st.nested.l1.vmread(&cpu, encoding, has) {
                Err(o) => o,
                Ok(field) => {
                    let value = st.nested.vmcs12.as_ref().and_then(|v| v.read(field)).unwrap_or(0);
                    match operand(cur, g, info, q) {
                        Place::Reg(n) => {
                            let v = if cpu.lma && cpu.cs_l { value } else { value & 0xffff_ffff };
                            guest_regs::write_reg(cur, g, n, v);
                        }
                        Place::Mem(la) => {
                            let bytes = value.to_le_bytes();
                            let n = if cpu.lma && cpu.cs_l { 8 } else { 4 };
                            let mut b = [0u8; 8];
                            b[..n].copy_from_slice(&bytes[..n]);
                            if !write_linear(cur, eptp, la, &mut b[..n]) {
                                return Handled::Resume;
                            }
                        }
                    }
                    Outcome::Succeed
                }
            }
        }
        reason::VMWRITE => {
            let encoding = guest_regs::read_reg(cur, g, info.reg2());
            let has = |fl| st.nested.vmcs12.as_ref().is_some_and(|v| v.read(fl).is_some());
            match st.nested.l1.vmwrite(&cpu, &offered, encoding, has) {
                Err(o) => o,
                Ok(field) => {
                    let value = match operand(cur, g, info, q) {
                        Place::Reg(n) => guest_regs::read_reg(cur, g, n),
                        Place::Mem(la) => {
                            let n = if cpu.lma && cpu.cs_l { 8 } else { 4 };
                            let mut b = [0u8; 8];
                            if !read_linear(cur, eptp, la, &mut b[..n]) {
                                return Handled::Resume;
                            }
                            u64::from_le_bytes(b)
                        }
                    };
                    if let Some(v) = st.nested.vmcs12.as_mut() {
                        let _ = v.write(field, value);
                    }
                    Outcome::Succeed
                }
            }
        }
        reason::VMLAUNCH | reason::VMRESUME => {
            let launch = basic == reason::VMLAUNCH;
            let state = match st.nested.vmcs12.as_ref() {
                Some(v) if v.launched => LaunchState::Launched,
                _ => LaunchState::Clear,
            };
            let mov_ss = cur.r(f::GUEST_INTERRUPTIBILITY_INFO) & 2 != 0;
            let shadow = st.nested.vmcs12.as_ref().is_some_and(|v| v.revision >> 31 != 0);
            match st.nested.l1.vmlaunch_vmresume(&cpu, launch, state, mov_ss, shadow) {
                Some(o) => o,
                None => return vm_entry(cur, st, eptp, launch),
            }
        }
        reason::INVEPT => {
            let kind = guest_regs::read_reg(cur, g, info.reg2());
            // Permission and type first; then the 128-bit descriptor (SDM 30.3 "INVEPT").
            match st.nested.l1.invept(&cpu, &offered, kind) {
                Outcome::Succeed => match descriptor(cur, g, eptp, info, q) {
                    Err(Some(o)) => o,
                    Err(None) => return Handled::Resume,
                    Ok(d) => {
                        let target = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
                        if kind == 1 && !nested_ept::eptp_valid(target, st.nested.caps.ept_vpid, st.features.maxphyaddr) {
                            Outcome::FailValid(VmError::InvalidInveptInvvpidOperand)
                        } else {
                            // EPT02 caches EPT12 for one EPTP: any invalidation drops it all.
                            if let Some(s) = st.nested.shadow_ept.as_mut() {
                                s.zap();
                            }
                            Outcome::Succeed
                        }
                    }
                },
                o => o,
            }
        }
        reason::INVVPID => {
            let kind = guest_regs::read_reg(cur, g, info.reg2());
            // Permission and type come first; then the 128-bit descriptor.
            match st.nested.l1.invvpid(&cpu, &offered, kind, 1, 0) {
                Outcome::Succeed => match descriptor(cur, g, eptp, info, q) {
                    Err(Some(o)) => o,
                    Err(None) => return Handled::Resume,
                    Ok(d) => {
                        let vpid = u16::from_le_bytes([d[0], d[1]]);
                        let linear = u64::from_le_bytes([d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]]);
                        // L2 runs without a VPID of its own on VMCS02 (every entry and exit
                        // flushes its translations), so a valid INVVPID has nothing left to do.
                        st.nested.l1.invvpid(&cpu, &offered, kind, vpid, linear)
                    }
                },
                o => o,
            }
        }
        // VMFUNC is not offered (IA32_VMX_VMFUNC = 0): #UD.
        _ => Outcome::Ud,
    };
    finish(cur, st, outcome);
    Handled::Resume
}

/// VMLAUNCH/VMRESUME past the instruction checks: the SDM 27.2-27.3 checks, then either
/// VMfailValid(7/8), an entry-failure exit to L1, or the switch to L2.
fn vm_entry(cur: &LoadedVmcs<'_>, st: &mut VcpuState, eptp: u64, launch: bool) -> Handled {
    let env = EntryEnv { maxphyaddr: st.features.maxphyaddr, l1_lma: cur.r(f::GUEST_IA32_EFER) & EFER_LMA != 0 };
    let Some(v) = st.nested.vmcs12.as_mut() else {
        finish(cur, st, Outcome::FailInvalid);
        return Handled::Resume;
    };
    let checked = nested_entry::check_changed(v, &mut st.nested.entry_proved, &st.nested.caps, &env, |a| read_phys_u32(eptp, a));
    let v = &**v;
    match checked {
        Err(EntryFailure::Controls(x)) => {
            report_failure(st, EntryFailure::Controls(x));
            finish(cur, st, Outcome::FailValid(VmError::EntryInvalidControls));
            Handled::Resume
        }
        Err(EntryFailure::HostState(x)) => {
            report_failure(st, EntryFailure::HostState(x));
            finish(cur, st, Outcome::FailValid(VmError::EntryInvalidHostState));
            Handled::Resume
        }
        Err(EntryFailure::GuestState(x, qual)) => {
            report_failure(st, EntryFailure::GuestState(x, qual));
            // SDM 27.8: a VM exit with bit 31 of the reason set; the host state is loaded.
            st.nested.switch = Some(Switch::Exit(ExitInfo {
                reason: ExitReason::entry_failure(reason::INVALID_GUEST_STATE).0,
                qualification: qual,
                ..ExitInfo::default()
            }));
            st.nested.l1_at_entry = None;
            Handled::Switch
        }
        Ok(()) => {
            // The CPU runs L1's APIC virtualization on L1's own pages (merge_vmcs02): a page
            // that is not guest RAM cannot be given to it. KVM exits to userspace with an
            // emulation error then (nested_get_vmcs12_pages); so does nvmx, L1 still at its
            // VMLAUNCH/VMRESUME.
            if let Err(field) = apic_pages(&ApicVirt::of(v), eptp) {
                if crate::shim::printk_ratelimit() {
                    pr_info!("nested VM entry: field {:#x} = {:#x} is not guest RAM\n", field.encoding(), v.read(field).unwrap_or(0));
                }
                return Handled::Unsupported(field.encoding() as u64);
            }
            st.nested.switch = Some(Switch::Enter { launch, insn_len: cur.r(f::VM_EXIT_INSTRUCTION_LEN) });
            Handled::Switch
        }
    }
}

fn report_failure(st: &mut VcpuState, e: EntryFailure) {
    st.nested.last_failure = Some(e);
    if crate::shim::printk_ratelimit() {
        let x = e.failed();
        pr_info!(
            "nested VM entry failed: SDM {}: field {:#x} = {:#x}, expected {}\n",
            x.section,
            x.field.encoding(),
            x.value,
            x.rule
        );
    }
}

// ---------------------------------------------------------------------------------------
// Transitions (between read-back of one VMCS and the loading of the other).

/// Carry out `st.nested.switch` on the vCPU state. The state was just read back from the VMCS
/// that ran.
pub(crate) fn apply_switch(st: &mut VcpuState, eptp: u64, home: MsrHome) {
    let Some(s) = st.nested.switch.take() else { return };
    match s {
        Switch::Enter { launch, insn_len } => {
            enter_l2(st, launch, insn_len);
            // SDM 27.4: L2's MSRs from the VM-entry MSR-load list, after its state; a failure
            // is a VM-entry failure exit whose qualification numbers the entry (27.8).
            match msr_list(st, eptp, List::EntryLoad, home) {
                Ok(()) => {
                    st.stats.nested_entries += 1;
                    // Every entry loads the timer from VMCS12 (SDM 27.7.4 / 26.7.4).
                    let timer = st.nested.vmcs12.as_ref().and_then(|v| v.preemption_timer());
                    let rate = st.nested.l1_timer_rate();
                    st.nested.l1_timer_deadline =
                        timer.map(|t| crate::vmx_ops::rdtsc().saturating_add(u64::from(t).checked_shl(rate).unwrap_or(u64::MAX)));
                }
                Err(n) => {
                    st.stats.l2_exits_reflected += 1;
                    let info = ExitInfo {
                        reason: ExitReason::entry_failure(reason::MSR_LOADING).0,
                        qualification: u64::from(n),
                        ..ExitInfo::default()
                    };
                    exit_to_l1(st, &info, eptp, home);
                }
            }
        }
        Switch::Exit(info) => {
            st.stats.l2_exits_reflected += 1;
            exit_to_l1(st, &info, eptp, home);
            nested_switch::block_nmis_after_nmi_exit(&info, &mut st.arch);
        }
        Switch::EntryVmFail(err) => {
            // Back to L1 as it was at VMLAUNCH/VMRESUME, which fails with the CPU's number.
            if let Some(l1) = st.nested.l1_at_entry.take() {
                st.arch = nested_switch::l1_after_entry_vmfail(&l1.state, &st.arch);
            }
            st.nested.guest_mode = false;
            st.arch.event = None;
            if let Some(v) = st.nested.vmcs12.as_mut() {
                v.launched = false;
                v.set(f::VM_INSTRUCTION_ERROR, err);
            }
            st.arch.rflags = rflags_after(st.arch.rflags, Outcome::FailValid(VmError::EntryInvalidControls));
            st.flushed_for = None;
        }
    }
}

/// VM entry (SDM 27.3.2-27.3.4, 27.6): VMCS12's guest state becomes the vCPU's
/// (nested_switch::load_l2_entry_state).
fn enter_l2(st: &mut VcpuState, launch: bool, insn_len: u32) {
    let Some(v) = st.nested.vmcs12.as_mut() else { return };
    // L1 resumes after VMLAUNCH/VMRESUME if the CPU refuses VMCS02.
    let mut l1 = st.arch;
    l1.rip = l1.rip.wrapping_add(u64::from(insn_len));
    st.nested.l1_at_entry = Some(L1AtEntry { launch, state: l1 });
    nested_switch::load_l2_entry_state(v, &mut st.arch);
    if launch {
        v.launched = true;
    }
    st.nested.guest_mode = true;
    // L1 and L2 share the vCPU's VPID on VMCS01 only; L2's own translations never outlive an
    // entry or exit (VMCS02 has no VPID). L1's CR3 changes without a MOV at the exit: flush.
    st.flushed_for = None;
}

/// VM exit to L1 (SDM 28.2-28.5): L2's state and the exit information into VMCS12, then
/// VMCS12's host state becomes the vCPU's. An entry failure (bit 31 of the reason) saves no
/// guest state: either nvmx's checks failed (L2 never became the vCPU's state) or the CPU
/// refused VMCS02 at its first entry; a VMLAUNCH then leaves the VMCS clear.
fn exit_to_l1(st: &mut VcpuState, info: &ExitInfo, eptp: u64, home: MsrHome) {
    let entry_failed = info.entry_failed();
    let at_entry = st.nested.l1_at_entry.take();
    let Some(mut v) = st.nested.vmcs12.take() else { return };
    if entry_failed {
        if at_entry.is_some_and(|a| a.launch) {
            v.launched = false;
        }
    } else {
        nested_switch::save_l2(&st.arch, &mut v);
        // SDM 28.3.3: with "save VMX-preemption timer value", what is left of L1's timer.
        if v.get(f::VM_EXIT_CONTROLS) & exit_ctl::SAVE_PREEMPTION_TIMER != 0 {
            let left = st.nested.l1_timer_deadline.map_or(0, |d| d.saturating_sub(crate::vmx_ops::rdtsc()));
            v.set(f::VMX_PREEMPTION_TIMER_VALUE, u32::try_from(left >> st.nested.l1_timer_rate()).unwrap_or(u32::MAX));
        }
    }
    st.nested.l1_timer_deadline = None;
    nested_switch::write_exit_info(&mut v, info);
    st.nested.vmcs12 = Some(v);
    // SDM 28.4: L2's MSRs into the VM-exit MSR-store list, after its state is saved.
    if !entry_failed && msr_list(st, eptp, List::ExitStore, home).is_err() {
        vmx_abort(st, eptp, msr_list::abort::SAVING_GUEST_MSRS);
    }
    load_l1_host_state(st, eptp, home);
}

/// The end of every VM exit to L1: VMCS12's host state becomes L1's (SDM 28.5), then L1's
/// MSRs from the VM-exit MSR-load list (28.6; entry failures too, 27.8).
fn load_l1_host_state(st: &mut VcpuState, eptp: u64, home: MsrHome) {
    if let Some(v) = st.nested.vmcs12.as_ref() {
        nested_switch::load_host_state(v, &mut st.arch);
    }
    st.nested.guest_mode = false;
    st.flushed_for = None;
    if msr_list(st, eptp, List::ExitLoad, home).is_err() {
        vmx_abort(st, eptp, msr_list::abort::LOADING_HOST_MSRS);
    }
}

/// `KVM_SET_NESTED_STATE` in guest mode: whether VMCS12 `v` (not current yet) passes what
/// a VM entry checks — controls, host state, guest state (SDM 27.2-27.3; KVM's
/// nested_vmx_check_restored_vmcs12) — for L1 in IA-32e mode as its exit controls say, and
/// has its APIC-virtualization pages in guest RAM.
pub(crate) fn restored_entry_valid(st: &VcpuState, v: &mut Vmcs12, eptp: u64) -> bool {
    let env = EntryEnv {
        maxphyaddr: st.features.maxphyaddr,
        l1_lma: v.get(f::VM_EXIT_CONTROLS) & exit_ctl::HOST_ADDR_SPACE_SIZE != 0,
    };
    let mut proved = None;
    nested_entry::check_changed(v, &mut proved, &st.nested.caps, &env, |a| read_phys_u32(eptp, a)).is_ok()
        && apic_pages(&ApicVirt::of(v), eptp).is_ok()
}

/// `KVM_SET_NESTED_STATE` in guest mode, after [`restored_entry_valid`]: L2 becomes the
/// vCPU's state as an entry loads it from VMCS12's guest area, the GPRs but RSP kept (the
/// VMM's own, KVM_SET_REGS). The event the VMM restored stays the one to inject, unless the
/// entry was still pending (`run_pending`): then it is VMCS12's, as at VMLAUNCH/VMRESUME.
/// L1's VMX-preemption timer runs to `timer_deadline` (L1's TSC >> the timer's rate, KVM's
/// unit) if the state had one,
/// else from VMCS12's value. L1's state at the entry is not part of the state: a VMfail
/// from the CPU at L2's first entry is then L2's triple fault for L1.
pub(crate) fn enter_restored(st: &mut VcpuState, run_pending: bool, timer_deadline: Option<u64>) {
    let Some(v) = st.nested.vmcs12.as_ref() else { return };
    let event = st.arch.event;
    nested_switch::load_l2_entry_state(v, &mut st.arch);
    if !run_pending {
        st.arch.event = event;
    }
    let timer = v.preemption_timer();
    let rate = st.nested.l1_timer_rate();
    st.nested.l1_timer_deadline = timer.map(|t| match timer_deadline {
        Some(d) => d.checked_shl(rate).unwrap_or(u64::MAX).wrapping_sub(st.tsc_offset),
        None => crate::vmx_ops::rdtsc().saturating_add(u64::from(t).checked_shl(rate).unwrap_or(u64::MAX)),
    });
    st.nested.guest_mode = true;
    st.nested.l1_at_entry = None;
    st.flushed_for = None;
}

/// The VMM wrote IA32_FEATURE_CONTROL = 0, as it does when it resets the vCPU: the vCPU
/// leaves VMX operation (KVM's vmx_leave_nested). An L2 that runs is left for L1's host
/// state with no exit information and none of L2's state saved in VMCS12 (KVM's exit
/// reason -1); then L1's VMXON and current VMCS are forgotten, with everything derived from
/// them. The cached VMCS12 is not written back to L1's memory (KVM's free_nested does not
/// either): the VMM is about to give the vCPU its reset state.
pub(crate) fn leave_vmx_operation(st: &mut VcpuState, eptp: u64) {
    if st.nested.guest_mode {
        load_l1_host_state(st, eptp, MsrHome::Process);
    }
    st.nested.forget_vmx_operation();
}

/// One of L1's MSR lists on the vCPU's MSRs (SDM 27.4, 28.4, 28.6; the rules in
/// rust/core/src/nested_msr_list.rs). Err(n): entry n (from 1) failed — the entries before
/// it took effect, as on the CPU.
fn msr_list(st: &mut VcpuState, eptp: u64, list: List, home: MsrHome) -> core::result::Result<(), u32> {
    let (addr_f, count_f) = match list {
        List::EntryLoad => (f::VM_ENTRY_MSR_LOAD_ADDR, f::VM_ENTRY_MSR_LOAD_COUNT),
        List::ExitStore => (f::VM_EXIT_MSR_STORE_ADDR, f::VM_EXIT_MSR_STORE_COUNT),
        List::ExitLoad => (f::VM_EXIT_MSR_LOAD_ADDR, f::VM_EXIT_MSR_LOAD_COUNT),
    };
    let Some(v) = st.nested.vmcs12.as_ref() else { return Ok(()) };
    let (addr, count) = (v.get(addr_f), v.get(count_f) as u32);
    let max = msr_list::max_entries(st.nested.caps.misc);
    for i in 0..count {
        let n = i + 1;
        let gpa = addr.wrapping_add(u64::from(i) * msr_list::ENTRY_BYTES);
        if i >= max || gpa & 0xf != 0 {
            return Err(n);
        }
        // The store list is written (not into a read-only slot: a failure, as on KVM).
        let page = if list == List::ExitStore { crate::ept::writable_host_page(eptp, gpa) } else { l1_page(eptp, gpa) };
        let page = page.ok_or(n)?;
        let offset = (gpa & 0xfff) as usize;
        let mut bytes = [0u8; 16];
        // SAFETY: a pinned page of L1's; 16 bytes at a 16-byte aligned offset stay inside it.
        unsafe { core::ptr::copy_nonoverlapping(page.add(offset), bytes.as_mut_ptr(), 16) };
        let e = MsrEntry::from_bytes(bytes);
        let x2apic = st.apic_base & crate::vmx_core::guest_msr::apic_base::EXTD != 0;
        if !msr_list::allowed(list, &e, x2apic) {
            return Err(n);
        }
        if list == List::ExitStore {
            let value = msr_route::msr_between_vmcs(st, e.index, home).ok_or(n)?;
            // SAFETY: as above; the data field is bytes 15:8 of the entry.
            unsafe { (page.add(offset + 8) as *mut u64).write_volatile(value) };
        } else {
            msr_route::set_msr_between_vmcs(st, e.index, e.value, home).map_err(|()| n)?;
        }
    }
    Ok(())
}

/// SDM 28.7: the abort indicator into L1's current VMCS (as the CPU writes it, into the
/// region), and L1 shut down.
fn vmx_abort(st: &mut VcpuState, eptp: u64, code: u32) {
    if let Some(v) = st.nested.vmcs12.as_mut() {
        v.abort = code;
    }
    if let Some(p) = st.nested.l1.current.and_then(|a| crate::ept::writable_host_page(eptp, a)) {
        // SAFETY: a pinned page of L1's (VMCS regions are 4 KiB aligned); bytes 4..8.
        unsafe { (p.add(4) as *mut u32).write_volatile(code) };
    }
    st.nested.vmx_abort = true;
}

// ---------------------------------------------------------------------------------------
// VMCS02 and L2 exits (inside the region).

/// After write_vmcs wrote L2's state: VMCS02's controls, L0's `l0` with what L1 asked for
/// in VMCS12 merged in (nested_switch::merge_vmcs02). The pages behind L1's APIC virtualization are
/// looked up again at every entry into the region: the slot behind them may have gone since
/// VMLAUNCH (vm_entry checked them then).
pub(crate) fn merge_vmcs02(cur: &LoadedVmcs<'_>, st: &VcpuState, l0: &L0Controls, eptp: u64) -> core::result::Result<(), u32> {
    let Some(v) = st.nested.vmcs12.as_ref() else { return Ok(()) };
    let apic = apic_pages(&ApicVirt::of(v), eptp).map_err(|field| field.encoding())?;
    // Under L1's EPT, L2's memory is EPT02's (rust/nested_ept.rs); otherwise L2 shares L1's
    // guest-physical space and L0's EPT.
    let ept02 = match st.nested.eptp12() {
        Some(_) => Some(st.nested.shadow_ept.as_ref().ok_or(f::EPT_POINTER.encoding())?.eptp),
        None => None,
    };
    let pages = Vmcs02Pages { virtual_apic: apic.virtual_apic, apic_access: apic.apic_access, ept02 };
    let mut vmcs02 = CurrentVmcs::new(cur);
    nested_switch::merge_vmcs02(l0, v, &pages, &mut vmcs02);
    vmcs02.finish()
}

/// The CR0/CR4 an L2 exit reads back (nested_switch::l2_cr_readback).
pub(crate) fn fix_l2_readback(cur: &LoadedVmcs<'_>, st: &mut VcpuState, prev_cr0: u64, prev_cr4: u64, l0_cr0_mask: u64, l0_cr4_mask: u64) {
    let Some(v) = st.nested.vmcs12.as_ref() else { return };
    (st.arch.cr0, st.arch.cr4) =
        nested_switch::l2_cr_readback(v, (st.arch.cr0, st.arch.cr4), (prev_cr0, prev_cr4), cur.r(f::GUEST_CR4), (l0_cr0_mask, l0_cr4_mask));
}

/// Decide an L2 exit (VMCS02 current): `Some(info)` if L1 gets it.
pub(crate) fn reflect(cur: &LoadedVmcs<'_>, st: &VcpuState, g: &[u64; 16], eptp: u64) -> Option<ExitInfo> {
    let v = st.nested.vmcs12.as_ref()?;
    let info = exit_info_from_vmcs(cur);
    if info.entry_failed() {
        // The CPU refused L2's guest state at the first entry after L1's VMLAUNCH/VMRESUME:
        // L1 gets the entry failure. On a later entry (L2 resumed after an exit nvmx or
        // userspace handled) the state is not L1's doing — the CPU saved it, or userspace
        // stuffed it with KVM_SET_SREGS — and no entry failure exists architecturally there:
        // L2 triple-faults to L1, as on KVM (which cannot emulate invalid L2 state either).
        if st.nested.l1_at_entry.is_none() {
            return Some(ExitInfo { reason: reason::TRIPLE_FAULT.into(), ..ExitInfo::default() });
        }
        return Some(info);
    }
    let e = L2Exit {
        reason: ExitReason(info.reason).basic(),
        qualification: info.qualification,
        intr_info: u64::from(info.intr_info),
        error_code: u64::from(info.intr_error),
        rcx: g[1],
        insn_info: cur.r(f::VMX_INSTRUCTION_INFO),
    };
    nested_exit::l1_wants(v, &e, |n| guest_regs::read_reg(cur, g, n), |gpa| read_phys_byte(eptp, gpa)).then_some(info)
}

/// What an RDMSR/WRMSR of L2 that L1 let through did under virtualize x2APIC mode.
pub(crate) enum VirtualMsr {
    /// As an x2APIC register access would end: Ok(the value read; 0 for a write), #GP
    /// (reserved bits written), or Unsupported (the virtual-APIC page is no longer RAM).
    Done(core::result::Result<u64, ApicError>),
    /// WRMSR done; TPR virtualization asks for a TPR-below-threshold exit to L1 (trap-like:
    /// after the instruction).
    BelowThreshold,
}

/// RDMSR/WRMSR `msr` by L2, which L1's MSR bitmap lets through: under L1's virtualize
/// x2APIC mode the TPR MSR is VTPR in L1's virtual-APIC page (SDM 30.5, 30.1.2); `None` for
/// everything else, which L1's own x2APIC answers (as on KVM).
pub(crate) fn x2apic_virtual_msr(st: &VcpuState, eptp: u64, msr: u32, write: Option<u64>) -> Option<VirtualMsr> {
    let v = st.nested.vmcs12.as_ref().filter(|_| st.nested.guest_mode)?;
    let apic = ApicVirt::of(v);
    let gpa = apic.msr_vtpr(msr)?;
    let Some(page) = l1_page(eptp, gpa) else { return Some(VirtualMsr::Done(Err(ApicError::Unsupported))) };
    // SAFETY: a pinned guest page the live EPT maps; VTPR's 8 bytes (offset 80H) inside it,
    // 8-byte aligned.
    let vtpr = unsafe { page.add((gpa & 0xfff) as usize) as *mut u64 };
    Some(match write {
        // SAFETY: as above.
        None => VirtualMsr::Done(Ok(unsafe { vtpr.read_volatile() })),
        Some(value) => match nested_apic::vtpr_msr_write(value) {
            None => VirtualMsr::Done(Err(ApicError::Gp)),
            Some(bytes) => {
                crate::ept::log_write(eptp, gpa);
                // SAFETY: as above.
                unsafe { vtpr.write_volatile(bytes) };
                if apic.below_threshold(bytes as u32) {
                    VirtualMsr::BelowThreshold
                } else {
                    VirtualMsr::Done(Ok(0))
                }
            }
        },
    })
}

/// An exception nvmx raised in L2 at its next entry (an instruction it emulated for L2
/// faulted: [`guest_regs::inject`]) that L1's exception bitmap intercepts becomes the exception exit
/// L1 would have got from the CPU (SDM 26.2, 28.2.2; KVM's nested_vmx_check_exception), and
/// is withdrawn from VMCS02. `requeued` is what was queued before: an event re-injected after
/// an exit during its delivery, which L1 already let through.
pub(crate) fn raised_exception_exit(cur: &LoadedVmcs<'_>, st: &VcpuState, requeued: u32) -> Option<ExitInfo> {
    let v = st.nested.vmcs12.as_ref()?;
    let info = cur.r(f::VM_ENTRY_INTR_INFO_FIELD);
    let event = InterruptionInfo(info);
    if !event.valid() || info == requeued || event.kind() != intr_kind::HW_EXCEPTION {
        return None;
    }
    let code = if event.deliver_error_code() { cur.r(f::VM_ENTRY_EXCEPTION_ERROR_CODE) } else { 0 };
    let vector = u64::from(event.vector());
    if !nested_exit::exception_wanted(v, vector, u64::from(code)) {
        return None;
    }
    cur.w(f::VM_ENTRY_INTR_INFO_FIELD, 0).ok()?;
    // A page fault's qualification is its linear address (guest_regs::inject_page_fault set CR2).
    let qualification = if vector == 14 { crate::vmx_ops::read_cr2() } else { 0 };
    Some(ExitInfo {
        reason: reason::EXCEPTION_NMI.into(),
        qualification,
        intr_info: info,
        intr_error: code,
        ..ExitInfo::default()
    })
}

/// While L2 runs: an NMI for L1, then an interrupt for L1, that L1's controls turn into a
/// VM exit (NMIs come first, SDM 7.12 "Priority Among Simultaneous Exceptions and
/// Interrupts"). The NMI is consumed by its exit (KVM's vmx_check_nested_events).
pub(crate) fn l1_event_exit(st: &mut VcpuState) -> Option<ExitInfo> {
    if st.nmi_pending {
        if let Some(info) = st.nested.vmcs12.as_ref().and_then(|v| nested_switch::l1_nmi_exit(v)) {
            st.nmi_pending = false;
            return Some(info);
        }
    }
    l1_interrupt_exit(st)
}

/// While L2 runs: the pending exception the VMM queued (KVM_CAP_EXCEPTION_PAYLOAD), if
/// L1 intercepts it, is a VM exit to L1 (SDM 26.2; KVM's
/// nested_vmx_inject_exception_vmexit): exception information and error code (bits 15:0,
/// as hardware reports them) as for a fault L2 raised, the payload — not L2's CR2 or DR6, which stay as they are —
/// in the exit qualification. Inside the region: CR2 on the CPU is L2's.
pub(crate) fn pending_exception_exit(st: &mut VcpuState) -> Option<ExitInfo> {
    let p = st.pending_exception?;
    if !st.l1_intercepts_exception(&p) {
        return None;
    }
    st.pending_exception = None;
    let ev = p.event();
    Some(ExitInfo {
        reason: reason::EXCEPTION_NMI.into(),
        qualification: p.exit_qualification(st.arch.debug.dr6, crate::vmx_ops::read_cr2()),
        intr_info: ev.info,
        intr_error: ev.error_code & 0xffff,
        ..ExitInfo::default()
    })
}

/// While L2 runs: a pending triple fault (the VMM's, or a machine check that could not be
/// delivered) is a triple-fault VM exit to L1 (reason 2), as KVM's nested_vmx_triple_fault.
/// Like L1's other events, only once an event being injected into L2 was delivered (the
/// guest loop's `exit_after_delivery`).
pub(crate) fn triple_fault_exit(st: &mut VcpuState) -> Option<ExitInfo> {
    if !st.triple_fault_pending {
        return None;
    }
    st.triple_fault_pending = false;
    Some(ExitInfo { reason: reason::TRIPLE_FAULT.into(), ..ExitInfo::default() })
}

/// Whether [`l1_event_exit`] has an exit to make, without taking the event.
pub(crate) fn l1_event_pending(st: &VcpuState) -> bool {
    let Some(v) = st.nested.vmcs12.as_ref() else { return false };
    let l1 = nested_switch::L1Intercepts::of(v);
    (l1.nmi && st.nmi_pending) || (l1.interrupts && st.pending_interrupt().is_some())
}

/// While L2 runs: an interrupt L1 can take (the VMM's ExtINT, then its local APIC's), with
/// L1's external-interrupt exiting on, is an exit to L1 (reason 1; with "acknowledge
/// interrupt on exit" the vector is taken into the exit interruption information, SDM
/// 28.2.2; unacknowledged, it stays pending for L1).
fn l1_interrupt_exit(st: &mut VcpuState) -> Option<ExitInfo> {
    let v = st.nested.vmcs12.as_ref()?;
    if !nested_switch::L1Intercepts::of(v).interrupts {
        return None;
    }
    let ack = v.get(f::VM_EXIT_CONTROLS) & exit_ctl::ACK_INTR_ON_EXIT != 0;
    let pending = st.pending_interrupt()?;
    if ack {
        st.acknowledge(pending);
    }
    let intr_info = if ack { InterruptionInfo::event(intr_kind::EXTERNAL, pending.vector(), false).0 } else { 0 };
    Some(ExitInfo { reason: reason::EXTERNAL_INTERRUPT.into(), intr_info, ..ExitInfo::default() })
}
