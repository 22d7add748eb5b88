// SPDX-License-Identifier: GPL-2.0
//! Memory-slot rules of `KVM_SET_USER_MEMORY_REGION(2)`, as KVM's `kvm_set_memory_region`
//! applies them (virt/kvm/kvm_main.c), with KVM's errno for each mistake.

use super::host::errno::{EEXIST, EINVAL};

/// Page size for slots.
pub const PAGE_SIZE: u64 = 4096;
/// Slots per VM (`KVM_CAP_NR_MEMSLOTS`): 509, x86 KVM's `KVM_USER_MEM_SLOTS` until Linux 5.15
/// (512 minus its 3 internal slots), which VMMs lived with for a decade. Not today's 32764:
/// nvmx pins a slot's memory when the slot is created, so a slot costs its memory at once,
/// and a VMM that registers the maximum of 2 MiB slots (set_memory_region_test does) must be
/// able to back them — 32764 of them are 64 GiB.
pub const USER_MEM_SLOTS: u32 = 509;
/// `KVM_MEM_MAX_NR_PAGES`: slots are indexed with an unsigned int of pages.
pub const MEM_MAX_NR_PAGES: u64 = (1 << 31) - 1;
/// `KVM_MEM_LOG_DIRTY_PAGES`.
pub const MEM_LOG_DIRTY_PAGES: u32 = 1 << 0;
/// `KVM_MEM_READONLY`.
pub const MEM_READONLY: u32 = 1 << 1;
/// `KVM_MEM_GUEST_MEMFD`.
pub const MEM_GUEST_MEMFD: u32 = 1 << 2;
/// Flags nvmx accepts: dirty logging and read-only slots (no guest_memfd yet, and
/// `KVM_CHECK_EXTENSION` says so).
pub const SUPPORTED_FLAGS: u32 = MEM_LOG_DIRTY_PAGES | MEM_READONLY;

/// A slot as userspace asks for it (`struct kvm_userspace_memory_region2`'s used fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Slot id (bits 15:0) and address space (bits 31:16).
    pub slot: u32,
    /// `KVM_MEM_*` flags.
    pub flags: u32,
    /// Guest-physical base.
    pub gpa: u64,
    /// Size in bytes; 0 deletes the slot.
    pub size: u64,
    /// Userspace address of the backing memory.
    pub uaddr: u64,
}

/// An existing slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Slot id.
    pub id: u16,
    /// First guest frame.
    pub base_gfn: u64,
    /// Number of pages.
    pub npages: u64,
    /// `KVM_MEM_*` flags.
    pub flags: u32,
    /// Userspace address of the backing memory.
    pub uaddr: u64,
}

impl Slot {
    /// Whether guest frame `gfn` is in this slot.
    pub const fn contains(&self, gfn: u64) -> bool {
        gfn >= self.base_gfn && gfn - self.base_gfn < self.npages
    }
}

/// What a valid request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new slot.
    Create(Slot),
    /// Delete slot `id`.
    Delete(u16),
    /// Move slot `id` to a new guest-physical base (same memory).
    Move(Slot),
    /// Only the flags change.
    FlagsOnly(Slot),
    /// The request repeats the slot as it is.
    Nothing,
}

/// Decide what `req` does to `slots`, or KVM's errno for it. `user_limit` is the end of the
/// user address space (`TASK_SIZE_MAX`): the memory must lie below it (`access_ok`).
pub fn plan(slots: &[Slot], req: &Request, user_limit: u64) -> Result<Change, i32> {
    if req.flags & !SUPPORTED_FLAGS != 0 {
        return Err(EINVAL);
    }
    if !req.size.is_multiple_of(PAGE_SIZE)
        || !req.gpa.is_multiple_of(PAGE_SIZE)
        || !req.uaddr.is_multiple_of(PAGE_SIZE)
    {
        return Err(EINVAL);
    }
    match req.uaddr.checked_add(req.size) {
        Some(end) if end <= user_limit => {}
        _ => return Err(EINVAL),
    }
    // Only address space 0 exists on a VM without SMM.
    let (as_id, id) = (req.slot >> 16, req.slot & 0xffff);
    if as_id != 0 || id >= USER_MEM_SLOTS {
        return Err(EINVAL);
    }
    if req.gpa.checked_add(req.size).is_none() {
        return Err(EINVAL);
    }
    let npages = req.size / PAGE_SIZE;
    if npages > MEM_MAX_NR_PAGES {
        return Err(EINVAL);
    }
    let id = id as u16;
    let old = slots.iter().find(|s| s.id == id);
    if npages == 0 {
        return match old {
            Some(_) => Ok(Change::Delete(id)),
            None => Err(EINVAL),
        };
    }
    let new = Slot { id, base_gfn: req.gpa / PAGE_SIZE, npages, flags: req.flags, uaddr: req.uaddr };
    let change = match old {
        None => Change::Create(new),
        Some(old) => {
            if req.uaddr != old.uaddr || npages != old.npages {
                return Err(EINVAL);
            }
            if (req.flags ^ old.flags) & (MEM_READONLY | MEM_GUEST_MEMFD) != 0 {
                return Err(EINVAL);
            }
            if new.base_gfn != old.base_gfn {
                Change::Move(new)
            } else if new.flags != old.flags {
                Change::FlagsOnly(new)
            } else {
                return Ok(Change::Nothing);
            }
        }
    };
    if let Change::Create(s) | Change::Move(s) = change {
        let end = s.base_gfn + s.npages;
        if slots.iter().any(|o| o.id != id && s.base_gfn < o.base_gfn + o.npages && o.base_gfn < end) {
            return Err(EEXIST);
        }
    }
    Ok(change)
}

/// The slot holding guest frame `gfn`.
pub fn find(slots: &[Slot], gfn: u64) -> Option<&Slot> {
    slots.iter().find(|s| s.contains(gfn))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 0x7fff_ffff_f000;

    fn req(slot: u32, gpa: u64, size: u64, uaddr: u64) -> Request {
        Request { slot, flags: 0, gpa, size, uaddr }
    }

    fn slot(id: u16, gpa: u64, size: u64, uaddr: u64) -> Slot {
        Slot { id, base_gfn: gpa / PAGE_SIZE, npages: size / PAGE_SIZE, flags: 0, uaddr }
    }

    #[test]
    fn create_and_find() {
        let r = req(0, 0x10_0000, 0x4000, 0x7f00_0000_0000);
        let s = slot(0, 0x10_0000, 0x4000, 0x7f00_0000_0000);
        assert_eq!(plan(&[], &r, LIMIT), Ok(Change::Create(s)));
        assert_eq!(find(&[s], 0x100), Some(&s));
        assert_eq!(find(&[s], 0x103), Some(&s));
        assert_eq!(find(&[s], 0x104), None);
        assert_eq!(find(&[s], 0xff), None);
    }

    #[test]
    fn unaligned_is_einval() {
        assert_eq!(plan(&[], &req(0, 0x1001, 0x1000, 0x1000), LIMIT), Err(EINVAL));
        assert_eq!(plan(&[], &req(0, 0x1000, 0x1001, 0x1000), LIMIT), Err(EINVAL));
        assert_eq!(plan(&[], &req(0, 0x1000, 0x1000, 0x1800), LIMIT), Err(EINVAL));
    }

    #[test]
    fn bad_flags_are_einval() {
        for flags in [MEM_GUEST_MEMFD, 1 << 3, u32::MAX] {
            let r = Request { flags, ..req(0, 0, 0x1000, 0x1000) };
            assert_eq!(plan(&[], &r, LIMIT), Err(EINVAL), "flags {flags:#x}");
        }
    }

    #[test]
    fn read_only_slots_keep_their_flag() {
        let rom = Request { flags: MEM_READONLY, ..req(1, 0xf_0000, 0x1_0000, 0x10_0000) };
        let Ok(Change::Create(s)) = plan(&[], &rom, LIMIT) else { panic!("a read-only slot is created") };
        assert_eq!(s.flags, MEM_READONLY);
        let logged = Request { flags: MEM_READONLY | MEM_LOG_DIRTY_PAGES, ..rom };
        assert_eq!(plan(&[s], &logged, LIMIT), Ok(Change::FlagsOnly(Slot { flags: logged.flags, ..s })), "logging may change");
        assert_eq!(plan(&[s], &Request { flags: 0, ..rom }, LIMIT), Err(EINVAL), "read-only cannot be taken away");
        let ram = slot(1, 0xf_0000, 0x1_0000, 0x10_0000);
        assert_eq!(plan(&[ram], &rom, LIMIT), Err(EINVAL), "nor given");
    }

    #[test]
    fn kernel_or_wrapping_addresses_are_einval() {
        assert_eq!(plan(&[], &req(0, 0, 0x1000, 0xffff_8880_0000_0000), LIMIT), Err(EINVAL));
        assert_eq!(plan(&[], &req(0, 0, 0x2000, LIMIT - 0x1000), LIMIT), Err(EINVAL));
        assert_eq!(plan(&[], &req(0, 0, 0x1000, u64::MAX - 0xfff), LIMIT), Err(EINVAL));
        assert_eq!(plan(&[], &req(0, u64::MAX - 0xfff, 0x2000, 0x1000), LIMIT), Err(EINVAL));
    }

    #[test]
    fn huge_is_einval() {
        let too_many = (MEM_MAX_NR_PAGES + 1) * PAGE_SIZE;
        assert_eq!(plan(&[], &req(0, 0, too_many, 0x1000), u64::MAX), Err(EINVAL));
    }

    #[test]
    fn bad_slot_ids_are_einval() {
        assert_eq!(plan(&[], &req(USER_MEM_SLOTS, 0, 0x1000, 0x1000), LIMIT), Err(EINVAL));
        assert_eq!(plan(&[], &req(1 << 16, 0, 0x1000, 0x1000), LIMIT), Err(EINVAL), "as_id 1");
        assert!(plan(&[], &req(USER_MEM_SLOTS - 1, 0, 0x1000, 0x1000), LIMIT).is_ok());
    }

    #[test]
    fn overlap_is_eexist() {
        let a = slot(0, 0x10_0000, 0x10_0000, 0x1000_0000);
        for (gpa, size) in [(0x10_0000, 0x1000), (0xff000, 0x2000), (0x1f_f000, 0x1000), (0, 0x1000_0000)] {
            assert_eq!(plan(&[a], &req(1, gpa, size, 0x2000_0000), LIMIT), Err(EEXIST), "{gpa:#x}+{size:#x}");
        }
        assert!(plan(&[a], &req(1, 0x20_0000, 0x1000, 0x2000_0000), LIMIT).is_ok(), "adjacent");
        assert!(plan(&[a], &req(1, 0xff000, 0x1000, 0x2000_0000), LIMIT).is_ok(), "adjacent below");
    }

    #[test]
    fn delete() {
        let a = slot(3, 0, 0x1000, 0x1000);
        assert_eq!(plan(&[a], &req(3, 0, 0, 0x1000), LIMIT), Ok(Change::Delete(3)));
        assert_eq!(plan(&[a], &req(4, 0, 0, 0x1000), LIMIT), Err(EINVAL), "no such slot");
    }

    #[test]
    fn modify_rules() {
        let a = slot(0, 0x10_0000, 0x2000, 0x1000_0000);
        let same = req(0, 0x10_0000, 0x2000, 0x1000_0000);
        assert_eq!(plan(&[a], &same, LIMIT), Ok(Change::Nothing));
        let moved = req(0, 0x40_0000, 0x2000, 0x1000_0000);
        assert_eq!(plan(&[a], &moved, LIMIT), Ok(Change::Move(slot(0, 0x40_0000, 0x2000, 0x1000_0000))));
        assert_eq!(plan(&[a], &req(0, 0x10_0000, 0x3000, 0x1000_0000), LIMIT), Err(EINVAL), "resize");
        assert_eq!(plan(&[a], &req(0, 0x10_0000, 0x2000, 0x2000_0000), LIMIT), Err(EINVAL), "new uaddr");
        let b = slot(1, 0x40_0000, 0x1000, 0x3000_0000);
        assert_eq!(plan(&[a, b], &moved, LIMIT), Err(EEXIST), "move onto another slot");
    }
}
