// SPDX-License-Identifier: GPL-2.0
//! `KVM_IOEVENTFD` (Documentation/virt/kvm/api.rst 4.59): a guest write to a port or an MMIO
//! address signals an eventfd instead of exiting to userspace — how a VMM's virtio devices
//! learn of new requests without a round trip through KVM_RUN. The rules are KVM's
//! (virt/kvm/eventfd.c): which registrations are valid, which collide, which a deassign
//! removes, and which writes hit.

/// `KVM_IOEVENTFD_FLAG_DATAMATCH`: only a write of `datamatch` hits.
pub const FLAG_DATAMATCH: u32 = 1 << 0;
/// `KVM_IOEVENTFD_FLAG_PIO`: a port, not an MMIO address.
pub const FLAG_PIO: u32 = 1 << 1;
/// `KVM_IOEVENTFD_FLAG_DEASSIGN`.
pub const FLAG_DEASSIGN: u32 = 1 << 2;
/// `KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY`: s390's bus; a valid registration on x86 that no
/// access reaches.
pub const FLAG_VIRTIO_CCW_NOTIFY: u32 = 1 << 3;
/// `KVM_IOEVENTFD_VALID_FLAG_MASK` (five flag numbers, the last internal to KVM).
pub const VALID_FLAGS: u32 = (1 << 5) - 1;
/// Registrations per bus (KVM's NR_IOBUS_DEVS).
pub const MAX_PER_BUS: usize = 1000;

/// Where an ioeventfd listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bus {
    /// Guest-physical addresses outside memory slots.
    Mmio,
    /// I/O ports.
    Pio,
    /// s390's virtio-ccw notifications.
    Ccw,
}

/// One registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ioeventfd {
    /// The bus.
    pub bus: Bus,
    /// Address or port.
    pub addr: u64,
    /// Access length in bytes, 0 for any.
    pub len: u32,
    /// The value a write must have; `None`: any (a wildcard).
    pub datamatch: Option<u64>,
}

/// `struct kvm_ioeventfd` without the fd and padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// `datamatch`.
    pub datamatch: u64,
    /// `addr`.
    pub addr: u64,
    /// `len`.
    pub len: u32,
    /// `flags`.
    pub flags: u32,
}

/// The bus `flags` name.
pub const fn bus(flags: u32) -> Bus {
    if flags & FLAG_PIO != 0 {
        Bus::Pio
    } else if flags & FLAG_VIRTIO_CCW_NOTIFY != 0 {
        Bus::Ccw
    } else {
        Bus::Mmio
    }
}

/// The registration an assign asks for, or `None` (EINVAL): a length of 0, 1, 2, 4 or 8,
/// no range past 2^64, known flags, and no data match without a length.
pub const fn assign(r: &Request) -> Option<Ioeventfd> {
    if !matches!(r.len, 0 | 1 | 2 | 4 | 8) || r.addr.checked_add(r.len as u64).is_none() {
        return None;
    }
    if r.flags & !VALID_FLAGS != 0 || (r.len == 0 && r.flags & FLAG_DATAMATCH != 0) {
        return None;
    }
    let datamatch = if r.flags & FLAG_DATAMATCH != 0 { Some(r.datamatch) } else { None };
    Some(Ioeventfd { bus: bus(r.flags), addr: r.addr, len: r.len, datamatch })
}

impl Ioeventfd {
    /// Whether `self` and `other` could both hit on one write (EEXIST for the second).
    pub const fn collides(&self, other: &Ioeventfd) -> bool {
        if !matches!((self.bus, other.bus), (Bus::Mmio, Bus::Mmio) | (Bus::Pio, Bus::Pio) | (Bus::Ccw, Bus::Ccw)) {
            return false;
        }
        if self.addr != other.addr {
            return false;
        }
        if self.len == 0 || other.len == 0 {
            return true;
        }
        self.len == other.len
            && match (self.datamatch, other.datamatch) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// Whether a deassign request names this registration (with the same eventfd, which
    /// the caller compares): the same bus, address, length and data match.
    pub fn deassigned_by(&self, r: &Request) -> bool {
        let datamatch = (r.flags & FLAG_DATAMATCH != 0).then_some(r.datamatch);
        self.bus == bus(r.flags) && self.addr == r.addr && self.len == r.len && self.datamatch == datamatch
    }

    /// Whether a guest write of `len` bytes of `value` to `addr` on `bus` signals it: the
    /// address exactly, then any length for a length of 0, else the same length and (with a
    /// data match) the same value.
    pub fn hit(&self, bus: Bus, addr: u64, len: u32, value: u64) -> bool {
        if self.bus != bus || self.addr != addr {
            return false;
        }
        if self.len == 0 {
            return true;
        }
        if len != self.len {
            return false;
        }
        let mask = if len >= 8 { u64::MAX } else { (1u64 << (8 * len)) - 1 };
        self.datamatch.is_none_or(|d| d == value & mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(addr: u64, len: u32, flags: u32, datamatch: u64) -> Request {
        Request { datamatch, addr, len, flags }
    }

    #[test]
    fn assign_rules() {
        for len in [0, 1, 2, 4, 8] {
            assert!(assign(&req(0x1000, len, 0, 0)).is_some(), "{len}");
        }
        for len in [3, 5, 16] {
            assert_eq!(assign(&req(0x1000, len, 0, 0)), None, "{len}");
        }
        assert_eq!(assign(&req(u64::MAX - 3, 8, 0, 0)), None, "range past 2^64");
        assert!(assign(&req(u64::MAX - 4, 4, 0, 0)).is_some(), "up to 2^64 - 1");
        assert_eq!(assign(&req(0x1000, 4, 1 << 5, 0)), None, "unknown flag");
        assert_eq!(assign(&req(0x1000, 0, FLAG_DATAMATCH, 0)), None, "data match without length");
        let p = assign(&req(0x60, 1, FLAG_PIO | FLAG_DATAMATCH, 7)).unwrap();
        assert_eq!((p.bus, p.datamatch), (Bus::Pio, Some(7)));
        assert_eq!(assign(&req(0x60, 1, FLAG_VIRTIO_CCW_NOTIFY, 0)).unwrap().bus, Bus::Ccw);
    }

    #[test]
    fn collisions_are_kvms() {
        let a = |addr, len, flags, d| assign(&req(addr, len, flags, d)).unwrap();
        let w4 = a(0x1000, 4, 0, 0);
        assert!(w4.collides(&a(0x1000, 4, FLAG_DATAMATCH, 1)), "a wildcard collides with any value");
        assert!(w4.collides(&a(0x1000, 0, 0, 0)), "any length collides");
        assert!(!w4.collides(&a(0x1000, 2, 0, 0)), "another length");
        assert!(!w4.collides(&a(0x1004, 4, 0, 0)), "another address");
        assert!(!w4.collides(&a(0x1000, 4, FLAG_PIO, 0)), "another bus");
        let d1 = a(0x1000, 4, FLAG_DATAMATCH, 1);
        assert!(!d1.collides(&a(0x1000, 4, FLAG_DATAMATCH, 2)), "two values");
        assert!(d1.collides(&a(0x1000, 4, FLAG_DATAMATCH, 1)));
    }

    #[test]
    fn hits_are_kvms() {
        let p = assign(&req(0x1000, 4, FLAG_DATAMATCH, 0x1234)).unwrap();
        assert!(p.hit(Bus::Mmio, 0x1000, 4, 0x1234));
        assert!(!p.hit(Bus::Mmio, 0x1000, 4, 0x1235));
        assert!(!p.hit(Bus::Mmio, 0x1000, 2, 0x1234), "length must match");
        assert!(!p.hit(Bus::Mmio, 0x1002, 4, 0x1234), "address exactly");
        assert!(!p.hit(Bus::Pio, 0x1000, 4, 0x1234), "bus");
        assert!(p.hit(Bus::Mmio, 0x1000, 4, 0xffff_ffff_0000_1234), "bits beyond the access are not data");
        let any = assign(&req(0x1000, 0, 0, 0)).unwrap();
        assert!(any.hit(Bus::Mmio, 0x1000, 1, 5) && any.hit(Bus::Mmio, 0x1000, 8, 5));
        let byte = assign(&req(0xcf8, 1, FLAG_PIO, 0)).unwrap();
        assert!(byte.hit(Bus::Pio, 0xcf8, 1, 0x99) && !byte.hit(Bus::Pio, 0xcf8, 2, 0x99));
        let big = assign(&req(0x2000, 1, FLAG_DATAMATCH, 0x100)).unwrap();
        assert!(!big.hit(Bus::Mmio, 0x2000, 1, 0x100), "a data match beyond the length never hits");
    }

    #[test]
    fn deassign_names_one_registration() {
        let p = assign(&req(0x1000, 4, FLAG_DATAMATCH, 9)).unwrap();
        assert!(p.deassigned_by(&req(0x1000, 4, FLAG_DATAMATCH | FLAG_DEASSIGN, 9)));
        assert!(!p.deassigned_by(&req(0x1000, 4, FLAG_DEASSIGN, 9)), "wildcard differs");
        assert!(!p.deassigned_by(&req(0x1000, 4, FLAG_DATAMATCH | FLAG_DEASSIGN, 8)));
        assert!(!p.deassigned_by(&req(0x1000, 2, FLAG_DATAMATCH | FLAG_DEASSIGN, 9)));
        assert!(!p.deassigned_by(&req(0x1000, 4, FLAG_DATAMATCH | FLAG_DEASSIGN | FLAG_PIO, 9)));
    }
}
