//! A content-addressed cache of compiled programs, so that later starts skip libseccomp.
//!
//! Key: SHA-256 of the canonical JSON of the seccomp object (re-serialized from the struct), the kernel's machine and
//! release, the libseccomp version and this cache's format version. File
//! `<cache_dir>/<key>.bpf`: magic, instruction count (u32 LE), the program, and the SHA-256 of
//! the program. A file that is short, corrupt, not owned by us or writable by others is
//! ignored and rewritten. The cache directory must be writable only by the runtime's user:
//! whoever can write it decides the filter of every container.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};

use super::compile::compile_bpf;
use super::{validate, CompiledFilter, INSN_SIZE};
use crate::error::{Context, Error, Result};

/// Bump when the translation in `compile.rs` changes what a given profile compiles to.
const CACHE_FORMAT: &str = "berth-seccomp-cache-v1";
const MAGIC: &[u8; 8] = b"BERTHBPF";
const HEADER_LEN: usize = MAGIC.len() + 4;
const DIGEST_LEN: usize = 32;

/// Like [`prepare`](super::prepare), but reuse a program compiled earlier for the same
/// profile, kernel and libseccomp from `cache_dir` (created if missing), and store new ones.
pub fn prepare_cached(seccomp: &LinuxSeccomp, cache_dir: &Path) -> Result<CompiledFilter> {
    let flags = validate::check(seccomp)?;
    let path = cache_dir.join(format!("{}.bpf", cache_key(seccomp)?));
    if let Some(bpf) = read_entry(&path) {
        match CompiledFilter::from_bpf(&bpf, flags) {
            Ok(filter) => {
                tracing::debug!(path = %path.display(), "seccomp: compiled filter from cache");
                return Ok(filter);
            }
            Err(e) => tracing::debug!(path = %path.display(), error = %e, "seccomp: unusable cache entry, recompiling"),
        }
    }
    let bpf = compile_bpf(seccomp)?;
    let filter = CompiledFilter::from_bpf(&bpf, flags)?;
    if let Err(e) = write_entry(cache_dir, &path, &bpf) {
        // The cache only saves time: a read-only or full cache directory must not fail a start.
        tracing::warn!(error = %e, "seccomp: could not store the compiled filter in the cache");
    }
    Ok(filter)
}

/// Hex SHA-256 naming the compiled program of `seccomp` on this kernel and libseccomp.
fn cache_key(seccomp: &LinuxSeccomp) -> Result<String> {
    // Serializing the parsed struct is canonical: fields come out in declaration order and
    // there are no maps, so key order, whitespace and number spelling of the input vanish.
    // (Going through serde_json::Value to sort keys costs six times more.)
    let canonical = serde_json::to_vec(seccomp).map_err(|e| Error::InvalidConfig(format!("seccomp: serialize the seccomp object: {e}")))?;
    let uts = nix::sys::utsname::uname().map_err(|source| Error::Sys { context: "seccomp: uname".into(), source })?;
    let lib = libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro)).unwrap_or_default();

    let mut hasher = Sha256::new();
    for part in [CACHE_FORMAT.as_bytes(), &canonical, uts.machine().as_encoded_bytes(), uts.release().as_encoded_bytes(), lib.as_bytes()] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    Ok(hex(&hasher.finalize()))
}

/// The program stored at `path`, or `None` when it is missing or cannot be trusted.
fn read_entry(path: &Path) -> Option<Vec<u8>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "seccomp: cannot open cache entry");
            return None;
        }
    };
    let meta = file.metadata().ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
        tracing::warn!(path = %path.display(), "seccomp: cache entry not owned by us or writable by others, ignored");
        return None;
    }
    let mut raw = Vec::with_capacity(meta.len().min(1 << 20) as usize);
    file.read_to_end(&mut raw).ok()?;
    let bpf = decode_entry(&raw);
    if bpf.is_none() {
        tracing::debug!(path = %path.display(), "seccomp: corrupt cache entry, recompiling");
    }
    bpf
}

/// Check the framing and digest of a cache file; returns the program.
fn decode_entry(raw: &[u8]) -> Option<Vec<u8>> {
    let body_end = raw.len().checked_sub(DIGEST_LEN)?;
    if body_end < HEADER_LEN || &raw[..MAGIC.len()] != MAGIC {
        return None;
    }
    let count = u32::from_le_bytes(raw[MAGIC.len()..HEADER_LEN].try_into().ok()?) as usize;
    let bpf = &raw[HEADER_LEN..body_end];
    if count.checked_mul(INSN_SIZE)? != bpf.len() || Sha256::digest(bpf).as_slice() != &raw[body_end..] {
        return None;
    }
    Some(bpf.to_vec())
}

/// Frame a program as a cache file.
fn encode_entry(bpf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + bpf.len() + DIGEST_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&((bpf.len() / INSN_SIZE) as u32).to_le_bytes());
    out.extend_from_slice(bpf);
    out.extend_from_slice(&Sha256::digest(bpf));
    out
}

/// Store the program atomically: a private temporary file renamed over `path`.
fn write_entry(dir: &Path, path: &Path, bpf: &[u8]) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("seccomp: create cache directory {}", dir.display()))?;
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp-{}-{nanos}-{seq}.bpf", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&encode_entry(bpf)))
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.with_context(|| format!("seccomp: write cache entry {}", path.display()))
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_entry_round_trips_and_rejects_damage() {
        let bpf: Vec<u8> = (0..64u8).collect();
        let raw = encode_entry(&bpf);
        assert_eq!(decode_entry(&raw), Some(bpf.clone()));
        assert_eq!(decode_entry(&raw[..raw.len() - 1]), None);
        assert_eq!(decode_entry(&[]), None);
        let mut flipped = raw.clone();
        flipped[HEADER_LEN + 3] ^= 1;
        assert_eq!(decode_entry(&flipped), None);
    }
}
