//! berth-init runs inside containers, which need not have a dynamic loader or a libc, so it
//! is linked statically even in builds that are not (`cargo build`, the tests).
//!
//! rustc's gnu targets link std's libraries dynamically unless the whole build has
//! `-C target-feature=+crt-static` (as `scripts/build-release` does), and cargo has no stable
//! per-package rustflags. So, for this one binary: static archives of exactly the libraries
//! rustc asks for (`-lgcc_s` served by libgcc_eh.a, glibc's .a files for the rest) are put
//! in a directory searched before the system's, and the link is `-static-pie`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cc_file(name: &str) -> Option<PathBuf> {
    let out = Command::new("cc").arg(format!("-print-file-name={name}")).output().ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    // cc prints the bare name when it does not find the file.
    (p.is_absolute() && p.exists()).then_some(p)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if os != "linux" || env != "gnu" || features.split(',').any(|f| f == "crt-static") {
        return; // musl and crt-static builds are static already
    }
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else { return };
    let dir = out.join("static-libs");
    let _ = std::fs::create_dir_all(&dir);
    let libs = [
        ("gcc_s", "libgcc_eh.a"),
        ("c", "libc.a"),
        ("m", "libm.a"),
        ("rt", "librt.a"),
        ("pthread", "libpthread.a"),
        ("dl", "libdl.a"),
        ("util", "libutil.a"),
    ];
    for (name, archive) in libs {
        let Some(src) = cc_file(archive) else {
            println!("cargo:warning=berth-init: {archive} not found (install libc6-dev): berth-init is linked dynamically and needs a libc in the container");
            return;
        };
        let dst = dir.join(format!("lib{name}.a"));
        let _ = std::fs::remove_file(&dst);
        if std::os::unix::fs::symlink(&src, &dst).is_err() && std::fs::copy(&src, &dst).is_err() {
            println!("cargo:warning=berth-init: cannot stage {}", Path::new(&src).display());
            return;
        }
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-arg-bins=-static-pie");
}
