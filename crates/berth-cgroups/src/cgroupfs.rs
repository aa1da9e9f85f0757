//! Reading and writing cgroup interface files, with errors that name the file.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Writes `value` to `dir/file` in one write(2), as the kernel wants it.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    write_raw(dir, file, value).map_err(|source| Error::Write {
        dir: dir.to_path_buf(),
        file: file.to_string(),
        value: value.to_string(),
        source,
    })
}

/// Like [`write`] but returns the bare `io::Error` so callers can look at its kind.
pub(crate) fn write_raw(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    // O_TRUNC is ignored by kernfs but keeps fake files in tests honest.
    let mut f = OpenOptions::new().write(true).truncate(true).open(dir.join(file))?;
    f.write_all(value.as_bytes())
}

/// Reads `dir/file` as a string.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String> {
    std::fs::read_to_string(dir.join(file)).map_err(|source| Error::Read { dir: dir.to_path_buf(), file: file.to_string(), source })
}

/// Reads `dir/file`, or `None` when it does not exist (controller or feature absent).
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    match std::fs::read_to_string(dir.join(file)) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read { dir: dir.to_path_buf(), file: file.to_string(), source }),
    }
}

/// Parses a single number; "max" reads as `u64::MAX` like runc does.
pub(crate) fn parse_u64(dir: &Path, file: &str, text: &str) -> Result<u64> {
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse::<u64>().map_err(|e| Error::Parse { dir: dir.to_path_buf(), file: file.to_string(), reason: format!("{t:?}: {e}") })
}

/// Reads a single-number file; 0 when the file is absent.
pub(crate) fn read_u64_or_zero(dir: &Path, file: &str) -> Result<u64> {
    match read_opt(dir, file)? {
        Some(s) => parse_u64(dir, file, &s),
        None => Ok(0),
    }
}

/// Creates `dir` and its missing parents, mode 0755.
pub(crate) fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })
}

/// Writes `pid` to `dir/cgroup.procs`.
pub(crate) fn add_pid(dir: &Path, pid: i32) -> Result<()> {
    write(dir, "cgroup.procs", &pid.to_string())
}

/// Lists the pids of `dir` and all its descendant cgroups.
pub(crate) fn all_pids(dir: &Path) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    collect_pids(dir, &mut out)?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let Some(text) = read_opt(dir, "cgroup.procs")? else {
        return Ok(());
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let pid = line.trim().parse::<i32>().map_err(|e| Error::Parse {
            dir: dir.to_path_buf(),
            file: "cgroup.procs".into(),
            reason: format!("{line:?}: {e}"),
        })?;
        out.push(pid);
    }
    for child in child_dirs(dir)? {
        collect_pids(&child, out)?;
    }
    Ok(())
}

/// Lists the sub-cgroups (directories) of `dir`; empty when `dir` is gone.
pub(crate) fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { path: dir.to_path_buf(), source }),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Removes `dir` and its sub-cgroups, deepest first, retrying on EBUSY while
/// exiting tasks leave. A missing directory is not an error.
/// Removes `dir` if it is an empty leaf (no processes, no child cgroups): true when it is gone.
/// One rmdir, the common case after a container's last process exited.
pub(crate) fn remove_if_empty(dir: &Path) -> Result<bool> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) || e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(false),
        Err(source) => Err(Error::Io { path: dir.to_path_buf(), source }),
    }
}

pub(crate) fn remove_tree(dir: &Path) -> Result<()> {
    for child in child_dirs(dir)? {
        remove_tree(&child)?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pause = Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(source) => return Err(Error::Io { path: dir.to_path_buf(), source }),
        }
    }
}

/// Parses a "key value" per line file (cpu.stat, memory.stat, memory.events…).
pub(crate) fn parse_flat_keyed(dir: &Path, file: &str, text: &str) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v), None) = (it.next(), it.next(), it.next()) else {
            return Err(Error::Parse {
                dir: dir.to_path_buf(),
                file: file.to_string(),
                reason: format!("line {line:?} is not \"key value\""),
            });
        };
        out.push((k.to_string(), parse_u64(dir, file, v)?));
    }
    Ok(out)
}

/// Looks up `key` in a flat keyed file; `None` when the file or the key is absent.
pub(crate) fn read_keyed(dir: &Path, file: &str, key: &str) -> Result<Option<u64>> {
    let Some(text) = read_opt(dir, file)? else {
        return Ok(None);
    };
    Ok(parse_flat_keyed(dir, file, &text)?.into_iter().find(|(k, _)| k == key).map(|(_, v)| v))
}

/// Polls `check` every few milliseconds for up to `timeout`.
pub(crate) fn wait_until(dir: &Path, what: &str, timeout: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout { dir: dir.to_path_buf(), what: what.to_string() });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_parses_and_rejects_garbage() {
        let d = Path::new("/x");
        let kv = parse_flat_keyed(d, "cpu.stat", "usage_usec 10\nnr_periods 2\n").unwrap();
        assert_eq!(kv, vec![("usage_usec".into(), 10), ("nr_periods".into(), 2)]);
        assert!(parse_flat_keyed(d, "cpu.stat", "usage_usec\n").is_err());
        assert!(parse_flat_keyed(d, "cpu.stat", "a b c\n").is_err());
    }

    #[test]
    fn max_reads_as_u64_max() {
        assert_eq!(parse_u64(Path::new("/x"), "pids.max", "max\n").unwrap(), u64::MAX);
        let err = parse_u64(Path::new("/x"), "pids.max", "abc").unwrap_err().to_string();
        assert!(err.contains("pids.max"), "{err}");
    }
}
