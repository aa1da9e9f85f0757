//! The container lifecycle of the engine: create (record, root filesystem, bundle), run in
//! the foreground through the in-process runtime, remove.

use std::path::{Path, PathBuf};

use berth_image::store::Store;
use berth_image::unpack::Snapshots;
use berth_runtime::{CreateOptions, Runtime};

use crate::db::{ContainerRow, Db};
use crate::error::{Error, IoContext, Result};
use crate::specgen::{self, ContainerOptions, SpecInputs};
use crate::{image_rootfs, overlay};

/// The engine's state on disk (see docs/ARCHITECTURE.md, "State on disk").
pub struct Engine {
    pub(crate) root: PathBuf,
    store: Store,
    snapshots: Snapshots,
    pub(crate) db: Db,
    pub(crate) runtime: Runtime,
    pub(crate) helper_exe: Option<PathBuf>,
}

/// Where a container's files live under `<root>/containers/<id>/`.
pub(crate) struct ContainerDirs {
    pub(crate) base: PathBuf,
}

impl ContainerDirs {
    fn upper(&self) -> PathBuf {
        self.base.join("upper")
    }
    fn work(&self) -> PathBuf {
        self.base.join("work")
    }
    fn bundle(&self) -> PathBuf {
        self.base.join("bundle")
    }
    fn rootfs(&self) -> PathBuf {
        self.base.join("bundle/rootfs")
    }
}

fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .io_context(|| "read /dev/urandom".into())?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Engine {
    /// Open the engine rooted at `root` (images, layers, containers, database) with runtime
    /// state under `run_root`.
    pub fn open(root: &Path, run_root: &Path) -> Result<Engine> {
        std::fs::create_dir_all(root.join("containers")).io_context(|| format!("create {}", root.display()))?;
        Ok(Engine {
            root: root.to_path_buf(),
            store: Store::open(root)?,
            snapshots: Snapshots::open(root.join("layers"))?,
            db: Db::open(&root.join("berth.db"))?,
            runtime: Runtime::new(run_root.join("runtime")),
            helper_exe: None,
        })
    }

    /// The image store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The container records.
    pub fn containers(&self) -> Result<Vec<ContainerRow>> {
        self.db.list()
    }

    /// Image ids (config digests) that containers use: `rmi` refuses them without force.
    pub fn images_in_use(&self) -> Result<std::collections::HashSet<String>> {
        Ok(self.db.list()?.into_iter().map(|c| c.image_id).collect())
    }

    /// Snapshot chain ids that containers' root filesystems stack: never garbage-collected.
    pub fn snapshots_in_use(&self) -> Result<std::collections::HashSet<String>> {
        Ok(self.db.list()?.iter().flat_map(|c| c.chain.split(' ').map(String::from).collect::<Vec<_>>()).filter(|c| !c.is_empty()).collect())
    }

    pub(crate) fn dirs(&self, id: &str) -> ContainerDirs {
        ContainerDirs { base: self.root.join("containers").join(id) }
    }

    /// Create a container from `image`: record, root filesystem, bundle. Returns its id.
    pub fn create(&self, image: &str, name: Option<&str>, opts: &ContainerOptions, auto_remove: bool) -> Result<String> {
        let (netns, share_etc) = self.network_preflight(opts)?;
        let rootfs = image_rootfs::prepare(&self.store, &self.snapshots, image)?;
        let id = new_id()?;
        let name = match name {
            Some(n) => n.to_string(),
            None => format!("berth_{}", &id[..12]),
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) || name.is_empty() {
            return Err(Error::Invalid(format!("invalid container name {name:?}: only [a-zA-Z0-9_.-] are allowed")));
        }
        self.db.insert(&ContainerRow {
            id: id.clone(),
            name: name.clone(),
            image: image.to_string(),
            created: berth_runtime::time::now_rfc3339(),
            state: "created".into(),
            exit_code: None,
            auto_remove,
            image_id: rootfs.image.id.to_string(),
            chain: rootfs.image.chain.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" "),
        })?;
        match self.build_bundle(&id, &name, &rootfs, opts, netns.as_deref(), share_etc.as_deref()) {
            Ok(()) => Ok(id),
            Err(e) => {
                let _ = self.remove_files(&id);
                let _ = self.db.remove(&id);
                Err(e)
            }
        }
    }

    fn build_bundle(&self, id: &str, name: &str, rootfs: &image_rootfs::ImageRootfs, opts: &ContainerOptions, netns: Option<&Path>, share_etc: Option<&str>) -> Result<()> {
        let d = self.dirs(id);
        for dir in [d.upper(), d.work(), d.rootfs()] {
            std::fs::create_dir_all(&dir).io_context(|| format!("create {}", dir.display()))?;
        }
        overlay::mount(&rootfs.layers, &d.upper(), &d.work(), &d.rootfs())?;
        let hostname = opts.hostname.clone().unwrap_or_else(|| id[..12].to_string());
        let mut etc = vec![
            ("/etc/hostname".to_string(), write_file(&d.base, "hostname", &format!("{hostname}\n"))?),
            // On a bridge network, berth-net rewrites it in place with the addresses.
            ("/etc/hosts".to_string(), write_file(&d.base, "hosts", &berth_net::etc::hosts(&hostname, name, &[], &opts.add_hosts, &[]))?),
            ("/etc/resolv.conf".to_string(), write_file(&d.base, "resolv.conf", &resolv_conf(&opts.network, &opts.dns))?),
        ];
        // `--network container:X`: X's hosts and resolv.conf (the same network, kept current).
        if let Some(other) = share_etc {
            for (dest, file) in [("/etc/hosts", "hosts"), ("/etc/resolv.conf", "resolv.conf")] {
                let theirs = self.dirs(other).base.join(file);
                if theirs.is_file() {
                    if let Some(e) = etc.iter_mut().find(|(d, _)| d == dest) {
                        e.1 = theirs;
                    }
                }
            }
        }
        self.write_network_request(id, name, &hostname, opts)?;
        let spec = specgen::generate(
            &SpecInputs { id, rootfs: &d.rootfs(), image_config: &rootfs.image.config, etc_files: &etc, netns_path: netns },
            opts,
        )?;
        let bytes = serde_json::to_vec(&spec).map_err(|e| Error::Invalid(format!("serialize the spec: {e}")))?;
        berth_runtime::state::write_atomic(&d.bundle().join("config.json"), &bytes)?;
        Ok(())
    }

    /// Run a created container in the foreground: stdio inherited, signals forwarded.
    /// Returns its exit code (128+N when killed by signal N). Removes it if created with --rm.
    pub fn run_foreground(&self, id: &str) -> Result<i32> {
        let row = self.db.find(id)?.ok_or_else(|| Error::NoSuchContainer(id.to_string()))?;
        let result = self.run_row(&row);
        if result.is_err() && row.auto_remove {
            let _ = self.remove(&row.id, true);
        }
        result
    }

    fn run_row(&self, row: &ContainerRow) -> Result<i32> {
        let opts = CreateOptions { bundle: self.dirs(&row.id).bundle(), ..Default::default() };
        let pid = self.runtime.create(&row.id, &opts)?;
        if let Err(e) = self.attach_network(&row.id, pid) { let _ = self.runtime.delete(&row.id, true); return Err(e); }
        let fwd = berth_runtime::signals::Forwarder::block().map_err(Error::Invalid)?;
        self.db.set_state(&row.id, "running", None)?;
        if let Err(e) = self.runtime.start(&row.id) {
            let _ = self.runtime.delete(&row.id, true);
            self.detach_network_or_warn(&row.id);
            return Err(e.into());
        }
        let status = fwd.forward_until_exit(pid).map_err(Error::Invalid)?;
        self.runtime.delete(&row.id, true)?;
        self.detach_network_or_warn(&row.id);
        self.db.set_state(&row.id, "exited", Some(status))?;
        if row.auto_remove {
            self.remove(&row.id, true)?;
        }
        Ok(status)
    }

    /// Remove a container: its runtime state, root filesystem and record.
    pub fn remove(&self, key: &str, force: bool) -> Result<()> {
        let row = self.db.find(key)?.ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        match self.runtime.state(&row.id) {
            Ok(st) if st.status == berth_runtime::state::Status::Running && !force => {
                return Err(Error::Invalid(format!("container {} is running: stop it first or use --force", row.name)));
            }
            Ok(_) => self.runtime.delete(&row.id, true)?,
            Err(_) => {}
        }
        self.detach_network_or_warn(&row.id);
        self.remove_files(&row.id)?;
        self.db.remove(&row.id)?;
        Ok(())
    }

    fn remove_files(&self, id: &str) -> Result<()> {
        let d = self.dirs(id);
        overlay::unmount(&d.rootfs())?;
        match std::fs::remove_dir_all(&d.base) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).io_context(|| format!("remove {}", d.base.display())),
        }
    }
}

fn write_file(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text).io_context(|| format!("write {}", p.display()))?;
    Ok(p)
}

/// The container's resolv.conf: the host's as is in the host's namespace; elsewhere without
/// loopback resolvers (see `berth_net::etc::resolv_conf`); `--dns` replaces the nameservers.
fn resolv_conf(network: &crate::specgen::NetworkMode, dns: &[std::net::IpAddr]) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if *network == crate::specgen::NetworkMode::Host && dns.is_empty() && !host.is_empty() {
        return host;
    }
    berth_net::etc::resolv_conf(&host, dns)
}
