// SPDX-License-Identifier: GPL-2.0
//! The VM's GSI routes with the split irqchip: KVM_SET_GSI_ROUTING's table, KVM_IRQ_LINE
//! through it, and the EOIs the VMM's I/O APIC must see (the rules:
//! rust/core/src/irq_routing.rs). The table is under a spinlock because the EOI check runs
//! in the IRQs-off region; a new table replaces the old one whole.

use kernel::prelude::*;

use crate::apic::Mailbox;
use crate::vmx_core::irq_routing::{self, MsiRoute};
use crate::vmx_core::lapic::Msi;

/// The routes, sorted by GSI, and what the EOI check needs.
pub(crate) struct IrqRoutes {
    table: KVec<MsiRoute>,
    /// The VMM's I/O APIC pins (KVM_CAP_SPLIT_IRQCHIP's argument): GSIs below it.
    pins: u32,
    /// Vectors of level-triggered routes of those pins (irq_routing::eoi_vectors).
    eoi_vectors: [u64; 4],
}

impl IrqRoutes {
    pub(crate) const fn new() -> Self {
        IrqRoutes { table: KVec::new(), pins: 0, eoi_vectors: [0; 4] }
    }

    /// KVM_CAP_SPLIT_IRQCHIP enabled with `pins` I/O APIC pins.
    pub(crate) fn set_pins(&mut self, pins: u32) {
        self.pins = pins;
        self.eoi_vectors = irq_routing::eoi_vectors(&self.table, pins);
    }

    /// Put `table` (sorted, checked) in place; the old one is returned, to be freed after
    /// the lock is released.
    pub(crate) fn replace(&mut self, table: KVec<MsiRoute>) -> KVec<MsiRoute> {
        self.eoi_vectors = irq_routing::eoi_vectors(&table, self.pins);
        core::mem::replace(&mut self.table, table)
    }

    /// The MSI that GSI `gsi` delivers, if it has a route the local APICs take.
    pub(crate) fn msi(&self, gsi: u32) -> Option<Msi> {
        irq_routing::find(&self.table, gsi)?.msi()
    }

    /// Whether the guest's EOI of `vector` on the vCPU of `me` must exit to userspace
    /// (KVM_EXIT_IOAPIC_EOI): a level-triggered route of an I/O APIC pin sends it there.
    pub(crate) fn wants_eoi(&self, vector: u8, me: &Mailbox) -> bool {
        if self.eoi_vectors[vector as usize / 64] & (1 << (vector % 64)) == 0 {
            return false;
        }
        self.table.iter().any(|r| {
            r.eoi_vector(self.pins) == Some(vector) && r.msi().is_some_and(|m| me.is_target(m.ipi.dest))
        })
    }
}
