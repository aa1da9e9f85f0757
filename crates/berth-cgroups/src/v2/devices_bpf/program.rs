//! A [`DevicePolicy`] → the instructions of a BPF_PROG_TYPE_CGROUP_DEVICE program.
//!
//! The code is runc's (after crun's ebpf.c), hand-assembled:
//!
//! ```text
//!   r2 = ctx->access_type & 0xffff      device type (BPF_DEVCG_DEV_BLOCK 1, CHAR 2)
//!   r3 = ctx->access_type >> 16         requested access (MKNOD 1, READ 2, WRITE 4)
//!   r4 = ctx->major; r5 = ctx->minor
//! per exception, in the policy's order (every exception has the same action, so the
//! order cannot change the result):
//!   if r2 != type goto next
//!   if (r3 & access) != r3 goto next    omitted when access is rwm
//!   if r4 != major goto next            omitted for a wildcard major
//!   if r5 != minor goto next            omitted for a wildcard minor
//!   r0 = !default; exit
//! next: …
//!   r0 = default; exit
//! ```
//!
//! A request matches an exception only if all its access bits are in the exception, as in
//! the v1 kernel. The number comparisons are 64-bit against a sign-extended immediate, as in
//! runc: a number above 2^31-1 never matches, which is moot since Linux majors have 12 bits
//! and minors 20.

use super::rules::{DeviceKind, DevicePolicy};

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    /// Opcode: class | operation | source.
    pub code: u8,
    /// dst_reg and src_reg, 4 bits each (bitfield order follows the byte order).
    pub regs: u8,
    /// Signed jump offset (in instructions, from the next one) or memory offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

// Instruction classes, operations and sources (include/uapi/linux/bpf_common.h, bpf.h).
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

/// `BPF_DEVCG_DEV_BLOCK`: the type of a block device in `bpf_cgroup_dev_ctx`.
pub const BPF_DEVCG_DEV_BLOCK: i32 = 1;
/// `BPF_DEVCG_DEV_CHAR`: the type of a character device in `bpf_cgroup_dev_ctx`.
pub const BPF_DEVCG_DEV_CHAR: i32 = 2;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

impl BpfInsn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
        #[cfg(target_endian = "little")]
        let regs = (dst & 0xf) | (src << 4);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | (src & 0xf);
        BpfInsn { code, regs, off, imm }
    }

    /// The destination register.
    pub fn dst(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs & 0xf
        } else {
            self.regs >> 4
        }
    }

    /// The source register.
    pub fn src(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs >> 4
        } else {
            self.regs & 0xf
        }
    }

    /// `dst = *(u32 *)(src + off)`
    fn load_u32(dst: u8, src: u8, off: i16) -> BpfInsn {
        BpfInsn::new(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
    }

    /// `dst = (u32)dst & imm`
    fn and32(dst: u8, imm: i32) -> BpfInsn {
        BpfInsn::new(BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, imm)
    }

    /// `dst = (u32)dst >> imm`
    fn rsh32(dst: u8, imm: i32) -> BpfInsn {
        BpfInsn::new(BPF_ALU | BPF_RSH | BPF_K, dst, 0, 0, imm)
    }

    /// `dst = (u32)src`
    fn mov32_reg(dst: u8, src: u8) -> BpfInsn {
        BpfInsn::new(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
    }

    /// `dst = (u32)imm`
    fn mov32(dst: u8, imm: i32) -> BpfInsn {
        BpfInsn::new(BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, imm)
    }

    /// `if dst != imm goto +off`
    fn jne(dst: u8, imm: i32, off: i16) -> BpfInsn {
        BpfInsn::new(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm)
    }

    /// `if dst != src goto +off`
    fn jne_reg(dst: u8, src: u8, off: i16) -> BpfInsn {
        BpfInsn::new(BPF_JMP | BPF_JNE | BPF_X, dst, src, off, 0)
    }

    /// `return r0`
    fn exit() -> BpfInsn {
        BpfInsn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
    }
}

impl std::fmt::Display for BpfInsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (d, s, off, imm) = (self.dst(), self.src(), self.off, self.imm);
        match self.code {
            c if c == BPF_LDX | BPF_MEM | BPF_W => write!(f, "r{d} = *(u32 *)(r{s} + {off})"),
            c if c == BPF_ALU | BPF_AND | BPF_K => write!(f, "w{d} &= {imm:#x}"),
            c if c == BPF_ALU | BPF_RSH | BPF_K => write!(f, "w{d} >>= {imm}"),
            c if c == BPF_ALU | BPF_MOV | BPF_X => write!(f, "w{d} = w{s}"),
            c if c == BPF_ALU | BPF_MOV | BPF_K => write!(f, "w{d} = {imm}"),
            c if c == BPF_JMP | BPF_JNE | BPF_K => write!(f, "if r{d} != {imm:#x} goto +{off}"),
            c if c == BPF_JMP | BPF_JNE | BPF_X => write!(f, "if r{d} != r{s} goto +{off}"),
            c if c == BPF_JMP | BPF_EXIT => write!(f, "exit"),
            c => write!(f, "op {c:#04x} r{d} r{s} {off} {imm}"),
        }
    }
}

/// Assembles the program deciding as `policy` does.
pub fn assemble(policy: &DevicePolicy) -> Vec<BpfInsn> {
    let mut out = vec![
        BpfInsn::load_u32(R2, R1, 0),
        BpfInsn::and32(R2, 0xffff),
        BpfInsn::load_u32(R3, R1, 0),
        BpfInsn::rsh32(R3, 16),
        BpfInsn::load_u32(R4, R1, 4),
        BpfInsn::load_u32(R5, R1, 8),
    ];
    let exception_action = i32::from(!policy.default_allow);
    for (m, access) in &policy.exceptions {
        let check_access = access.bits() != super::rules::Access::ALL.bits();
        // The tests before the two-instruction verdict; each skips to the next block.
        let tests = 1 + 3 * usize::from(check_access) + usize::from(m.major.is_some()) + usize::from(m.minor.is_some());
        let block_end = out.len() + tests + 2;
        // Blocks are at most 8 instructions, so the offset always fits.
        let skip = |at: usize| i16::try_from(block_end - (at + 1)).unwrap_or(i16::MAX);
        let typ = match m.kind {
            DeviceKind::Block => BPF_DEVCG_DEV_BLOCK,
            DeviceKind::Char => BPF_DEVCG_DEV_CHAR,
        };
        out.push(BpfInsn::jne(R2, typ, skip(out.len())));
        if check_access {
            // r1 (the context pointer) is no longer needed: it is the scratch register.
            out.push(BpfInsn::mov32_reg(R1, R3));
            out.push(BpfInsn::and32(R1, i32::from(access.bits())));
            out.push(BpfInsn::jne_reg(R1, R3, skip(out.len())));
        }
        // The casts keep runc's encoding: the kernel sign-extends the immediate.
        if let Some(major) = m.major {
            out.push(BpfInsn::jne(R4, major as i32, skip(out.len())));
        }
        if let Some(minor) = m.minor {
            out.push(BpfInsn::jne(R5, minor as i32, skip(out.len())));
        }
        out.push(BpfInsn::mov32(R0, exception_action));
        out.push(BpfInsn::exit());
        debug_assert_eq!(out.len(), block_end);
    }
    out.push(BpfInsn::mov32(R0, i32::from(policy.default_allow)));
    out.push(BpfInsn::exit());
    out
}

/// Runs `program` on one device request, as the kernel would: `Some(allowed)`, or `None`
/// for an instruction this module never emits. Lets tests check the decision table.
pub fn interpret(program: &[BpfInsn], kind: DeviceKind, access: u8, major: u32, minor: u32) -> Option<bool> {
    let typ = match kind {
        DeviceKind::Block => BPF_DEVCG_DEV_BLOCK as u32,
        DeviceKind::Char => BPF_DEVCG_DEV_CHAR as u32,
    };
    let ctx = [typ | (u32::from(access) << 16), major, minor];
    let mut reg = [0u64; 11];
    let mut pc = 0usize;
    while let Some(i) = program.get(pc) {
        let (d, s) = (usize::from(i.dst()), usize::from(i.src()));
        pc += 1;
        let jump = |pc: usize| pc.checked_add_signed(isize::from(i.off));
        match i.code {
            c if c == BPF_LDX | BPF_MEM | BPF_W => {
                // Only the context is ever loaded from (r1 at offsets 0, 4, 8).
                reg[d] = u64::from(*ctx.get(usize::try_from(i.off).ok()? / 4)?)
            }
            c if c == BPF_ALU | BPF_AND | BPF_K => reg[d] = u64::from(reg[d] as u32 & i.imm as u32),
            c if c == BPF_ALU | BPF_RSH | BPF_K => reg[d] = u64::from((reg[d] as u32) >> i.imm),
            c if c == BPF_ALU | BPF_MOV | BPF_X => reg[d] = u64::from(reg[s] as u32),
            c if c == BPF_ALU | BPF_MOV | BPF_K => reg[d] = u64::from(i.imm as u32),
            c if c == BPF_JMP | BPF_JNE | BPF_K => {
                if reg[d] != i64::from(i.imm) as u64 {
                    pc = jump(pc)?;
                }
            }
            c if c == BPF_JMP | BPF_JNE | BPF_X => {
                if reg[d] != reg[s] {
                    pc = jump(pc)?;
                }
            }
            c if c == BPF_JMP | BPF_EXIT => return Some(reg[R0 as usize] != 0),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v2::devices_bpf::rules::Access;
    use oci_spec::runtime::LinuxDeviceCgroup;

    fn program(json: &str) -> Vec<BpfInsn> {
        let rules: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).expect("test JSON");
        assemble(&DevicePolicy::from_rules(&rules).expect("valid rules"))
    }

    fn listing(p: &[BpfInsn]) -> Vec<String> {
        p.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn bpf_insn_is_the_kernel_struct() {
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
        let i = BpfInsn::load_u32(R2, R1, 4);
        // SAFETY: BpfInsn is repr(C), 8 bytes with no padding; every byte is initialised.
        let bytes: [u8; 8] = unsafe { std::mem::transmute(i) };
        if cfg!(target_endian = "little") {
            assert_eq!(bytes, [0x61, 0x12, 4, 0, 0, 0, 0, 0]);
        }
    }

    #[test]
    fn deny_all_with_null_and_read_only_zero_assembles_like_runc() {
        let p = program(
            r#"[{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}]"#,
        );
        assert_eq!(
            listing(&p),
            [
                "r2 = *(u32 *)(r1 + 0)",
                "w2 &= 0xffff",
                "r3 = *(u32 *)(r1 + 0)",
                "w3 >>= 16",
                "r4 = *(u32 *)(r1 + 4)",
                "r5 = *(u32 *)(r1 + 8)",
                // c 1:3 rwm: no access test
                "if r2 != 0x2 goto +4",
                "if r4 != 0x1 goto +3",
                "if r5 != 0x3 goto +2",
                "w0 = 1",
                "exit",
                // c 1:5 r
                "if r2 != 0x2 goto +7",
                "w1 = w3",
                "w1 &= 0x2",
                "if r1 != r3 goto +4",
                "if r4 != 0x1 goto +3",
                "if r5 != 0x5 goto +2",
                "w0 = 1",
                "exit",
                // default
                "w0 = 0",
                "exit",
            ]
        );
    }

    #[test]
    fn the_program_decides_like_the_last_matching_rule() {
        let p = program(
            r#"[{"allow": false},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"},
                {"allow": true, "type": "c", "major": 136, "access": "rw"},
                {"allow": true, "type": "b", "access": "m"}]"#,
        );
        let (r, w, m) = (Access::READ.bits(), Access::WRITE.bits(), Access::MKNOD.bits());
        let c = DeviceKind::Char;
        let cases = [
            (c, r | w, 1, 3, true),
            (c, m, 1, 3, true),
            (c, r, 1, 5, true),
            (c, w, 1, 5, false),
            (c, r | w, 1, 5, false),
            (c, r, 1, 9, false),
            (c, r | w, 136, 7, true),
            (c, m, 136, 7, false),
            (DeviceKind::Block, m, 8, 0, true),
            (DeviceKind::Block, r, 8, 0, false),
            (DeviceKind::Block, r, 1, 3, false),
        ];
        for (kind, access, major, minor, want) in cases {
            assert_eq!(interpret(&p, kind, access, major, minor), Some(want), "{kind:?} {access} {major}:{minor}");
        }
    }

    #[test]
    fn allow_all_with_a_deny_exception_inverts_the_verdicts() {
        let p = program(r#"[{"allow": true, "type": "a"}, {"allow": false, "type": "c", "major": 1, "minor": 9, "access": "w"}]"#);
        let (r, w) = (Access::READ.bits(), Access::WRITE.bits());
        assert_eq!(interpret(&p, DeviceKind::Char, w, 1, 9), Some(false));
        assert_eq!(interpret(&p, DeviceKind::Char, r, 1, 9), Some(true));
        assert_eq!(interpret(&p, DeviceKind::Block, w, 8, 0), Some(true));
        assert_eq!(listing(&p).last().map(String::as_str), Some("exit"));
        assert_eq!(p[p.len() - 2].to_string(), "w0 = 1");
    }
}
