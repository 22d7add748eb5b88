// SPDX-License-Identifier: GPL-2.0
//! The current VMCS of the running vCPU: field reads and writes, and the same as the core's
//! [`Vmcs`] so that the core's state transfers (rust/core/src/arch_state.rs) drive the
//! hardware VMCS exactly as they drive a VMCS12.
//!
//! VMREAD and VMWRITE are methods of [`LoadedVmcs`], a token that only the region
//! (rust/run.rs) makes, right after it loaded VMCS01 or VMCS02, and that borrows the region's
//! IRQs-off guard: code that can read or write a VMCS field is code that runs in VMX root
//! operation with IRQs off and this vCPU's VMCS current, and the compiler says so. A VMREAD
//! or VMWRITE that fails there is a bug in nvmx, never a guest's doing: [`LoadedVmcs::w`]
//! returns the failure to callers that turn it into an exit to userspace, [`CurrentVmcs`]
//! keeps the first one for [`CurrentVmcs::finish`], and everywhere else ([`LoadedVmcs::r`],
//! [`LoadedVmcs::set`]) it is counted and the first one is logged with its field
//! ([`failures`]).
//!
//! The field table types every constant by its width (`TypedField<u16>`, `<u32>`, `<u64>`),
//! so `r` of a 32-bit field returns a `u32` and `w`/`set` take one. The `_raw` forms move a
//! component by encoding as the 64-bit operand; only the table transfers and the shadow-VMCS
//! copies use them.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::interrupt::LocalInterruptDisabled;
use kernel::prelude::*;

use crate::vmx_core::arch_state::Vmcs;
use crate::vmx_core::field::{Field, FieldValue, TypedField};
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

/// Proof that this CPU is in VMX root operation, with IRQs off (the borrowed guard), and that
/// one of this vCPU's VMCSs is current; the only way to VMREAD and VMWRITE.
pub(crate) struct LoadedVmcs<'irq> {
    _irqs_off: PhantomData<&'irq LocalInterruptDisabled>,
}

impl<'irq> LoadedVmcs<'irq> {
    /// # Safety
    ///
    /// The CPU is in VMX root operation and a VMCS region of the caller's vCPU is current,
    /// and stays so (or another of the vCPU's, such as its shadow VMCS while it is copied)
    /// as long as the token lives; the region ends the token before its VMCLEAR.
    #[inline(always)]
    pub(crate) unsafe fn new(_irqs_off: &'irq LocalInterruptDisabled) -> Self {
        LoadedVmcs { _irqs_off: PhantomData }
    }

    /// VMWRITE of `value` into `field`; Err(the encoding) if the CPU refused it.
    #[inline(always)]
    pub(crate) fn w<T: FieldValue>(&self, field: TypedField<T>, value: T) -> Result<(), u32> {
        self.write_raw(field.field(), value.to_operand())
    }

    /// VMWRITE of `value` into `field` where a refusal has no one to go to: counted and
    /// logged.
    #[inline(always)]
    pub(crate) fn set<T: FieldValue>(&self, field: TypedField<T>, value: T) {
        self.set_raw(field.field(), value.to_operand())
    }

    /// VMREAD of `field`, as its width's type; a refused read is counted and logged, and
    /// reads as 0.
    #[inline(always)]
    pub(crate) fn r<T: FieldValue>(&self, field: TypedField<T>) -> T {
        T::from_operand(self.read_raw(field.field()))
    }

    /// VMWRITE of the 64-bit operand `value` into any component (the table transfers and
    /// the shadow-VMCS copies, which move components by encoding).
    #[inline(always)]
    pub(crate) fn write_raw(&self, field: Field, value: u64) -> Result<(), u32> {
        // SAFETY: the token's invariant: VMX root operation with a VMCS current.
        unsafe { vmx_ops::vmwrite(field.encoding(), value) }.map_err(|_| field.encoding())
    }

    /// [`Self::write_raw`] where a refusal is counted and logged.
    #[inline(always)]
    pub(crate) fn set_raw(&self, field: Field, value: u64) {
        if self.write_raw(field, value).is_err() {
            count_failure("VMWRITE", field);
        }
    }

    /// VMREAD of any component as the 64-bit operand (zero-extended); a refused read is
    /// counted and logged, and reads as 0.
    #[inline(always)]
    pub(crate) fn read_raw(&self, field: Field) -> u64 {
        // SAFETY: the token's invariant.
        unsafe { vmx_ops::vmread(field.encoding()) }.unwrap_or_else(|_| {
            count_failure("VMREAD", field);
            0
        })
    }
}

/// The current VMCS as the core's transfers see it; remembers the first VMWRITE the CPU
/// refused.
pub(crate) struct CurrentVmcs<'a, 'irq> {
    loaded: &'a LoadedVmcs<'irq>,
    failed: Option<u32>,
}

impl<'a, 'irq> CurrentVmcs<'a, 'irq> {
    pub(crate) fn new(loaded: &'a LoadedVmcs<'irq>) -> Self {
        CurrentVmcs { loaded, failed: None }
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

impl Vmcs for CurrentVmcs<'_, '_> {
    #[inline(always)]
    fn read(&self, field: Field) -> u64 {
        self.loaded.read_raw(field)
    }

    #[inline(always)]
    fn write(&mut self, field: Field, value: u64) {
        if self.loaded.write_raw(field, value).is_err() {
            self.refused(field);
        }
    }
}

/// The exit-information fields of the exit that just happened (VMCS02's, when L2 ran).
pub(crate) fn exit_info_from_vmcs(cur: &LoadedVmcs<'_>) -> ExitInfo {
    ExitInfo {
        reason: cur.r(f::VM_EXIT_REASON),
        qualification: cur.r(f::EXIT_QUALIFICATION),
        intr_info: cur.r(f::VM_EXIT_INTR_INFO),
        intr_error: cur.r(f::VM_EXIT_INTR_ERROR_CODE),
        idt_info: cur.r(f::IDT_VECTORING_INFO_FIELD),
        idt_error: cur.r(f::IDT_VECTORING_ERROR_CODE),
        insn_len: cur.r(f::VM_EXIT_INSTRUCTION_LEN),
        insn_info: cur.r(f::VMX_INSTRUCTION_INFO),
        linear: cur.r(f::GUEST_LINEAR_ADDRESS),
        gpa: cur.r(f::GUEST_PHYSICAL_ADDRESS),
    }
}
