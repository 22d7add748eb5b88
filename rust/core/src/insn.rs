// SPDX-License-Identifier: GPL-2.0
//! Decoding of the instructions nvmx emulates for MMIO: the MOV forms a guest uses to reach
//! a device register (SDM vol. 2B "MOV", "MOVZX", "MOVSX"): 88/89/8A/8B (register ↔
//! memory), C6/C7 (immediate → memory), A0–A3 (moffs) and 0F B6/B7/BE/BF. The memory
//! address itself comes from the VM exit (the guest-physical address of the EPT violation),
//! so decoding needs the operands and the length, not the effective address.
//!
//! Anything else (string moves, read-modify-write, LOCK, VEX…) is [`Decoded::Unsupported`]:
//! the vCPU then exits with KVM_EXIT_INTERNAL_ERROR and the instruction bytes.

/// The code segment's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    /// Real mode, virtual-8086 or a 16-bit code segment.
    Bits16,
    /// A 32-bit code segment.
    Bits32,
    /// 64-bit mode (IA-32e with CS.L).
    Bits64,
}

/// A general-purpose register operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gpr {
    /// Register number (x86 order: 0 = RAX … 15 = R15).
    pub num: u8,
    /// For 1-byte operands without REX, numbers 4–7 mean AH, CH, DH, BH.
    pub high_byte: bool,
}

impl Gpr {
    /// The register that holds the operand: AH, CH, DH and BH are bits 15:8 of RAX, RCX,
    /// RDX and RBX (numbers 0-3), the others are their own number.
    pub const fn reg(self) -> u8 {
        if self.high_byte { self.num - 4 } else { self.num }
    }
}

/// How a value read from memory lands in the destination register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extend {
    /// MOV: same size as the access.
    None,
    /// MOVZX.
    Zero,
    /// MOVSX.
    Sign,
}

/// A decoded MMIO instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Load `size` bytes into `dst` (of `dst_size` bytes).
    Read {
        /// Instruction length.
        len: u8,
        /// Bytes read from memory.
        size: u8,
        /// Destination register.
        dst: Gpr,
        /// Destination size in bytes.
        dst_size: u8,
        /// Extension from `size` to `dst_size`.
        extend: Extend,
    },
    /// Store `size` bytes from a register.
    WriteReg {
        /// Instruction length.
        len: u8,
        /// Bytes written.
        size: u8,
        /// Source register.
        src: Gpr,
    },
    /// Store an immediate of `size` bytes.
    WriteImm {
        /// Instruction length.
        len: u8,
        /// Bytes written.
        size: u8,
        /// The value (already sign-extended to `size`).
        value: u64,
    },
    /// Not an instruction nvmx emulates.
    Unsupported,
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn next(&mut self) -> Option<u8> {
        let v = *self.b.get(self.i)?;
        self.i += 1;
        Some(v)
    }
    fn imm(&mut self, n: usize) -> Option<u64> {
        let mut v = 0u64;
        for k in 0..n {
            v |= (self.next()? as u64) << (8 * k);
        }
        Some(v)
    }
}

/// Skip a ModRM memory operand's SIB and displacement; `None` if it is a register operand
/// (mod = 3: then there is no memory access to emulate).
fn skip_modrm(c: &mut Cursor<'_>, modrm: u8, addr_size: u8) -> Option<()> {
    let md = modrm >> 6;
    let rm = modrm & 7;
    if md == 3 {
        return None;
    }
    if addr_size == 2 {
        let disp = match (md, rm) {
            (0, 6) => 2,
            (0, _) => 0,
            (1, _) => 1,
            _ => 2,
        };
        c.imm(disp)?;
        return Some(());
    }
    let mut base = rm;
    if rm == 4 {
        base = c.next()? & 7;
    }
    let disp = match md {
        0 if base == 5 => 4,
        0 => 0,
        1 => 1,
        _ => 4,
    };
    c.imm(disp)?;
    Some(())
}

/// Decode the instruction at the start of `bytes` (up to 15 bytes; fewer if the fetch
/// stopped early — a truncated instruction is Unsupported).
pub fn decode(bytes: &[u8], mode: CpuMode) -> Decoded {
    decode_inner(bytes, mode).unwrap_or(Decoded::Unsupported)
}

fn decode_inner(bytes: &[u8], mode: CpuMode) -> Option<Decoded> {
    let mut c = Cursor { b: &bytes[..bytes.len().min(15)], i: 0 };
    let mut opsize_prefix = false;
    let mut addrsize_prefix = false;
    let mut rex = 0u8;
    let mut op = loop {
        let b = c.next()?;
        match b {
            0x66 => opsize_prefix = true,
            0x67 => addrsize_prefix = true,
            // Segment overrides do not change the GPA the exit reports.
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 => {}
            // LOCK and REP have no business on MOV; refuse rather than guess.
            0xf0 | 0xf2 | 0xf3 => return Some(Decoded::Unsupported),
            0x40..=0x4f if mode == CpuMode::Bits64 => {
                rex = b;
                // REX must be the last prefix.
                break c.next()?;
            }
            _ => break b,
        }
    };
    let rex_w = rex & 8 != 0;
    let (rex_r, rex_b) = ((rex >> 2) & 1, rex & 1);
    let default_size: u8 = if mode == CpuMode::Bits16 { 2 } else { 4 };
    let opsize = if rex_w {
        8
    } else if opsize_prefix {
        6 - default_size // 2 <-> 4
    } else {
        default_size
    };
    let addr_size = match (mode, addrsize_prefix) {
        (CpuMode::Bits64, false) => 8,
        (CpuMode::Bits64, true) => 4,
        (CpuMode::Bits32, false) | (CpuMode::Bits16, true) => 4,
        _ => 2,
    };
    let byte_reg = |n: u8| Gpr { num: n, high_byte: rex == 0 && (4..8).contains(&n) };
    let full_reg = |n: u8| Gpr { num: n, high_byte: false };
    let mut two_byte = false;
    if op == 0x0f {
        two_byte = true;
        op = c.next()?;
    }
    let d = match (two_byte, op) {
        (false, 0x88..=0x8b) => {
            let modrm = c.next()?;
            skip_modrm(&mut c, modrm, addr_size)?;
            let reg = ((modrm >> 3) & 7) | (rex_r << 3);
            let size = if op & 1 == 0 { 1 } else { opsize };
            let r = if size == 1 { byte_reg(reg) } else { full_reg(reg) };
            let len = c.i as u8;
            if op & 2 == 0 {
                Decoded::WriteReg { len, size, src: r }
            } else {
                Decoded::Read { len, size, dst: r, dst_size: size, extend: Extend::None }
            }
        }
        (false, 0xc6 | 0xc7) => {
            let modrm = c.next()?;
            if (modrm >> 3) & 7 != 0 {
                return Some(Decoded::Unsupported);
            }
            skip_modrm(&mut c, modrm, addr_size)?;
            let size = if op == 0xc6 { 1 } else { opsize };
            let imm_len = size.min(4) as usize;
            let raw = c.imm(imm_len)?;
            // imm32 is sign-extended to 64 bits (REX.W C7).
            let value = if size == 8 { raw as u32 as i32 as i64 as u64 } else { raw };
            Decoded::WriteImm { len: c.i as u8, size, value }
        }
        (false, 0xa0..=0xa3) => {
            c.imm(addr_size as usize)?;
            let size = if op & 1 == 0 { 1 } else { opsize };
            let rax = Gpr { num: 0, high_byte: false };
            let len = c.i as u8;
            if op & 2 == 0 {
                Decoded::Read { len, size, dst: rax, dst_size: size, extend: Extend::None }
            } else {
                Decoded::WriteReg { len, size, src: rax }
            }
        }
        (true, 0xb6 | 0xb7 | 0xbe | 0xbf) => {
            let modrm = c.next()?;
            skip_modrm(&mut c, modrm, addr_size)?;
            let reg = ((modrm >> 3) & 7) | (rex_r << 3);
            let size = if op & 1 == 0 { 1 } else { 2 };
            let extend = if op & 8 == 0 { Extend::Zero } else { Extend::Sign };
            Decoded::Read { len: c.i as u8, size, dst: full_reg(reg), dst_size: opsize, extend }
        }
        _ => Decoded::Unsupported,
    };
    let _ = rex_b; // the memory operand's base register does not matter here
    Some(d)
}

/// The value a register gets when `data` (the `size` bytes read) is loaded into it by a
/// [`Decoded::Read`]: 32-bit destinations zero the upper half (SDM vol. 1 3.4.1.1), 8- and
/// 16-bit ones keep the other bits.
pub fn load(old: u64, dst: Gpr, dst_size: u8, size: u8, extend: Extend, data: u64) -> u64 {
    let mask = |n: u8| if n >= 8 { u64::MAX } else { (1u64 << (8 * n)) - 1 };
    let mut v = data & mask(size);
    if extend == Extend::Sign && (1..8).contains(&size) {
        let shift = 64 - 8 * size as u32;
        v = ((v << shift) as i64 >> shift) as u64;
    }
    v &= mask(dst_size);
    match dst_size {
        8 => v,
        4 => v,
        1 if dst.high_byte => (old & !0xff00) | (v << 8),
        n => (old & !mask(n)) | v,
    }
}

/// The `size` bytes a [`Decoded::WriteReg`] stores from register value `reg_value`.
pub fn store(reg_value: u64, src: Gpr, size: u8) -> u64 {
    let v = if src.high_byte { reg_value >> 8 } else { reg_value };
    if size >= 8 { v } else { v & ((1u64 << (8 * size)) - 1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAX: Gpr = Gpr { num: 0, high_byte: false };

    #[test]
    fn mov_loads_64bit() {
        // mov rax, [0xc0000000] (48 8b 04 25 disp32), as READ_ONCE of a u64 compiles.
        let d = decode(&[0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0xc0], CpuMode::Bits64);
        assert_eq!(d, Decoded::Read { len: 8, size: 8, dst: RAX, dst_size: 8, extend: Extend::None });
        // mov r9, [rdx+8] (4c 8b 4a 08)
        let d = decode(&[0x4c, 0x8b, 0x4a, 0x08], CpuMode::Bits64);
        assert_eq!(d, Decoded::Read { len: 4, size: 8, dst: Gpr { num: 9, high_byte: false }, dst_size: 8, extend: Extend::None });
        // mov eax, [rip+disp32] (8b 05 disp32)
        let d = decode(&[0x8b, 0x05, 1, 2, 3, 4], CpuMode::Bits64);
        assert!(matches!(d, Decoded::Read { len: 6, size: 4, .. }));
    }

    #[test]
    fn mov_stores() {
        // mov [rdi], esi (89 37)
        assert_eq!(decode(&[0x89, 0x37], CpuMode::Bits64), Decoded::WriteReg { len: 2, size: 4, src: Gpr { num: 6, high_byte: false } });
        // mov [bx], ah (88 27), 16-bit
        assert_eq!(decode(&[0x88, 0x27], CpuMode::Bits16), Decoded::WriteReg { len: 2, size: 1, src: Gpr { num: 4, high_byte: true } });
        // REX makes reg 4 SPL, not AH: mov [rax], spl (40 88 20)
        assert_eq!(decode(&[0x40, 0x88, 0x20], CpuMode::Bits64), Decoded::WriteReg { len: 3, size: 1, src: Gpr { num: 4, high_byte: false } });
        // mov word [eax+ecx*4+0x10], 0x1234 (66 c7 44 88 10 34 12), 32-bit
        assert_eq!(
            decode(&[0x66, 0xc7, 0x44, 0x88, 0x10, 0x34, 0x12], CpuMode::Bits32),
            Decoded::WriteImm { len: 7, size: 2, value: 0x1234 }
        );
        // mov qword [rax], -1 (48 c7 00 ff ff ff ff): imm32 sign-extended
        assert_eq!(decode(&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff], CpuMode::Bits64), Decoded::WriteImm { len: 7, size: 8, value: u64::MAX });
        // mov byte [0x200], 7 in real mode (c6 06 00 02 07)
        assert_eq!(decode(&[0xc6, 0x06, 0x00, 0x02, 0x07], CpuMode::Bits16), Decoded::WriteImm { len: 5, size: 1, value: 7 });
    }

    #[test]
    fn moffs_forms() {
        // mov [0], al in real mode (a2 00 00)
        assert_eq!(decode(&[0xa2, 0, 0], CpuMode::Bits16), Decoded::WriteReg { len: 3, size: 1, src: RAX });
        // mov rax, [moffs64] (48 a1 + 8 bytes)
        assert!(matches!(decode(&[0x48, 0xa1, 0, 0, 0, 0, 0, 0, 0, 0], CpuMode::Bits64), Decoded::Read { len: 10, size: 8, .. }));
        // 67: 32-bit moffs in 64-bit mode
        assert!(matches!(decode(&[0x67, 0xa1, 0, 0, 0, 0], CpuMode::Bits64), Decoded::Read { len: 6, size: 4, .. }));
    }

    #[test]
    fn movzx_movsx() {
        // movzx eax, byte [rbx] (0f b6 03)
        assert_eq!(decode(&[0x0f, 0xb6, 0x03], CpuMode::Bits64), Decoded::Read { len: 3, size: 1, dst: RAX, dst_size: 4, extend: Extend::Zero });
        // movsx rcx, word [rbx] (48 0f bf 0b)
        assert_eq!(decode(&[0x48, 0x0f, 0xbf, 0x0b], CpuMode::Bits64), Decoded::Read { len: 4, size: 2, dst: Gpr { num: 1, high_byte: false }, dst_size: 8, extend: Extend::Sign });
    }

    #[test]
    fn what_is_not_emulated() {
        assert_eq!(decode(&[0x89, 0xc0], CpuMode::Bits64), Decoded::Unsupported, "register to register");
        assert_eq!(decode(&[0xf3, 0xa4], CpuMode::Bits64), Decoded::Unsupported, "rep movsb");
        assert_eq!(decode(&[0xf0, 0x89, 0x07], CpuMode::Bits64), Decoded::Unsupported, "lock");
        assert_eq!(decode(&[0x01, 0x07], CpuMode::Bits64), Decoded::Unsupported, "add");
        assert_eq!(decode(&[0xc7, 0x08, 1, 2, 3, 4], CpuMode::Bits64), Decoded::Unsupported, "C7 /1");
        assert_eq!(decode(&[0x8b, 0x04], CpuMode::Bits64), Decoded::Unsupported, "truncated");
        assert_eq!(decode(&[], CpuMode::Bits64), Decoded::Unsupported);
    }

    #[test]
    fn high_byte_registers_live_in_the_legacy_four() {
        for (num, reg) in [(4, 0), (5, 1), (6, 2), (7, 3)] {
            assert_eq!(Gpr { num, high_byte: true }.reg(), reg, "AH..BH");
            assert_eq!(Gpr { num, high_byte: false }.reg(), num, "SPL..DIL / SP..DI");
        }
        // mov [bx], ch (88 2f): CH is bits 15:8 of RCX.
        let Decoded::WriteReg { src, .. } = decode(&[0x88, 0x2f], CpuMode::Bits16) else { panic!() };
        assert_eq!(src.reg(), 1);
        assert_eq!(store(0x1234, src, 1), 0x12);
    }

    #[test]
    fn register_semantics() {
        let old = 0x1122_3344_5566_7788;
        assert_eq!(load(old, RAX, 8, 8, Extend::None, 0xbeef), 0xbeef);
        assert_eq!(load(old, RAX, 4, 4, Extend::None, 0xffff_ffff_dead_beef), 0xdead_beef, "32-bit zero-extends");
        assert_eq!(load(old, RAX, 2, 2, Extend::None, 0xbeef), 0x1122_3344_5566_beef);
        assert_eq!(load(old, RAX, 1, 1, Extend::None, 0xef), 0x1122_3344_5566_77ef);
        assert_eq!(load(old, Gpr { num: 4, high_byte: true }, 1, 1, Extend::None, 0xef), 0x1122_3344_5566_ef88, "AH");
        assert_eq!(load(old, RAX, 8, 1, Extend::Sign, 0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(load(old, RAX, 4, 2, Extend::Sign, 0x8000), 0xffff_8000);
        assert_eq!(load(old, RAX, 2, 1, Extend::Zero, 0x80), 0x1122_3344_5566_0080);
        assert_eq!(store(old, RAX, 2), 0x7788);
        assert_eq!(store(old, Gpr { num: 0, high_byte: true }, 1), 0x77);
        assert_eq!(store(old, RAX, 8), old);
    }
}
