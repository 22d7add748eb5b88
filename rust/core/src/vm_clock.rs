// SPDX-License-Identifier: GPL-2.0
//! The VM's clock of `KVM_GET_CLOCK`/`KVM_SET_CLOCK` (Documentation/virt/kvm/api.rst 4.29,
//! 4.30): nanoseconds since the VM was created, as KVM counts them without a master clock —
//! the host's CLOCK_BOOTTIME plus a per-VM offset, which KVM_SET_CLOCK moves. A VMM reads it
//! when it stops a VM and writes it back when the VM runs again (after a migration, say), so
//! that the guest's clock does not jump. nvmx offers no kvmclock page in the guest's CPUID,
//! so this value is all there is to it.

/// `KVM_CLOCK_TSC_STABLE`: the value is the one every vCPU reads (never reported: nvmx's
/// clock is CLOCK_BOOTTIME plus an offset, which is what the flag's absence says).
pub const TSC_STABLE: u32 = 2;
/// `KVM_CLOCK_REALTIME`: `realtime` is the host's real time at the same instant.
pub const REALTIME: u32 = 1 << 2;
/// `KVM_CLOCK_HOST_TSC`: `host_tsc` is the host's TSC at the same instant.
pub const HOST_TSC: u32 = 1 << 3;
/// The flags KVM_SET_CLOCK accepts (KVM's KVM_CLOCK_VALID_FLAGS: what KVM_GET_CLOCK may
/// return can be passed back).
pub const VALID_FLAGS: u32 = TSC_STABLE | REALTIME | HOST_TSC;
/// The flags nvmx's KVM_GET_CLOCK can return (`KVM_CAP_ADJUST_CLOCK`).
pub const REPORTED_FLAGS: u32 = REALTIME | HOST_TSC;

/// The host's clocks read at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostTime {
    /// CLOCK_BOOTTIME, in nanoseconds.
    pub boot_ns: u64,
    /// CLOCK_REALTIME, in nanoseconds.
    pub real_ns: u64,
    /// The TSC, when the kernel's clocksource is the TSC (so that the other two were read
    /// from this value).
    pub tsc: Option<u64>,
}

/// `struct kvm_clock_data` without its padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockData {
    /// The clock, in nanoseconds.
    pub clock: u64,
    /// `KVM_CLOCK_*` flags.
    pub flags: u32,
    /// Host real time (with [`REALTIME`]).
    pub realtime: u64,
    /// Host TSC (with [`HOST_TSC`]).
    pub host_tsc: u64,
}

/// The offset of a VM created at `now`: its clock starts at 0, as KVM's does.
pub const fn offset_at_creation(now: &HostTime) -> u64 {
    0u64.wrapping_sub(now.boot_ns)
}

/// `KVM_GET_CLOCK` of a VM with `offset` at `now`.
pub const fn get(offset: u64, now: &HostTime) -> ClockData {
    let (flags, host_tsc) = match now.tsc {
        Some(t) => (REALTIME | HOST_TSC, t),
        None => (REALTIME, 0),
    };
    ClockData { clock: now.boot_ns.wrapping_add(offset), flags, realtime: now.real_ns, host_tsc }
}

/// `KVM_SET_CLOCK` at `now`: the VM's new offset, or `None` (EINVAL) for an unknown flag.
/// With [`REALTIME`] the real time that passed since `data.realtime` is added, so that a
/// clock saved with it does not step back; the other flags are accepted and ignored.
pub const fn set(data: &ClockData, now: &HostTime) -> Option<u64> {
    if data.flags & !VALID_FLAGS != 0 {
        return None;
    }
    let mut clock = data.clock;
    if data.flags & REALTIME != 0 && now.real_ns > data.realtime {
        clock = clock.wrapping_add(now.real_ns - data.realtime);
    }
    Some(clock.wrapping_sub(now.boot_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: HostTime = HostTime { boot_ns: 5_000_000_000, real_ns: 1_700_000_000_000_000_000, tsc: Some(123) };

    fn later(t: &HostTime, ns: u64) -> HostTime {
        HostTime { boot_ns: t.boot_ns + ns, real_ns: t.real_ns + ns, tsc: t.tsc.map(|x| x + ns) }
    }

    #[test]
    fn starts_at_zero_and_counts_nanoseconds() {
        let off = offset_at_creation(&T0);
        assert_eq!(get(off, &T0).clock, 0);
        let d = get(off, &later(&T0, 1_500));
        assert_eq!(d.clock, 1_500);
        assert_eq!((d.flags, d.realtime, d.host_tsc), (REALTIME | HOST_TSC, T0.real_ns + 1_500, 1_623));
        let no_tsc = HostTime { tsc: None, ..T0 };
        assert_eq!(get(off, &no_tsc).flags, REALTIME);
    }

    #[test]
    fn set_moves_the_clock_and_counts_on_from_there() {
        let off = set(&ClockData { clock: 1 << 40, ..ClockData::default() }, &T0).unwrap();
        assert_eq!(get(off, &T0).clock, 1 << 40);
        assert_eq!(get(off, &later(&T0, 7)).clock, (1 << 40) + 7);
        // Back in time too: the offset wraps, the clock is what was set.
        let off = set(&ClockData { clock: 3, ..ClockData::default() }, &T0).unwrap();
        assert_eq!(get(off, &later(&T0, 2)).clock, 5);
    }

    #[test]
    fn realtime_adds_the_time_that_passed() {
        let saved = get(offset_at_creation(&T0), &later(&T0, 1_000));
        // Restored 10 s of real time later on a host that booted since (boot time smaller).
        let now = HostTime { boot_ns: 42, real_ns: saved.realtime + 10_000_000_000, tsc: None };
        let off = set(&saved, &now).unwrap();
        assert_eq!(get(off, &now).clock, 1_000 + 10_000_000_000);
        // A real time in the future of the host's adds nothing (KVM never steps back).
        let ahead = ClockData { realtime: now.real_ns + 5, ..saved };
        assert_eq!(get(set(&ahead, &now).unwrap(), &now).clock, 1_000);
        // Without the flag the real time is ignored.
        let plain = ClockData { flags: 0, ..saved };
        assert_eq!(get(set(&plain, &now).unwrap(), &now).clock, 1_000);
    }

    #[test]
    fn flags_get_returns_are_accepted_others_refused() {
        for flags in [0, TSC_STABLE, REALTIME, HOST_TSC, VALID_FLAGS] {
            assert!(set(&ClockData { flags, ..ClockData::default() }, &T0).is_some(), "{flags:#x}");
        }
        for flags in [1, 1 << 4, 1 << 31] {
            assert_eq!(set(&ClockData { flags, ..ClockData::default() }, &T0), None, "{flags:#x}");
        }
        assert_eq!(REPORTED_FLAGS & !VALID_FLAGS, 0);
    }
}
