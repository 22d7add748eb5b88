// SPDX-License-Identifier: GPL-2.0
//! GSI routing with the split irqchip (Documentation/virt/kvm/api.rst, KVM_SET_GSI_ROUTING,
//! KVM_IRQ_LINE, KVM_CAP_SPLIT_IRQCHIP), as KVM does it (virt/kvm/irqchip.c,
//! arch/x86/kvm/irq.c).
//!
//! The I/O APIC is the VMM's: it programs one MSI route per pin, and raises a pin with
//! KVM_IRQ_LINE, which delivers the pin's MSI to the local APICs. With the split irqchip
//! only MSI routes exist (KVM refuses irqchip routes then, and nvmx has no other kind). A
//! level-triggered interrupt needs its EOI seen by the VMM's I/O APIC (to lower Remote IRR
//! and deliver again if the line is still high): a guest EOI of a vector that a
//! level-triggered route of one of the first `pins` GSIs (KVM_CAP_SPLIT_IRQCHIP's argument)
//! sends to this vCPU exits to userspace with KVM_EXIT_IOAPIC_EOI (KVM's
//! kvm_scan_ioapic_routes and kvm_ioapic_send_eoi).

use super::lapic::{self, Delivery};

/// `KVM_MAX_IRQ_ROUTES`: GSIs and routes per VM.
pub const MAX_ROUTES: u32 = 4096;
/// `KVM_IRQ_ROUTING_IRQCHIP`.
pub const TYPE_IRQCHIP: u32 = 1;
/// `KVM_IRQ_ROUTING_MSI`.
pub const TYPE_MSI: u32 = 2;
/// `KVM_MSI_VALID_DEVID`: the one flag an MSI route may carry (the device ID is unused on
/// x86).
pub const MSI_VALID_DEVID: u32 = 1;

/// One `struct kvm_irq_routing_entry` as userspace gave it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteEntry {
    /// `gsi`.
    pub gsi: u32,
    /// `type` (`KVM_IRQ_ROUTING_*`).
    pub kind: u32,
    /// `flags`.
    pub flags: u32,
    /// `u.msi.address_lo`.
    pub address_lo: u32,
    /// `u.msi.address_hi`.
    pub address_hi: u32,
    /// `u.msi.data`.
    pub data: u32,
}

/// A GSI's MSI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct MsiRoute {
    /// The GSI.
    pub gsi: u32,
    /// MSI address, low 32 bits.
    pub address_lo: u32,
    /// MSI address, high 32 bits (no extended destination ID: KVM_CAP_X2APIC_API is not
    /// offered, so KVM ignores them too).
    pub address_hi: u32,
    /// MSI data.
    pub data: u32,
}

/// Why KVM_SET_GSI_ROUTING refuses a table (EINVAL in every case).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// A GSI of KVM_MAX_IRQ_ROUTES or more.
    Gsi,
    /// A flag the route's type does not take.
    Flags,
    /// Not an MSI route (irqchip routes do not exist with the split irqchip).
    Type,
    /// A second route for a GSI that has a non-irqchip one.
    TwoRoutes,
}

/// One entry of a new table.
pub const fn route(e: &RouteEntry) -> Result<MsiRoute, RouteError> {
    if e.gsi >= MAX_ROUTES {
        return Err(RouteError::Gsi);
    }
    let allowed = if e.kind == TYPE_MSI { MSI_VALID_DEVID } else { 0 };
    if e.flags & !allowed != 0 {
        return Err(RouteError::Flags);
    }
    if e.kind != TYPE_MSI {
        return Err(RouteError::Type);
    }
    Ok(MsiRoute { gsi: e.gsi, address_lo: e.address_lo, address_hi: e.address_hi, data: e.data })
}

/// A new table, sorted by GSI, from the routes of its entries: each GSI once.
pub fn check_table(sorted: &[MsiRoute]) -> Result<(), RouteError> {
    if sorted.windows(2).any(|w| w[0].gsi == w[1].gsi) {
        return Err(RouteError::TwoRoutes);
    }
    Ok(())
}

/// The route of `gsi` in a table sorted by GSI.
pub fn find(sorted: &[MsiRoute], gsi: u32) -> Option<&MsiRoute> {
    sorted.binary_search_by_key(&gsi, |r| r.gsi).ok().map(|i| &sorted[i])
}

/// MSI data bit 15: level-triggered (SDM 11.11.2).
const MSI_LEVEL: u32 = 1 << 15;

impl MsiRoute {
    /// The interrupt this route delivers (None: a delivery mode the local APIC does not
    /// take, which KVM drops too).
    pub fn msi(&self) -> Option<lapic::Msi> {
        lapic::msi(self.address_lo, self.data)
    }

    /// The vector whose EOI the VMM's I/O APIC must see: a level-triggered fixed or
    /// lowest-priority interrupt of one of the I/O APIC's `pins`.
    pub fn eoi_vector(&self, pins: u32) -> Option<u8> {
        if self.gsi >= pins || self.data & MSI_LEVEL == 0 {
            return None;
        }
        match self.msi()?.ipi.delivery {
            Delivery::Fixed(v) => Some(v),
            _ => None,
        }
    }
}

/// The vectors [`MsiRoute::eoi_vector`] gives for a table, as a 256-bit set.
pub fn eoi_vectors(table: &[MsiRoute], pins: u32) -> [u64; 4] {
    let mut set = [0u64; 4];
    for v in table.iter().filter_map(|r| r.eoi_vector(pins)) {
        set[v as usize / 64] |= 1 << (v % 64);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn msi(gsi: u32, dest: u32, data: u32) -> RouteEntry {
        RouteEntry { gsi, kind: TYPE_MSI, flags: 0, address_lo: 0xfee0_0000 | dest << 12, address_hi: 0, data }
    }

    #[test]
    fn kvm_refusals() {
        assert_eq!(route(&msi(MAX_ROUTES, 0, 0x30)), Err(RouteError::Gsi));
        assert!(route(&msi(MAX_ROUTES - 1, 0, 0x30)).is_ok());
        assert!(route(&RouteEntry { flags: MSI_VALID_DEVID, ..msi(1, 0, 0x30) }).is_ok());
        assert_eq!(route(&RouteEntry { flags: 2, ..msi(1, 0, 0x30) }), Err(RouteError::Flags));
        let irqchip = RouteEntry { kind: TYPE_IRQCHIP, ..RouteEntry::default() };
        assert_eq!(route(&irqchip), Err(RouteError::Type), "split irqchip: no irqchip routes");
        assert_eq!(route(&RouteEntry { flags: MSI_VALID_DEVID, ..irqchip }), Err(RouteError::Flags));
        for kind in [0, 3, 4, 5, 6] {
            assert_eq!(route(&RouteEntry { kind, ..RouteEntry::default() }), Err(RouteError::Type), "{kind}");
        }
        let a = route(&msi(4, 0, 0x30)).unwrap();
        let b = route(&msi(4, 1, 0x31)).unwrap();
        assert_eq!(check_table(&[a, b]), Err(RouteError::TwoRoutes));
        let c = route(&msi(5, 1, 0x31)).unwrap();
        assert_eq!(check_table(&[a, c]), Ok(()));
        assert_eq!(find(&[a, c], 5), Some(&c));
        assert_eq!(find(&[a, c], 6), None);
    }

    #[test]
    fn level_routes_of_the_ioapic_pins_want_their_eoi() {
        let level = |gsi, vector: u32| route(&msi(gsi, 0, MSI_LEVEL | vector)).unwrap();
        let table = [
            level(3, 0x33),
            route(&msi(4, 0, 0x34)).unwrap(), // edge
            level(30, 0x3e),                  // beyond the 24 pins: an MSI of a device
            route(&msi(5, 0, MSI_LEVEL | 4 << 8 | 0x35)).unwrap(), // NMI
            level(6, 1 << 8 | 0x36),          // lowest priority
        ];
        assert_eq!(table[0].eoi_vector(24), Some(0x33));
        assert_eq!(table[1].eoi_vector(24), None);
        assert_eq!(table[2].eoi_vector(24), None);
        assert_eq!(table[2].eoi_vector(32), Some(0x3e));
        assert_eq!(table[3].eoi_vector(24), None);
        assert_eq!(table[4].eoi_vector(24), Some(0x36));
        let set = eoi_vectors(&table, 24);
        assert_eq!(set, [1 << 0x33 | 1 << 0x36, 0, 0, 0]);
        let set = eoi_vectors(&table, 32);
        assert_eq!(set, [1 << 0x33 | 1 << 0x36 | 1 << 0x3e, 0, 0, 0]);
    }
}
