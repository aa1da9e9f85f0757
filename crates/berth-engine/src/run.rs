//! The engine's containers: create (record, root filesystem, bundle), run in the foreground
//! or detached under a monitor, remove. Stop, kill, wait and the rest are in `lifecycle.rs`.

use std::path::{Path, PathBuf};

use crate::backend::Backend;
use crate::db::{ContainerRow, Db};
use crate::error::{Error, IoContext, Result};
use crate::settings::ContainerSettings;
use crate::specgen::{self, ContainerOptions, SpecInputs};
use crate::{image_rootfs, overlay};
use berth_image::store::Store;
use berth_image::unpack::Snapshots;

/// The engine's state on disk (see docs/ARCHITECTURE.md, "State on disk").
pub struct Engine {
    pub(crate) root: PathBuf,
    pub(crate) run_root: PathBuf,
    store: Store,
    snapshots: Snapshots,
    pub(crate) db: Db,
    pub(crate) helper_exe: Option<PathBuf>,
}

/// Where a container's files live under `<root>/containers/<id>/`.
pub(crate) struct ContainerDirs {
    pub(crate) base: PathBuf,
}

impl ContainerDirs {
    /// The container's log (json-file or k8s-file).
    pub(crate) fn log(&self) -> PathBuf {
        self.base.join("ctr.log")
    }
    fn upper(&self) -> PathBuf {
        self.base.join("upper")
    }
    fn work(&self) -> PathBuf {
        self.base.join("work")
    }
    pub(crate) fn bundle(&self) -> PathBuf {
        self.base.join("bundle")
    }
    pub(crate) fn rootfs(&self) -> PathBuf {
        self.base.join("bundle/rootfs")
    }
}

pub(crate) fn new_id() -> Result<String> {
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
            run_root: run_root.to_path_buf(),
            store: Store::open(root)?,
            snapshots: Snapshots::open(root.join("layers"))?,
            db: Db::open(&root.join("berth.db"))?,
            helper_exe: None,
        })
    }

    /// The image store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The container records, reconciled with what really runs.
    pub fn containers(&self) -> Result<Vec<ContainerRow>> {
        self.db.list()?.into_iter().map(|r| self.reconcile(r)).collect()
    }

    /// Image ids (config digests) that containers use: `rmi` refuses them without force.
    pub fn images_in_use(&self) -> Result<std::collections::HashSet<String>> {
        Ok(self.db.list()?.into_iter().map(|c| c.image_id).collect())
    }

    /// Snapshot chain ids that containers' root filesystems stack: never garbage-collected.
    pub fn snapshots_in_use(&self) -> Result<std::collections::HashSet<String>> {
        Ok(self
            .db
            .list()?
            .iter()
            .flat_map(|c| c.chain.split(' ').map(String::from).collect::<Vec<_>>())
            .filter(|c| !c.is_empty())
            .collect())
    }

    pub(crate) fn dirs(&self, id: &str) -> ContainerDirs {
        ContainerDirs { base: self.root.join("containers").join(id) }
    }

    /// The container's runtime-side directory (sockets): `<run root>/containers/<id>/`.
    pub(crate) fn run_dir(&self, id: &str) -> PathBuf {
        self.run_root.join("containers").join(id)
    }

    /// Create a container from `image`: record, root filesystem, bundle. Returns its id.
    /// A `stop_signal` of 0 in `settings` takes the image's StopSignal (else SIGTERM).
    pub fn create(
        &self,
        image: &str,
        name: Option<&str>,
        opts: &ContainerOptions,
        settings: &ContainerSettings,
        auto_remove: bool,
    ) -> Result<String> {
        let (netns, share_etc) = self.network_preflight(opts)?;
        let rootfs = image_rootfs::prepare(&self.store, &self.snapshots, image)?;
        let id = new_id()?;
        let mut settings = settings.clone();
        settings.tty = opts.tty;
        if settings.stop_signal == 0 {
            let image_signal = rootfs.image.config.get("config").and_then(|c| c.get("StopSignal")).and_then(|s| s.as_str());
            settings.stop_signal = match image_signal {
                Some(s) => berth_runtime::signals::parse(s).map_err(|e| Error::Invalid(format!("the image's StopSignal: {e}")))?,
                None => libc::SIGTERM,
            };
        }
        settings.labels.extend(opts.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        if settings.command.is_empty() {
            settings.command = specgen::process_args(&rootfs.image.config, opts).unwrap_or_default();
        }
        let name = match name {
            Some(n) => n.to_string(),
            None => format!("berth_{}", &id[..12]),
        };
        check_name(&name)?;
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
            settings: settings.to_json(),
            ..Default::default()
        })?;
        match self.build_bundle(&id, &name, &rootfs, opts, netns.as_deref(), share_etc.as_deref()) {
            Ok(()) => Ok(id),
            Err(e) => {
                let _ = self.remove_unlocked(&id);
                let _ = self.remove_anonymous_volumes(&id);
                Err(e)
            }
        }
    }

    fn build_bundle(
        &self,
        id: &str,
        name: &str,
        rootfs: &image_rootfs::ImageRootfs,
        opts: &ContainerOptions,
        netns: Option<&Path>,
        share_etc: Option<&str>,
    ) -> Result<()> {
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
        let init = if opts.init { Some(crate::init_binary::locate()?) } else { None };
        let mounts = self.prepare_mounts(id, &d.rootfs(), &rootfs.image.config, &opts.mounts)?;
        let spec = specgen::generate(
            &SpecInputs {
                id,
                rootfs: &d.rootfs(),
                image_config: &rootfs.image.config,
                etc_files: &etc,
                mounts: &mounts,
                init_binary: init.as_deref(),
                netns_path: netns,
            },
            opts,
        )?;
        let bytes = serde_json::to_vec(&spec).map_err(|e| Error::Invalid(format!("serialize the spec: {e}")))?;
        berth_runtime::state::write_atomic(&d.bundle().join("config.json"), &bytes)?;
        Ok(())
    }

    /// Run a created container in the foreground: output relayed (and logged), signals
    /// forwarded. Returns its exit status (128+N when killed by signal N). Removes it if
    /// created with --rm.
    ///
    /// The caller must be single-threaded (the runtime forks from it).
    pub fn run_foreground(&self, id: &str) -> Result<i32> {
        let row = self.db.find(id)?.ok_or_else(|| Error::NoSuchContainer(id.to_string()))?;
        let settings = ContainerSettings::from_json(&row.settings)?;
        if row.auto_remove && !settings.tty && settings.runtime.is_none() {
            // Nothing will read a --rm container's log: its output goes straight to ours.
            let result = self.run_direct(&row, &settings);
            if result.is_err() {
                let _ = self.remove_unlocked(&row.id);
            }
            return result;
        }
        self.monitor(&row.id, crate::monitor::Mode::Foreground)
    }

    fn run_direct(&self, row: &ContainerRow, settings: &ContainerSettings) -> Result<i32> {
        let backend = Backend::new(None, &self.run_root);
        let d = self.dirs(&row.id);
        let log = self.run_dir(&row.id).join("runtime.log");
        let null = if settings.interactive { None } else { Some(crate::monitor::dev_null()?) };
        let pid = crate::monitor::with_stdio(&[null, None, None], || backend.create(&row.id, &d.bundle(), None, &log))??;
        if let Err(e) = self.attach_network(&row.id, pid) {
            let _ = backend.delete(&row.id, true);
            return Err(e);
        }
        let fwd = berth_runtime::signals::Forwarder::block().map_err(Error::Invalid)?;
        self.db.set_running(&row.id, pid, Some(crate::monitor::self_identity()), &berth_runtime::time::now_rfc3339())?;
        if let Err(e) = backend.start(&row.id) {
            let _ = backend.delete(&row.id, true);
            return Err(e);
        }
        let status = fwd.forward_until_exit(pid).map_err(Error::Invalid)?;
        backend.delete(&row.id, true)?;
        self.remove_after_runtime(&row.id, true)?;
        Ok(status)
    }

    /// Start a created container detached, under its own monitor. The caller must be
    /// single-threaded.
    pub fn run_detached(&self, id: &str) -> Result<()> {
        self.spawn_monitor(id)
    }

    /// Remove a container: its runtime state, root filesystem and record (and its anonymous
    /// volumes with `volumes`). A running one only with `force` (killed first).
    pub fn remove(&self, key: &str, force: bool, volumes: bool) -> Result<()> {
        let row = self.find(key)?;
        let _lock = crate::lifecycle::ContainerLock::take(self, &row.id)?;
        if matches!(row.state.as_str(), "running" | "paused" | "restarting") {
            if !force {
                return Err(Error::WrongState(format!("container {} is {}: stop it first or use --force", row.name, row.state)));
            }
            self.db.set_stop_requested(&row.id, true)?;
            self.kill_and_wait(&row)?;
        }
        // The monitor of a --rm container removed it already.
        if self.db.find(&row.id)?.is_some() {
            self.remove_unlocked(&row.id)?;
        }
        if volumes {
            self.remove_anonymous_volumes(&row.id)?;
        }
        Ok(())
    }

    /// Remove without the container lock (the monitor, the foreground run); a `--rm`
    /// container's anonymous volumes go with it, as with docker.
    pub(crate) fn remove_unlocked(&self, id: &str) -> Result<()> {
        self.remove_after_runtime(id, false)
    }

    /// `remove_unlocked`, skipping the runtime's delete when the caller just did it.
    fn remove_after_runtime(&self, id: &str, runtime_deleted: bool) -> Result<()> {
        let row = self.db.find(id)?;
        let auto_remove = row.as_ref().is_some_and(|r| r.auto_remove);
        if !runtime_deleted {
            let runtime = row.as_ref().and_then(|r| ContainerSettings::from_json(&r.settings).ok()).and_then(|s| s.runtime);
            Backend::new(runtime.as_deref(), &self.run_root).delete(id, true)?;
        }
        self.detach_network_or_warn(id);
        self.remove_files(id)?;
        let _ = std::fs::remove_dir_all(self.run_dir(id));
        self.db.remove(id)?;
        if auto_remove {
            self.remove_anonymous_volumes(id)?;
        }
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

/// Container names as docker allows them.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(Error::Invalid(format!("invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")));
    }
    Ok(())
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
