//! What every command needs: the storage root and its layout, and the registries config.
//!
//! Layout under the root (see docs/ARCHITECTURE.md): the root itself is an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/…`, readable as `oci:<root>`), `layers/<chain id>/`
//! holds the unpacked snapshots, `locks/` the per-blob pull locks.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use berth_image::reference::Reference;
use berth_image::registries::RegistriesConf;
use berth_image::store::Store;

/// The root, opened lazily: a command that fails on its arguments touches nothing.
pub struct Context {
    root: PathBuf,
    runroot: Option<PathBuf>,
    registries_conf: Option<PathBuf>,
}

impl Context {
    /// From the global flags.
    pub fn new(root: Option<PathBuf>, registries_conf: Option<PathBuf>) -> Self {
        Self { root: root.unwrap_or_else(default_root), runroot: None, registries_conf }
    }

    /// `--runroot`: where runtime state lives (default from the user, see container_cmds).
    pub fn with_runroot(mut self, runroot: Option<PathBuf>) -> Self {
        self.runroot = runroot;
        self
    }

    /// The `--runroot` given, if any.
    pub fn runroot(&self) -> Option<&Path> {
        self.runroot.as_deref()
    }

    /// The storage root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The content store (created on first use).
    pub fn store(&self) -> anyhow::Result<Store> {
        Store::open(&self.root).with_context(|| format!("open the image store at {}", self.root.display()))
    }

    /// The directory of snapshots.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// The registries config (the default file may be absent).
    pub fn registries(&self) -> anyhow::Result<RegistriesConf> {
        Ok(RegistriesConf::load(self.registries_conf.as_deref())?)
    }

    /// A user's image name, qualified with the default registry.
    pub fn reference(&self, name: &str) -> anyhow::Result<Reference> {
        Ok(self.registries()?.qualify(name)?)
    }
}

/// `/var/lib/berth` for root; `$XDG_DATA_HOME/berth` (or `~/.local/share/berth`) otherwise.
fn default_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/berth");
    }
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"))
        .join("berth")
}
