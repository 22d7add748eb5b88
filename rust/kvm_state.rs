// SPDX-License-Identifier: GPL-2.0
//! `struct kvm_regs` and `struct kvm_sregs` ↔ the vCPU's [`ArchState`]: the only place the
//! KVM ABI's register structs meet the state (the vCPU file's KVM_GET/SET_REGS and _SREGS).
//!
//! Segments convert as KVM's vmx_get_segment/vmx_set_segment do: a segment that is
//! unusable or not present is stored as just "unusable" (VMCS access-rights bit 16), and
//! reads back with every attribute 0 but `unusable`.

use crate::uapi::{KvmDtable, KvmRegs, KvmSegment, KvmSregs, KvmVcpuEvents};
use crate::vmx_core::vcpu_events::VcpuEvents;
use crate::vmx_core::arch_state::{ArchState, DescriptorTable, Seg, Segment};
use crate::vmx_core::segment::Attributes;

/// KVM_GET_REGS.
pub(crate) fn regs_to_kvm(a: &ArchState) -> KvmRegs {
    let g = &a.gprs;
    KvmRegs {
        rax: g[0], rcx: g[1], rdx: g[2], rbx: g[3], rsp: g[4], rbp: g[5], rsi: g[6], rdi: g[7],
        r8: g[8], r9: g[9], r10: g[10], r11: g[11], r12: g[12], r13: g[13], r14: g[14], r15: g[15],
        rip: a.rip,
        rflags: a.rflags,
    }
}

/// KVM_SET_REGS.
pub(crate) fn regs_from_kvm(a: &mut ArchState, r: &KvmRegs) {
    a.gprs = [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi,
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
    ];
    a.rip = r.rip;
    a.rflags = r.rflags;
}

fn segment_to_kvm(s: &Segment) -> KvmSegment {
    let a = Attributes::from_ar(s.ar);
    KvmSegment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: a.type_,
        present: a.present,
        dpl: a.dpl,
        db: a.db,
        s: a.s,
        l: a.l,
        g: a.g,
        avl: a.avl,
        unusable: a.unusable,
        padding: 0,
    }
}

fn segment_from_kvm(k: &KvmSegment) -> Segment {
    let a = Attributes {
        type_: k.type_,
        s: k.s,
        dpl: k.dpl,
        present: k.present,
        avl: k.avl,
        l: k.l,
        db: k.db,
        g: k.g,
        unusable: k.unusable | (k.present == 0) as u8,
    };
    Segment { selector: k.selector, base: k.base, limit: k.limit, ar: a.to_ar() }
}

fn dtable_to_kvm(d: &DescriptorTable) -> KvmDtable {
    KvmDtable { base: d.base, limit: d.limit, padding: [0; 3] }
}

/// KVM_GET_SREGS: `cr8` and `apic_base` are the local APIC's (not ArchState).
pub(crate) fn sregs_to_kvm(a: &ArchState, cr8: u64, apic_base: u64) -> KvmSregs {
    let seg = |s: Seg| segment_to_kvm(a.seg(s));
    KvmSregs {
        cs: seg(Seg::Cs),
        ds: seg(Seg::Ds),
        es: seg(Seg::Es),
        fs: seg(Seg::Fs),
        gs: seg(Seg::Gs),
        ss: seg(Seg::Ss),
        tr: seg(Seg::Tr),
        ldt: seg(Seg::Ldtr),
        gdt: dtable_to_kvm(&a.gdtr),
        idt: dtable_to_kvm(&a.idtr),
        cr0: a.cr0,
        cr2: a.cr2,
        cr3: a.cr3,
        cr4: a.cr4,
        cr8,
        efer: a.efer,
        apic_base,
        interrupt_bitmap: [0; 4],
    }
}

/// KVM_SET_SREGS (checked by the caller): the state with `s`'s segments, descriptor tables
/// and control registers.
pub(crate) fn arch_with_sregs(a: &ArchState, s: &KvmSregs) -> ArchState {
    let mut n = *a;
    for (g, k) in [
        (Seg::Es, &s.es), (Seg::Cs, &s.cs), (Seg::Ss, &s.ss), (Seg::Ds, &s.ds),
        (Seg::Fs, &s.fs), (Seg::Gs, &s.gs), (Seg::Ldtr, &s.ldt), (Seg::Tr, &s.tr),
    ] {
        n.segs[g as usize] = segment_from_kvm(k);
    }
    n.gdtr = DescriptorTable { base: s.gdt.base, limit: s.gdt.limit };
    n.idtr = DescriptorTable { base: s.idt.base, limit: s.idt.limit };
    (n.cr0, n.cr2, n.cr3, n.cr4, n.efer) = (s.cr0, s.cr2, s.cr3, s.cr4, s.efer);
    n
}

pub(crate) fn events_to_kvm(e: &VcpuEvents) -> KvmVcpuEvents {
    let mut k = KvmVcpuEvents::default();
    k.exception.injected = e.exception_injected as u8;
    k.exception.nr = e.exception_nr;
    k.exception.has_error_code = e.exception_has_error_code as u8;
    k.exception.pending = e.exception_pending as u8;
    k.exception.error_code = e.exception_error_code;
    k.interrupt.injected = e.interrupt_injected as u8;
    k.interrupt.nr = e.interrupt_nr;
    k.interrupt.soft = e.interrupt_soft as u8;
    k.interrupt.shadow = e.interrupt_shadow;
    k.nmi.injected = e.nmi_injected as u8;
    k.nmi.pending = e.nmi_pending;
    k.nmi.masked = e.nmi_masked as u8;
    k.sipi_vector = e.sipi_vector;
    k.flags = e.flags;
    k.smi.smm = e.smm as u8;
    k.smi.pending = e.smi_pending as u8;
    k.smi.smm_inside_nmi = e.smm_inside_nmi as u8;
    k.smi.latched_init = e.latched_init as u8;
    k.triple_fault.pending = e.triple_fault_pending as u8;
    k.exception_has_payload = e.exception_has_payload as u8;
    k.exception_payload = e.exception_payload;
    k
}

/// KVM reads the byte fields as booleans (non-zero is true).
pub(crate) fn events_from_kvm(k: &KvmVcpuEvents) -> VcpuEvents {
    VcpuEvents {
        exception_injected: k.exception.injected != 0,
        exception_nr: k.exception.nr,
        exception_has_error_code: k.exception.has_error_code != 0,
        exception_pending: k.exception.pending != 0,
        exception_error_code: k.exception.error_code,
        interrupt_injected: k.interrupt.injected != 0,
        interrupt_nr: k.interrupt.nr,
        interrupt_soft: k.interrupt.soft != 0,
        interrupt_shadow: k.interrupt.shadow,
        nmi_injected: k.nmi.injected != 0,
        nmi_pending: k.nmi.pending,
        nmi_masked: k.nmi.masked != 0,
        sipi_vector: k.sipi_vector,
        flags: k.flags,
        smm: k.smi.smm != 0,
        smi_pending: k.smi.pending != 0,
        smm_inside_nmi: k.smi.smm_inside_nmi != 0,
        latched_init: k.smi.latched_init != 0,
        triple_fault_pending: k.triple_fault.pending != 0,
        exception_has_payload: k.exception_has_payload != 0,
        exception_payload: k.exception_payload,
    }
}
