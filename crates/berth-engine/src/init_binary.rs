//! Where `berth-init` (the PID 1 of `run --init`) is: next to the `berth` executable.
//!
//! The sealing re-exec (CVE-2019-5736) runs berth from a detached overlay, whose paths mean
//! nothing outside it; so the location is taken before sealing and handed to the re-executed
//! process in `_BERTH_INIT_BINARY`.

use std::path::PathBuf;

use crate::error::{Error, Result};

const ENV: &str = "_BERTH_INIT_BINARY";
/// Set by the sealing re-exec (see berth_runtime::exe_seal): the environment came from us.
const SEALED_ENV: &str = "_BERTH_EXE_SEALED";
/// The binary's name.
pub const NAME: &str = "berth-init";

/// Record where berth-init is before the process re-executes itself (call before sealing).
pub fn remember_location() {
    if std::env::var_os(SEALED_ENV).is_some() {
        return;
    }
    match std::env::current_exe() {
        Ok(exe) => std::env::set_var(ENV, exe.with_file_name(NAME)),
        Err(_) => std::env::remove_var(ENV),
    }
}

/// The berth-init executable next to `berth`; an error saying where it was looked for.
pub fn locate() -> Result<PathBuf> {
    let path = match std::env::var_os(ENV).filter(|_| std::env::var_os(SEALED_ENV).is_some()) {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .map_err(|e| Error::Invalid(format!("--init: cannot find the berth executable: {e}")))?
            .with_file_name(NAME),
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        _ => Err(Error::Invalid(format!("--init: {} not found: install berth-init next to berth", path.display()))),
    }
}
