// SPDX-License-Identifier: GPL-2.0
//! The current VMCS of the running vCPU: field reads and writes, and the same as the core's
//! [`Vmcs`] so that the core's state transfers (rust/core/src/arch_state.rs) drive the
//! hardware VMCS exactly as they drive a VMCS12.
//!
//! Every caller is inside an IRQs-off region in VMX root operation with this vCPU's VMCS
//! current (rust/run.rs loads VMCS01 or VMCS02 before the first access and clears it after
//! the last). A failed VMWRITE is returned to the caller ([`w`]) or, through [`CurrentVmcs`],
//! kept and reported by [`CurrentVmcs::finish`], never dropped.

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;

use crate::vmx_core::arch_state::Vmcs;
use crate::vmx_core::field::Field;
use crate::vmx_core::field_table as f;
use crate::vmx_core::nested_switch::ExitInfo;
use crate::vmx_ops;

/// VMREADs and VMWRITEs that failed since the module was loaded.
static FAILURES: AtomicU64 = AtomicU64::new(0);

/// How many VMX field accesses failed since load (reported at unload).
pub(crate) fn failures() -> u64 {
    FAILURES.load(Ordering::Relaxed)
}

#[cold]
fn count_failure(insn: &str, field: Field) {
    if FAILURES.fetch_add(1, Ordering::Relaxed) == 0 {
        pr_warn!("{insn} of VMCS field {:#x} failed (an nvmx bug; later failures are only counted)\n", field.encoding());
    }
}

/// VMWRITE of `value` into `field`; Err(the encoding) if the CPU refused it.
#[inline(always)]
pub(crate) fn w(field: Field, value: u64) -> Result<(), u32> {
    // SAFETY: called only inside the IRQs-off region with the vCPU's VMCS current (above).
    unsafe { vmx_ops::vmwrite(field.encoding(), value) }.map_err(|_| field.encoding())
}

/// VMWRITE of `value` into `field` where a refusal has no one to go to: counted and logged.
#[inline]
pub(crate) fn set(field: Field, value: u64) {
    if w(field, value).is_err() {
        count_failure("VMWRITE", field);
    }
}

/// VMREAD of `field`; a refused read is counted and logged, and reads as 0.
#[inline(always)]
pub(crate) fn r(field: Field) -> u64 {
    // SAFETY: as for `w`.
    unsafe { vmx_ops::vmread(field.encoding()) }.unwrap_or_else(|_| {
        count_failure("VMREAD", field);
        0
    })
}

/// The current VMCS as the core's transfers see it; remembers the first VMWRITE the CPU
/// refused.
pub(crate) struct CurrentVmcs {
    failed: Option<u32>,
}

impl CurrentVmcs {
    pub(crate) fn new() -> Self {
        CurrentVmcs { failed: None }
    }

    #[cold]
    #[inline(never)]
    fn refused(&mut self, field: Field) {
        self.failed.get_or_insert(field.encoding());
    }

    /// Ok, or the encoding of the first field the CPU refused.
    pub(crate) fn finish(self) -> Result<(), u32> {
        self.failed.map_or(Ok(()), Err)
    }
}

impl Vmcs for CurrentVmcs {
    #[inline(always)]
    fn read(&self, field: Field) -> u64 {
        r(field)
    }

    #[inline(always)]
    fn write(&mut self, field: Field, value: u64) {
        if w(field, value).is_err() {
            self.refused(field);
        }
    }
}

/// The exit-information fields of the exit that just happened (VMCS02's, when L2 ran).
pub(crate) fn exit_info_from_vmcs() -> ExitInfo {
    ExitInfo {
        reason: r(f::VM_EXIT_REASON),
        qualification: r(f::EXIT_QUALIFICATION),
        intr_info: r(f::VM_EXIT_INTR_INFO),
        intr_error: r(f::VM_EXIT_INTR_ERROR_CODE),
        idt_info: r(f::IDT_VECTORING_INFO_FIELD),
        idt_error: r(f::IDT_VECTORING_ERROR_CODE),
        insn_len: r(f::VM_EXIT_INSTRUCTION_LEN),
        insn_info: r(f::VMX_INSTRUCTION_INFO),
        linear: r(f::GUEST_LINEAR_ADDRESS),
        gpa: r(f::GUEST_PHYSICAL_ADDRESS),
    }
}

