// SPDX-License-Identifier: GPL-2.0
//! The pure VMX core (`rust/core`, also the host-tested `nvmx-core` crate), compiled into
//! the module. The list mirrors `rust/core/src/lib.rs`; a file missing here fails the build
//! of any module that refers to it through `super::`.

#[path = "core/src/basic.rs"]
pub mod basic;
#[path = "core/src/bits.rs"]
pub mod bits;
#[path = "core/src/controls.rs"]
pub mod controls;
#[path = "core/src/cpuid.rs"]
pub mod cpuid;
#[path = "core/src/ept.rs"]
pub mod ept;
#[path = "core/src/exit.rs"]
pub mod exit;
#[path = "core/src/field.rs"]
pub mod field;
#[path = "core/src/field_table.rs"]
pub mod field_table;
#[path = "core/src/host.rs"]
pub mod host;
#[path = "core/src/insn.rs"]
pub mod insn;
#[path = "core/src/lapic.rs"]
pub mod lapic;
#[path = "core/src/memslot.rs"]
pub mod memslot;
#[path = "core/src/guest_cr.rs"]
pub mod guest_cr;
#[path = "core/src/guest_msr.rs"]
pub mod guest_msr;
#[path = "core/src/msr.rs"]
pub mod msr;
#[path = "core/src/nested_caps.rs"]
pub mod nested_caps;
#[path = "core/src/nested_entry.rs"]
pub mod nested_entry;
#[path = "core/src/paging.rs"]
pub mod paging;
#[path = "core/src/segment.rs"]
pub mod segment;
#[path = "core/src/vmcs12.rs"]
pub mod vmcs12;
#[path = "core/src/vmx_insn.rs"]
pub mod vmx_insn;
