//! Translate the OCI seccomp object into a libseccomp filter and export it as classic BPF.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Instant;

use libseccomp::{ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompArg, LinuxSeccompOperator, LinuxSyscall};

use super::validate::{self, scmp_action, MAX_ARG_INDEX};
use super::CompiledFilter;
use crate::error::{Context, Error, Result};

/// Validate `seccomp` and compile it to BPF with libseccomp (about a millisecond for a
/// docker-sized profile). May run in the parent before the fork.
pub fn prepare(seccomp: &LinuxSeccomp) -> Result<CompiledFilter> {
    let flags = validate::check(seccomp)?;
    let bpf = compile_bpf(seccomp)?;
    CompiledFilter::from_bpf(&bpf, flags)
}

/// Build the libseccomp filter and export its BPF program; `seccomp` is already validated.
pub(super) fn compile_bpf(seccomp: &LinuxSeccomp) -> Result<Vec<u8>> {
    let started = Instant::now();
    let default = scmp_action(seccomp.default_action(), seccomp.default_errno_ret(), "defaultAction")?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| lib_error("create filter", e))?;
    for arch in seccomp.architectures().iter().flatten() {
        ctx.add_arch(scmp_arch(*arch)).map_err(|e| lib_error(&format!("add architecture {arch}"), e))?;
    }
    let mut rules = 0usize;
    for rule in seccomp.syscalls().iter().flatten() {
        rules += add_rule(&mut ctx, rule, default)?;
    }
    let bpf = export(&ctx)?;
    tracing::debug!(
        rules,
        instructions = bpf.len() / super::INSN_SIZE,
        elapsed_us = started.elapsed().as_micros() as u64,
        "seccomp: compiled filter with libseccomp"
    );
    Ok(bpf)
}

/// Add one OCI rule (all its names); returns how many libseccomp rules were added.
fn add_rule(ctx: &mut ScmpFilterContext, rule: &LinuxSyscall, default: libseccomp::ScmpAction) -> Result<usize> {
    let first = rule.names().first().map(String::as_str).unwrap_or("");
    let action = scmp_action(rule.action(), rule.errno_ret(), &format!("syscall rule {first:?}"))?;
    if action == default {
        tracing::debug!(names = ?rule.names(), "seccomp: rule action equals the default action, skipped");
        return Ok(0);
    }
    let args: &[LinuxSeccompArg] = rule.args().as_deref().unwrap_or(&[]);
    let conditions = args.iter().map(condition).collect::<Vec<_>>();
    let mut per_index = [0usize; MAX_ARG_INDEX + 1];
    for arg in args {
        // validate::check bounds the index, but this path must not panic on its own either.
        if let Some(n) = per_index.get_mut(arg.index()) {
            *n += 1;
        }
    }
    // Two conditions on the same argument can never both hold in libseccomp's AND: runc
    // adds them as separate rules (OR) instead, and profiles rely on it.
    let split = per_index.iter().any(|&n| n > 1);

    let mut added = 0;
    for name in rule.names() {
        let syscall = match ScmpSyscall::from_name(name) {
            Ok(s) => s,
            Err(_) => {
                tracing::debug!(syscall = %name, "seccomp: syscall unknown to libseccomp, ignored");
                continue;
            }
        };
        let result = if conditions.is_empty() {
            ctx.add_rule(action, syscall).map(|_| 1)
        } else if split {
            conditions.iter().try_for_each(|c| ctx.add_rule_conditional(action, syscall, &[*c]).map(|_| ())).map(|_| conditions.len())
        } else {
            ctx.add_rule_conditional(action, syscall, &conditions).map(|_| 1)
        };
        added += result.map_err(|e| lib_error(&format!("add rule for syscall {name:?}"), e))?;
    }
    Ok(added)
}

/// The libseccomp comparison for one OCI argument condition.
fn condition(arg: &LinuxSeccompArg) -> ScmpArgCompare {
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // value is the mask, valueTwo the expected value (runtime spec, runc).
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(arg.index() as u32, ScmpCompareOp::MaskedEqual(arg.value()), arg.value_two().unwrap_or(0))
        }
    };
    ScmpArgCompare::new(arg.index() as u32, op, arg.value())
}

/// The libseccomp architecture token for an OCI `SCMP_ARCH_*` name.
fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Export the filter's BPF. libseccomp 2.5 has no `seccomp_export_bpf_mem`, so the program
/// goes through a memfd (a pipe could fill up and block on large programs).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>> {
    // SAFETY: the name is a NUL-terminated literal; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"berth-seccomp-bpf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("seccomp: memfd_create for the BPF export");
    }
    // SAFETY: fd was just created and is owned by nobody else.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file).map_err(|e| lib_error("export BPF", e))?;
    let mut bpf = Vec::new();
    file.seek(SeekFrom::Start(0)).context("seccomp: rewind the BPF export")?;
    file.read_to_end(&mut bpf).context("seccomp: read the BPF export")?;
    Ok(bpf)
}

/// A libseccomp failure, named by what was being done.
fn lib_error(what: &str, e: libseccomp::error::SeccompError) -> Error {
    Error::InvalidConfig(format!("seccomp: {what}: {e}"))
}
