// SPDX-License-Identifier: GPL-2.0
//! The CPUID nvmx offers guests (`KVM_GET_SUPPORTED_CPUID`): the host's leaves, reduced to
//! the features a guest really gets today. It is a whitelist: a feature that needs an MSR
//! nvmx does not emulate (every guest RDMSR/WRMSR is #GP), state nvmx does not switch
//! (PKRU, AMX, supervisor XSAVE state), a local APIC, or a VM-execution control nvmx does
//! not enable (RDTSCP, INVPCID) is not offered. XSAVE, AVX and AVX-512 are offered as far
//! as rust/core/src/xsave.rs switches their state on this host.

use super::bits::bit;
use super::xsave::{self, XsaveHost};

/// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`: the entry applies to one subleaf only.
pub const FLAG_SIGNIFICANT_INDEX: u32 = 1;
/// Most entries a table holds.
pub const MAX_ENTRIES: usize = 64;

/// One `struct kvm_cpuid_entry2` (without its padding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    /// Leaf (EAX input).
    pub function: u32,
    /// Subleaf (ECX input).
    pub index: u32,
    /// `KVM_CPUID_FLAG_*`.
    pub flags: u32,
    /// Output EAX.
    pub eax: u32,
    /// Output EBX.
    pub ebx: u32,
    /// Output ECX.
    pub ecx: u32,
    /// Output EDX.
    pub edx: u32,
}

/// A fixed-capacity CPUID table.
#[derive(Clone, Copy, Debug)]
pub struct CpuidTable {
    entries: [CpuidEntry; MAX_ENTRIES],
    len: usize,
}

impl Default for CpuidTable {
    fn default() -> Self {
        Self { entries: [CpuidEntry::default(); MAX_ENTRIES], len: 0 }
    }
}

impl CpuidTable {
    /// The entries.
    pub fn entries(&self) -> &[CpuidEntry] {
        &self.entries[..self.len]
    }

    fn push(&mut self, e: CpuidEntry) {
        if self.len < MAX_ENTRIES {
            self.entries[self.len] = e;
            self.len += 1;
        }
    }

    /// Offer VMX (CPUID.1:ECX[5]) for nested virtualization: the host has it and nvmx
    /// emulates it for guests whose VMM turns it on (rust/nested.rs).
    pub fn offer_vmx(&mut self) {
        for e in self.entries[..self.len].iter_mut() {
            if e.function == 1 {
                e.ecx |= 1 << 5;
            }
        }
    }

    /// What CPUID(`function`, `index`) returns from this table: the matching entry (the
    /// subleaf counts only for entries flagged as indexed), zeros when there is none.
    pub fn lookup(&self, function: u32, index: u32) -> [u32; 4] {
        lookup(self.entries(), function, index)
    }
}

/// What the guest's CPUID instruction returns from its vCPU's table (`KVM_SET_CPUID2`),
/// with KVM's rule for leaves the table lacks (arch/x86/kvm/cpuid.c, kvm_cpuid): on an
/// Intel-vendor table, a leaf beyond the maximum of its class (basic 0, extended
/// 0x80000000, hypervisor 0x400000xx) returns the highest basic leaf, as Intel CPUs do
/// (SDM vol. 2A, CPUID: "If a value entered for CPUID.EAX is higher than the maximum input
/// value for basic or extended function ... the data for the highest basic information leaf
/// is returned"); a missing leaf inside its class returns zeros.
/// `d` gives the bits that follow the vCPU's state.
pub fn guest_cpuid(entries: &[CpuidEntry], function: u32, index: u32, d: &Dynamic) -> [u32; 4] {
    let find = |f: u32, i: u32| {
        entries.iter().find(|e| {
            e.function == f && (e.flags & FLAG_SIGNIFICANT_INDEX == 0 || e.index == i)
        })
    };
    let out = |e: &CpuidEntry| {
        let e = d.apply(e);
        [e.eax, e.ebx, e.ecx, e.edx]
    };
    if let Some(e) = find(function, index) {
        return out(e);
    }
    let Some(basic) = find(0, 0) else { return [0; 4] };
    let intel = [basic.ebx, basic.edx, basic.ecx] == [0x756e_6547, 0x4965_6e69, 0x6c65_746e];
    if !intel {
        return [0; 4];
    }
    let class = match function {
        0x4000_0000..=0x4fff_ffff => function & 0xffff_ff00,
        0xc000_0000.. => 0xc000_0000,
        _ => function & 0x8000_0000,
    };
    if find(class, 0).is_some_and(|c| function <= c.eax) {
        return [0; 4];
    }
    find(basic.eax, index).map_or([0; 4], out)
}

/// The CPUID output bits that follow the vCPU's state rather than its table (KVM's
/// kvm_update_cpuid_runtime): the guest's CPUID, `KVM_GET_CPUID2` and the comparison of
/// [`same_table`] see them as the vCPU is now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// CPUID.1:ECX.OSXSAVE = CR4.OSXSAVE.
    pub osxsave: bool,
    /// CPUID.(7,0):ECX.OSPKE = CR4.PKE.
    pub ospke: bool,
    /// CPUID.(0DH,0):EBX: the standard-format XSAVE size for the current XCR0.
    pub xsave_size: u32,
    /// CPUID.(0DH,1):EBX (with XSAVEC or XSAVES offered): the compacted size for XCR0.
    pub xsave_compacted_size: u32,
}

/// Leaf 1 ECX bit 27, OSXSAVE.
pub const LEAF1_ECX_OSXSAVE: u32 = 1 << 27;
/// Leaf 7 ECX bit 4, OSPKE.
pub const LEAF7_ECX_OSPKE: u32 = 1 << 4;

impl Dynamic {
    /// `e` as the vCPU sees it now.
    pub fn apply(&self, e: &CpuidEntry) -> CpuidEntry {
        let mut e = *e;
        let set = |w: &mut u32, b: u32, on: bool| if on { *w |= b } else { *w &= !b };
        match (e.function, e.index) {
            (1, _) => set(&mut e.ecx, LEAF1_ECX_OSXSAVE, self.osxsave),
            (7, 0) => set(&mut e.ecx, LEAF7_ECX_OSPKE, self.ospke),
            (0xd, 0) => e.ebx = self.xsave_size,
            (0xd, 1) if e.eax & (xsave::LEAF_D1_XSAVEC | xsave::LEAF_D1_XSAVES) != 0 => e.ebx = self.xsave_compacted_size,
            _ => {}
        }
        e
    }
}

/// Whether `new` describes the same vCPU as `old` (KVM allows `KVM_SET_CPUID2` after the
/// first run only with an identical table: kvm_cpuid_check_equal, which compares both
/// tables with their run-time bits as the vCPU's state makes them now — a VMM may give back
/// the table it set or the one KVM_GET_CPUID2 showed).
pub fn same_table(old: &[CpuidEntry], new: &[CpuidEntry], d: &Dynamic) -> bool {
    old.len() == new.len() && old.iter().zip(new).all(|(o, n)| d.apply(o) == d.apply(n))
}

/// CPUID lookup in any entry list, exact: the matching entry or zeros.
pub fn lookup(entries: &[CpuidEntry], function: u32, index: u32) -> [u32; 4] {
    entries
        .iter()
        .find(|e| {
            e.function == function && (e.flags & FLAG_SIGNIFICANT_INDEX == 0 || e.index == index)
        })
        .map_or([0; 4], |e| [e.eax, e.ebx, e.ecx, e.edx])
}

/// The guest features, read from a vCPU's CPUID table, that decide which control-register
/// and MSR values are legal for it (rust/core/src/guest_cr.rs, guest_msr.rs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestFeatures {
    /// CPUID.80000001H:EDX.LM.
    pub long_mode: bool,
    /// CPUID.80000001H:EDX.NX.
    pub nx: bool,
    /// CPUID.1:ECX.x2APIC.
    pub x2apic: bool,
    /// CPUID.1:ECX.VMX.
    pub vmx: bool,
    /// CPUID.1:ECX.SMX.
    pub smx: bool,
    /// CPUID.1:ECX.PCID.
    pub pcid: bool,
    /// CPUID.1:ECX.XSAVE.
    pub xsave: bool,
    /// CPUID.1:ECX.TSC-deadline: the local APIC timer's TSC-deadline mode.
    pub tsc_deadline: bool,
    /// CPUID.(7,0):EBX.FSGSBASE.
    pub fsgsbase: bool,
    /// CPUID.(7,0):EBX.SMEP.
    pub smep: bool,
    /// CPUID.(7,0):EBX.SMAP.
    pub smap: bool,
    /// CPUID.(7,0):ECX.UMIP.
    pub umip: bool,
    /// CPUID.(7,0):ECX.PKU.
    pub pku: bool,
    /// CPUID.(7,0):ECX.LA57.
    pub la57: bool,
    /// CPUID.80000008H:EAX[7:0], the physical-address width (36 without the leaf, SDM).
    pub maxphyaddr: u8,
}

impl GuestFeatures {
    /// Read the features from a CPUID table (exact lookups: a missing leaf has none).
    pub fn from_cpuid(entries: &[CpuidEntry]) -> Self {
        let get = |f: u32| lookup(entries, f, 0);
        let has = |word: u32, b: u32| word & (1 << b) != 0;
        let [_, _, l1c, _] = get(1);
        let [_, l7b, l7c, _] = get(7);
        let [_, _, _, e1d] = get(0x8000_0001);
        let pa = (get(0x8000_0008)[0] & 0xff) as u8;
        GuestFeatures {
            long_mode: has(e1d, 29),
            nx: has(e1d, 20),
            x2apic: has(l1c, 21),
            vmx: has(l1c, 5),
            smx: has(l1c, 6),
            pcid: has(l1c, 17),
            xsave: has(l1c, 26),
            tsc_deadline: has(l1c, 24),
            fsgsbase: has(l7b, 0),
            smep: has(l7b, 7),
            smap: has(l7b, 20),
            umip: has(l7c, 2),
            pku: has(l7c, 3),
            la57: has(l7c, 16),
            maxphyaddr: if pa == 0 { 36 } else { pa.min(52) },
        }
    }
}

const fn bits(list: &[u32]) -> u32 {
    let mut m = 0u32;
    let mut i = 0;
    while i < list.len() {
        m |= bit(list[i]) as u32;
        i += 1;
    }
    m
}

/// Leaf 1 ECX: SSE3, PCLMULQDQ, SSSE3, CX16, SSE4.1, SSE4.2, x2APIC, MOVBE, POPCNT, AES,
/// RDRAND. (x2APIC, like the APIC bit of EDX, is real only for a VM with an in-kernel local
/// APIC, `KVM_CAP_SPLIT_IRQCHIP`; a VMM without one clears both, as with KVM.)
pub const LEAF1_ECX: u32 = bits(&[0, 1, 9, 13, 19, 20, 21, 22, 23, 25, 30]);
/// Leaf 1 ECX bit 31: running under a hypervisor.
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 ECX bit 24: TSC-deadline timer, emulated by the in-kernel local APIC whatever the
/// host has (as KVM offers it: EMULATED_F), and real only with it, like x2APIC.
pub const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 1 EDX: FPU, VME, DE, PSE, TSC, MSR, PAE, CX8, APIC, SEP, PGE, CMOV, PAT, PSE-36,
/// CLFSH, MMX, FXSR, SSE, SSE2 (SYSENTER MSRs and PAT are switched by the VMCS).
pub const LEAF1_EDX: u32 = bits(&[0, 1, 2, 3, 4, 5, 6, 8, 9, 11, 13, 15, 16, 17, 19, 23, 24, 25, 26]);
/// Leaf 1 ECX with AVX state switched: FMA, AVX, F16C.
pub const LEAF1_ECX_AVX: u32 = bits(&[12, 28, 29]);
/// Leaf 1 ECX bit 26: XSAVE (with the host's XSAVE: rust/core/src/xsave.rs).
pub const LEAF1_ECX_XSAVE: u32 = 1 << 26;
/// Leaf 7.0 EBX: FSGSBASE, TSC_ADJUST (emulated), BMI1, SMEP, BMI2, ERMS, RDSEED, ADX, SMAP,
/// CLFLUSHOPT, SHA.
pub const LEAF7_EBX: u32 = bits(&[0, 1, 3, 7, 8, 9, 18, 19, 20, 23, 29]);
/// Leaf 7.0 EBX with AVX state switched: AVX2.
pub const LEAF7_EBX_AVX: u32 = bits(&[5]);
/// Leaf 7.0 EBX with AVX-512 state switched: AVX512F, DQ, IFMA, CD, BW, VL.
pub const LEAF7_EBX_AVX512: u32 = bits(&[16, 17, 21, 28, 30, 31]);
/// Leaf 7.0 ECX with AVX state switched (VEX-encoded forms): GFNI, VAES, VPCLMULQDQ.
pub const LEAF7_ECX_AVX: u32 = bits(&[8, 9, 10]);
/// Leaf 7.0 ECX with AVX-512 state switched: VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ.
pub const LEAF7_ECX_AVX512: u32 = bits(&[1, 6, 11, 12, 14]);
/// Leaf 0x80000001 ECX: LAHF/SAHF in 64-bit mode, LZCNT, PREFETCHW.
pub const EXT1_ECX: u32 = bits(&[0, 5, 8]);
/// Leaf 0x80000001 EDX: SYSCALL (STAR, LSTAR, CSTAR and FMASK are switched around every
/// guest stretch), NX, 1 GiB pages, long mode.
pub const EXT1_EDX: u32 = bits(&[11, 20, 26, 29]);
/// Leaf 6 EAX bit 2: the APIC timer always runs (ARAT), whatever the guest's idle state —
/// nvmx's APIC timer is emulated and a guest never reaches a real C-state (HLT and MWAIT
/// exit). KVM offers exactly this in leaf 6. Without it Linux marks its local-APIC timer
/// as stopping in deep C-states and, with no broadcast timer (a microvm guest has no HPET
/// or PIT), runs a periodic tick instead of one-shot timers and NOHZ.
pub const LEAF6_EAX_ARAT: u32 = 1 << 2;
/// The hypervisor leaves: 0x40000000 gives the highest one and nvmx's signature (not KVM's:
/// none of KVM's paravirtual features is implemented), 0x40000001 its features (none).
pub const HYPERVISOR_BASE: u32 = 0x4000_0000;
/// "nvmxnvmxnvmx" in EBX, ECX, EDX.
pub const HYPERVISOR_SIGNATURE: [u32; 3] = [0x786d_766e, 0x786d_766e, 0x786d_766e];

/// Build the table from the host's CPUID and the extended state nvmx switches on it.
pub fn supported(host: &mut dyn FnMut(u32, u32) -> [u32; 4], xs: &XsaveHost) -> CpuidTable {
    let mut t = CpuidTable::default();
    let entry = |function: u32, index: u32, flags: u32, r: [u32; 4]| CpuidEntry {
        function,
        index,
        flags,
        eax: r[0],
        ebx: r[1],
        ecx: r[2],
        edx: r[3],
    };
    let host_max = host(0, 0)[0];
    // Basic leaves offered: 0, 1, 2, 4, 6, 7 and (with XSAVE) 0DH; the maximum basic leaf
    // says 0DH, 7 without XSAVE, or less.
    let max = host_max.min(if xs.enabled { 0xd } else { 7 });
    let avx = xs.supported & xsave::XFEATURE_YMM != 0;
    let avx512 = xs.supported & xsave::XFEATURE_AVX512 != 0;
    let when = |on: bool, m: u32| if on { m } else { 0 };
    let mut l0 = host(0, 0);
    l0[0] = max;
    t.push(entry(0, 0, 0, l0));
    if max >= 1 {
        let mut l1 = host(1, 0);
        l1[1] &= 0x00ff_ffff; // initial APIC id: set by the VMM per vCPU
        let ecx = LEAF1_ECX | when(xs.enabled, LEAF1_ECX_XSAVE) | when(avx, LEAF1_ECX_AVX);
        l1[2] = (l1[2] & ecx) | LEAF1_ECX_HYPERVISOR | LEAF1_ECX_TSC_DEADLINE;
        l1[3] &= LEAF1_EDX;
        t.push(entry(1, 0, 0, l1));
    }
    if max >= 2 {
        t.push(entry(2, 0, 0, host(2, 0)));
    }
    if max >= 4 {
        // Deterministic cache parameters: subleaves until cache type 0 (SDM vol. 2A, CPUID).
        for index in 0..8 {
            let r = host(4, index);
            t.push(entry(4, index, FLAG_SIGNIFICANT_INDEX, r));
            if r[0] & 0x1f == 0 {
                break;
            }
        }
    }
    if max >= 6 {
        t.push(entry(6, 0, 0, [LEAF6_EAX_ARAT, 0, 0, 0]));
    }
    if max >= 7 {
        let r = host(7, 0);
        let ebx = LEAF7_EBX | when(avx, LEAF7_EBX_AVX) | when(avx512, LEAF7_EBX_AVX512);
        let ecx = when(avx, LEAF7_ECX_AVX) | when(avx512, LEAF7_ECX_AVX512);
        t.push(entry(7, 0, FLAG_SIGNIFICANT_INDEX, [0, r[1] & ebx, r[2] & ecx, 0]));
    }
    if max >= 0xd {
        // Extended state (KVM's leaf 0DH): subleaf 0 the components a guest may enable and
        // the largest area, 1 the XSAVE instructions, then each component's size and offset.
        let all = xs.supported;
        let size = xs.required_size(all, false);
        t.push(entry(0xd, 0, FLAG_SIGNIFICANT_INDEX, [all as u32, size, size, (all >> 32) as u32]));
        let compacted = if xs.leaf_d1_eax & xsave::LEAF_D1_XSAVEC != 0 { xs.required_size(all, true) } else { 0 };
        t.push(entry(0xd, 1, FLAG_SIGNIFICANT_INDEX, [xs.leaf_d1_eax, compacted, 0, 0]));
        for i in 2..64u32 {
            if all & (1 << i) != 0 {
                let c = host(0xd, i);
                // ECX: bit 1 (64-byte alignment when compacted) only; user state, no XFD.
                t.push(entry(0xd, i, FLAG_SIGNIFICANT_INDEX, [c[0], c[1], c[2] & 2, 0]));
            }
        }
    }
    let [s0, s1, s2] = HYPERVISOR_SIGNATURE;
    t.push(entry(HYPERVISOR_BASE, 0, 0, [HYPERVISOR_BASE + 1, s0, s1, s2]));
    t.push(entry(HYPERVISOR_BASE + 1, 0, 0, [0; 4]));
    let ext_max = host(0x8000_0000, 0)[0].min(0x8000_0008);
    if ext_max >= 0x8000_0000 {
        t.push(entry(0x8000_0000, 0, 0, [ext_max, 0, 0, 0]));
        for function in 0x8000_0001..=ext_max {
            let mut r = host(function, 0);
            match function {
                0x8000_0001 => r = [r[0], 0, r[2] & EXT1_ECX, r[3] & EXT1_EDX],
                0x8000_0002..=0x8000_0004 | 0x8000_0006 => {}
                // Invariant TSC: the guest reads the host's TSC, unscaled.
                0x8000_0007 => r = [0, 0, 0, r[3] & (1 << 8)],
                // Address sizes (EAX); the rest is AMD-only or topology.
                0x8000_0008 => r = [r[0] & 0xffff, 0, 0, 0],
                _ => continue,
            }
            t.push(entry(function, 0, 0, r));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that answers every feature bit set, max basic leaf 0x1f, 4 cache levels.
    fn all_ones(function: u32, index: u32) -> [u32; 4] {
        match function {
            0 => [0x1f, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
            4 => [if index < 4 { 0x121 } else { 0 }, 1, 2, 3],
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0008 => [0x3027, u32::MAX, u32::MAX, u32::MAX],
            _ => [u32::MAX; 4],
        }
    }

    #[test]
    fn whitelist_only() {
        let t = supported(&mut all_ones, &XsaveHost::legacy());
        assert_eq!(t.lookup(0, 0)[0], 7, "max basic leaf");
        assert_eq!(&t.lookup(0, 0)[1..], &[0x756e_6547, 0x6c65_746e, 0x4965_6e69]);
        let l1 = t.lookup(1, 0);
        assert_eq!(l1[2], LEAF1_ECX | LEAF1_ECX_HYPERVISOR | LEAF1_ECX_TSC_DEADLINE);
        assert_eq!(l1[3], LEAF1_EDX);
        assert_eq!(l1[1] >> 24, 0, "no APIC id");
        for (what, b) in [("VMX", 5), ("MONITOR", 3), ("XSAVE", 26), ("AVX", 28)] {
            assert_eq!(l1[2] & (1 << b), 0, "{what}");
        }
        for (what, b) in [("MTRR", 12), ("MCE", 7)] {
            assert_eq!(l1[3] & (1 << b), 0, "{what}");
        }
        // Leaf 6: only "APIC timer always running", whatever the host's thermal features.
        assert_eq!(t.lookup(6, 0), [LEAF6_EAX_ARAT, 0, 0, 0]);
        let l7 = t.lookup(7, 0);
        assert_eq!(l7, [0, LEAF7_EBX, 0, 0]);
        assert_eq!(l7[1] & (1 << 5), 0, "AVX2");
        assert_eq!(l7[1] & (1 << 10), 0, "INVPCID");
        assert_eq!(t.lookup(0xd, 0), [0; 4], "no XSAVE leaf");
        assert_eq!(t.lookup(0xa, 0), [0; 4], "no PMU leaf");
        let e1 = t.lookup(0x8000_0001, 0);
        assert_eq!((e1[2], e1[3]), (EXT1_ECX, EXT1_EDX));
        assert_eq!(e1[3] & (1 << 27), 0, "RDTSCP");
        assert_eq!(t.lookup(0x8000_0008, 0), [0x3027, 0, 0, 0], "48-bit VA, 39-bit PA");
        assert_eq!(t.lookup(0x8000_0000, 0)[0], 0x8000_0008);
        assert_eq!(t.lookup(0x8000_0007, 0), [0, 0, 0, 1 << 8]);
        assert_ne!(e1[3] & (1 << 11), 0, "SYSCALL: STAR and friends are switched");
        assert_eq!(t.lookup(0x4000_0000, 0), [0x4000_0001, 0x786d_766e, 0x786d_766e, 0x786d_766e]);
        assert_eq!(&t.lookup(0x4000_0000, 0)[1..].iter().flat_map(|w| w.to_le_bytes()).collect::<std::vec::Vec<u8>>()[..], b"nvmxnvmxnvmx");
        assert_eq!(t.lookup(0x4000_0001, 0), [0; 4], "no paravirtual features");
    }

    #[test]
    fn guest_cpuid_follows_intel_out_of_range_rule() {
        let t = supported(&mut all_ones, &XsaveHost::legacy());
        let e = t.entries();
        let max_basic = t.lookup(7, 0);
        assert_eq!(guest_cpuid(e, 1, 0, &Dynamic::default()), t.lookup(1, 0));
        // Inside the basic range but absent: zeros.
        assert_eq!(guest_cpuid(e, 3, 0, &Dynamic::default()), [0; 4]);
        assert_eq!(guest_cpuid(e, 4, 7, &Dynamic::default()), [0; 4], "past the last cache subleaf");
        // Beyond the basic maximum (7): the highest basic leaf, with the caller's subleaf.
        assert_eq!(guest_cpuid(e, 0xd, 0, &Dynamic::default()), max_basic);
        assert_eq!(guest_cpuid(e, 0xd, 1, &Dynamic::default()), [0; 4], "leaf 7 has subleaf 0 only");
        // Beyond the extended maximum, and a hypervisor leaf past 0x40000001.
        assert_eq!(guest_cpuid(e, 0x8000_0009, 0, &Dynamic::default()), max_basic);
        assert_eq!(guest_cpuid(e, 0x4000_0002, 0, &Dynamic::default()), max_basic);
        assert_eq!(guest_cpuid(e, 0x4000_0100, 0, &Dynamic::default()), max_basic, "no 0x40000100 class");
        assert_eq!(guest_cpuid(e, 0xc000_0000, 0, &Dynamic::default()), max_basic, "no Centaur class");
        // An empty table (no KVM_SET_CPUID2 yet) answers zeros, as KVM does.
        assert_eq!(guest_cpuid(&[], 0, 0, &Dynamic::default()), [0; 4]);
        // A non-Intel vendor gets zeros out of range (KVM's AMD rule).
        let mut amd = t;
        amd.entries[0].ebx = 0x6874_7541;
        assert_eq!(guest_cpuid(amd.entries(), 0xd, 0, &Dynamic::default()), [0; 4]);
    }

    #[test]
    fn guest_features_from_cpuid() {
        let f = GuestFeatures::from_cpuid(supported(&mut all_ones, &XsaveHost::legacy()).entries());
        assert!(f.long_mode && f.nx && f.fsgsbase && f.smep && f.smap);
        assert!(f.x2apic);
        assert!(!f.vmx && !f.xsave && !f.pcid && !f.pku && !f.la57 && !f.umip);
        assert_eq!(f.maxphyaddr, 0x27);
        let none = GuestFeatures::from_cpuid(&[]);
        assert_eq!(none, GuestFeatures { maxphyaddr: 36, ..GuestFeatures::default() });
    }

    #[test]
    fn same_table_is_exact() {
        let t = supported(&mut all_ones, &XsaveHost::legacy());
        let mut u = t;
        assert!(same_table(t.entries(), u.entries(), &Dynamic::default()));
        u.entries[1].ebx ^= 1;
        assert!(!same_table(t.entries(), u.entries(), &Dynamic::default()));
        assert!(!same_table(t.entries(), &t.entries()[1..], &Dynamic::default()));
    }

    #[test]
    fn indexed_leaves() {
        let t = supported(&mut all_ones, &XsaveHost::legacy());
        for index in 0..4 {
            assert_eq!(t.lookup(4, index)[0], 0x121, "cache level {index}");
        }
        assert_eq!(t.lookup(4, 4), [0, 1, 2, 3], "the terminating null subleaf");
        assert_eq!(t.lookup(4, 5), [0; 4]);
        assert_eq!(t.lookup(7, 1), [0; 4], "leaf 7 offers subleaf 0 only");
        let e = t.entries().iter().find(|e| e.function == 4).unwrap();
        assert_eq!(e.flags, FLAG_SIGNIFICANT_INDEX);
    }

    #[test]
    fn old_host_with_few_leaves() {
        let mut small = |f: u32, _i: u32| match f {
            0 => [2, 0, 0, 0],
            0x8000_0000 => [0x8000_0001, 0, 0, 0],
            _ => [u32::MAX; 4],
        };
        let t = supported(&mut small, &XsaveHost::legacy());
        assert_eq!(t.lookup(0, 0)[0], 2);
        assert_eq!(t.lookup(4, 0), [0; 4]);
        assert!(t.entries().iter().all(|e| e.function != 6), "leaf 6 is above the host's maximum");
        assert_eq!(t.lookup(0x8000_0000, 0)[0], 0x8000_0001);
        assert_eq!(t.lookup(0x8000_0008, 0), [0; 4]);
        assert!(t.entries().len() <= MAX_ENTRIES);
    }

    /// A Skylake-X host with XSAVE, AVX and AVX-512 in XCR0 (and PKRU, not switched).
    fn skylake_x(function: u32, index: u32) -> [u32; 4] {
        match (function, index) {
            (0xd, 0) => [0x2e7, 2696, 2696, 0],
            (0xd, 1) => [0xf, 0, 0, 0],
            (0xd, 2) => [256, 576, 0, 0],
            (0xd, 5) => [64, 1088, 0, 0],
            (0xd, 6) => [512, 1152, 0, 0],
            (0xd, 7) => [1024, 1664, 0, 0],
            (0xd, 9) => [8, 2688, 0, 0],
            _ => all_ones(function, index),
        }
    }

    #[test]
    fn xsave_avx_and_avx512_with_the_hosts_xsave() {
        let xs = XsaveHost::probe(true, 0x2e7, &mut skylake_x);
        let t = supported(&mut skylake_x, &xs);
        assert_eq!(t.lookup(0, 0)[0], 0xd, "max basic leaf");
        let l1 = t.lookup(1, 0);
        assert_eq!(l1[2] & (LEAF1_ECX_XSAVE | LEAF1_ECX_AVX), LEAF1_ECX_XSAVE | LEAF1_ECX_AVX);
        assert_eq!(l1[2] & LEAF1_ECX_OSXSAVE, 0, "OSXSAVE is the guest's CR4, not offered");
        let l7 = t.lookup(7, 0);
        assert_eq!(l7[1], LEAF7_EBX | LEAF7_EBX_AVX | LEAF7_EBX_AVX512);
        assert_eq!(l7[2], LEAF7_ECX_AVX | LEAF7_ECX_AVX512);
        assert_eq!(l7[2] & (LEAF7_ECX_OSPKE | 1 << 3), 0, "no PKU");
        assert_eq!(t.lookup(0xd, 0), [0xe7, 2688, 2688, 0], "PKRU not offered");
        assert_eq!(t.lookup(0xd, 1), [0x7, 2432, 0, 0], "XSAVEOPT, XSAVEC, XGETBV1; no XSAVES");
        assert_eq!(t.lookup(0xd, 2), [256, 576, 0, 0]);
        assert_eq!(t.lookup(0xd, 7), [1024, 1664, 0, 0]);
        assert_eq!(t.lookup(0xd, 9), [0; 4]);
        assert_eq!(t.lookup(0xd, 3), [0; 4], "no MPX");
        let f = GuestFeatures::from_cpuid(t.entries());
        assert!(f.xsave);
        // An AVX-only host XCR0: no AVX-512 feature bits.
        let xs = XsaveHost::probe(true, 0x7, &mut skylake_x);
        let t = supported(&mut skylake_x, &xs);
        assert_eq!(t.lookup(7, 0)[1], LEAF7_EBX | LEAF7_EBX_AVX);
        assert_eq!(t.lookup(0xd, 0), [0x7, 832, 832, 0]);
    }

    #[test]
    fn dynamic_bits_follow_the_vcpu() {
        let xs = XsaveHost::probe(true, 0x2e7, &mut skylake_x);
        let t = supported(&mut skylake_x, &xs);
        let e = t.entries();
        let d = Dynamic { osxsave: true, ospke: false, xsave_size: 832, xsave_compacted_size: 832 };
        assert_ne!(guest_cpuid(e, 1, 0, &d)[2] & LEAF1_ECX_OSXSAVE, 0);
        assert_eq!(guest_cpuid(e, 1, 0, &Dynamic::default())[2] & LEAF1_ECX_OSXSAVE, 0);
        assert_eq!(guest_cpuid(e, 0xd, 0, &d), [0xe7, 832, 2688, 0], "EBX for the current XCR0");
        assert_eq!(guest_cpuid(e, 0xd, 1, &d)[1], 832);
        assert_eq!(guest_cpuid(e, 0xd, 2, &d), [256, 576, 0, 0]);
        // KVM_SET_CPUID2 after a run: the table as set, or as KVM_GET_CPUID2 shows it now,
        // is the same table; a change elsewhere is not.
        let now: std::vec::Vec<CpuidEntry> = e.iter().map(|x| d.apply(x)).collect();
        assert!(same_table(e, &now, &d));
        assert!(same_table(e, e, &d));
        let mut other = now.clone();
        other[1].ecx ^= 1;
        assert!(!same_table(e, &other, &d));
        // Without XSAVEC/XSAVES, subleaf 1's EBX is left alone.
        let mut no_c = t;
        no_c.entries.iter_mut().filter(|x| x.function == 0xd && x.index == 1).for_each(|x| x.eax = 1);
        assert_eq!(guest_cpuid(no_c.entries(), 0xd, 1, &d)[1], 2432);
    }
}
