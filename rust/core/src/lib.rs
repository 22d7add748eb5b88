// SPDX-License-Identifier: GPL-2.0
//! nvmx's pure VMX logic.
//!
//! Everything here is a function of values (MSR contents, CPUID words, VMCS field encodings):
//! no `kernel::` imports, no `unsafe`, no hardware access. The module compiles these files in
//! through `rust/vmx_core.rs`; `cargo test` runs them on any machine. Modules refer to one
//! another through `super::` so that they mean the same thing in both crates.
#![cfg_attr(not(test), no_std)]

pub mod arch_state;
pub mod basic;
pub mod bits;
pub mod controls;
pub mod cpuid;
pub mod debug_regs;
pub mod ept;
pub mod exception;
pub mod exit;
pub mod field;
pub mod field_table;
pub mod host;
pub mod insn;
pub mod ioeventfd;
pub mod irq_routing;
pub mod kvm_nested_state;
pub mod kvm_vmcs12_layout;
pub mod lapic;
pub mod mce;
pub mod mtrr;
pub mod memslot;
pub mod mitigation;
pub mod guest_cr;
pub mod guest_debug;
pub mod guest_msr;
pub mod msr;
pub mod nested_apic;
pub mod nested_caps;
pub mod nested_ept;
pub mod nested_entry;
pub mod nested_exit;
pub mod nested_msr_list;
pub mod nested_switch;
pub mod paging;
pub mod segment;
pub mod shadow_vmcs;
pub mod vcpu_events;
pub mod vm_clock;
pub mod vmcs12;
pub mod vmx_insn;
pub mod xsave;
