//! A container's life after create: start, stop, kill, restart, wait, pause, rename — and
//! the reconciliation of records whose monitor died.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use berth_runtime::signals::pidfd_open;
use berth_runtime::state::Status;

use crate::backend::Backend;
use crate::db::ContainerRow;
use crate::error::{Error, IoContext, Result};
use crate::monitor::monitor_alive;
use crate::run::Engine;
use crate::settings::ContainerSettings;

/// An exclusive lock on one container (flock on its directory): state changes of one
/// container by concurrent `berth` commands happen one at a time.
pub struct ContainerLock {
    _dir: std::fs::File,
}

impl ContainerLock {
    /// Take the lock of container `id` (waits for other holders).
    pub fn take(engine: &Engine, id: &str) -> Result<ContainerLock> {
        let base = engine.dirs(id).base;
        let dir = std::fs::File::open(&base).io_context(|| format!("open {}", base.display()))?;
        loop {
            // SAFETY: flock on a file we own.
            if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(ContainerLock { _dir: dir });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e).io_context(|| format!("lock {}", base.display()));
            }
        }
    }
}

/// Wait until the process behind `pidfd` exits, at most `timeout`; true if it did.
fn wait_pidfd(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n > 0 {
            return true;
        }
        if n == 0 || left.is_zero() {
            return false;
        }
    }
}

/// How a reconciled row tells its state: docker's words.
fn live(row: &ContainerRow) -> bool {
    matches!(row.state.as_str(), "running" | "paused" | "restarting")
}

impl Engine {
    /// A container by id, unique id prefix or name, reconciled.
    pub fn find(&self, key: &str) -> Result<ContainerRow> {
        let row = self.db.find(key)?.ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        self.reconcile(row)
    }

    /// A container's settings.
    pub fn settings(&self, row: &ContainerRow) -> Result<ContainerSettings> {
        ContainerSettings::from_json(&row.settings)
    }

    pub(crate) fn backend(&self, row: &ContainerRow) -> Result<Backend> {
        Ok(Backend::new(self.settings(row)?.runtime.as_deref(), &self.run_root))
    }

    /// Make a record tell the truth when its monitor is gone (SIGKILLed, machine crash):
    /// a container whose init still runs stays running (without a monitor); one whose init
    /// is gone is exited, with an unknown status, and its runtime state is cleaned.
    pub(crate) fn reconcile(&self, row: ContainerRow) -> Result<ContainerRow> {
        if row.monitor_pid.is_none() || monitor_alive(&row) {
            return Ok(row);
        }
        self.db.clear_monitor(&row.id)?;
        if live(&row) {
            let backend = self.backend(&row)?;
            match backend.state(&row.id)? {
                Some(st) if matches!(st.status, Status::Running | Status::Paused | Status::Created) => {
                    tracing::warn!("container {}: its monitor is gone; the container still runs", row.name);
                }
                _ => {
                    let _ = backend.delete(&row.id, true);
                    self.db.set_exited(&row.id, None, &berth_runtime::time::now_rfc3339())?;
                }
            }
        }
        self.db.find(&row.id)?.ok_or_else(|| Error::NoSuchContainer(row.id.clone()))
    }

    /// Start a created or exited container under a new monitor. The caller must be
    /// single-threaded.
    pub fn start(&self, key: &str) -> Result<ContainerRow> {
        let row = self.find(key)?;
        let _lock = ContainerLock::take(self, &row.id)?;
        let row = self.find(&row.id)?;
        if live(&row) {
            return Ok(row);
        }
        // A previous run's runtime state (a monitor lost before cleaning it) goes first.
        self.backend(&row)?.delete(&row.id, true)?;
        self.db.set_stop_requested(&row.id, false)?;
        self.spawn_monitor(&row.id)?;
        self.find(&row.id)
    }

    /// Stop a container: its stop signal, then SIGKILL after `timeout` seconds (the
    /// container's `--stop-timeout` when None). Stopping a stopped container is no error.
    pub fn stop(&self, key: &str, timeout: Option<u64>) -> Result<ContainerRow> {
        let row = self.find(key)?;
        let _lock = ContainerLock::take(self, &row.id)?;
        let row = self.find(&row.id)?;
        if !live(&row) {
            return Ok(row);
        }
        let settings = self.settings(&row)?;
        self.db.set_stop_requested(&row.id, true)?;
        let backend = self.backend(&row)?;
        let timeout = Duration::from_secs(timeout.unwrap_or(settings.stop_timeout));
        let init = row.pid.and_then(pidfd_open);
        if row.state == "paused" {
            // A frozen process cannot handle its stop signal: docker kills paused containers.
            let _ = backend.kill(&row.id, libc::SIGKILL, true);
        } else if backend.kill(&row.id, settings.stop_signal, false).is_ok() {
            if let Some(p) = &init {
                if !wait_pidfd(p, timeout) {
                    tracing::info!("container {}: still running after {timeout:?}: SIGKILL", row.name);
                    let _ = backend.kill(&row.id, libc::SIGKILL, true);
                }
            }
        }
        self.wait_monitor_done(&row)?;
        self.find(&row.id)
    }

    /// Kill everything and wait until the monitor recorded the exit (or clean up ourselves
    /// when there is no monitor).
    pub(crate) fn kill_and_wait(&self, row: &ContainerRow) -> Result<()> {
        let backend = self.backend(row)?;
        let _ = backend.kill(&row.id, libc::SIGKILL, true);
        self.wait_monitor_done(row)
    }

    fn wait_monitor_done(&self, row: &ContainerRow) -> Result<()> {
        let monitor = row.monitor_pid.filter(|_| monitor_alive(row)).and_then(pidfd_open);
        let Some(monitor) = monitor else {
            // No monitor (lost): the exit is ours to record.
            let backend = self.backend(row)?;
            if let Some(p) = row.pid.and_then(pidfd_open) {
                wait_pidfd(&p, Duration::from_secs(5));
            }
            backend.delete(&row.id, true)?;
            if self.db.find(&row.id)?.is_some_and(|r| live(&r)) {
                self.db.set_exited(&row.id, None, &berth_runtime::time::now_rfc3339())?;
            }
            return Ok(());
        };
        // The monitor records the exit, then exits (stop was requested: no restart).
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match self.db.find(&row.id)? {
                Some(r) if live(&r) => {}
                _ => return Ok(()),
            }
            if wait_pidfd(&monitor, Duration::from_millis(20)) {
                return Ok(());
            }
        }
        Err(Error::Invalid(format!("container {}: the monitor did not record the exit within 30 s", row.name)))
    }

    /// Send `signal` to a running container's init.
    pub fn kill(&self, key: &str, signal: i32) -> Result<ContainerRow> {
        let row = self.find(key)?;
        let _lock = ContainerLock::take(self, &row.id)?;
        let row = self.find(&row.id)?;
        if row.state != "running" && row.state != "paused" {
            return Err(Error::WrongState(format!("container {} is not running", row.name)));
        }
        // A user's kill is a stop for the restart policy, as with docker and podman.
        if signal == libc::SIGKILL || signal == libc::SIGTERM {
            self.db.set_stop_requested(&row.id, true)?;
        }
        self.backend(&row)?.kill(&row.id, signal, false)?;
        Ok(row)
    }

    /// Stop then start.
    pub fn restart(&self, key: &str, timeout: Option<u64>) -> Result<ContainerRow> {
        let row = self.stop(key, timeout)?;
        self.start(&row.id)
    }

    /// Wait until the container is not running; its exit status (None: unknown).
    pub fn wait(&self, key: &str) -> Result<Option<i32>> {
        let mut row = self.find(key)?;
        while live(&row) {
            match row.monitor_pid.filter(|_| monitor_alive(&row)).and_then(pidfd_open) {
                Some(m) => {
                    wait_pidfd(&m, Duration::from_millis(50));
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
            row = self.find(&row.id)?;
        }
        Ok(row.exit_code)
    }

    /// Freeze a running container.
    pub fn pause(&self, key: &str) -> Result<()> {
        let row = self.find(key)?;
        let _lock = ContainerLock::take(self, &row.id)?;
        if row.state != "running" {
            return Err(Error::WrongState(format!("container {} is {}, not running", row.name, row.state)));
        }
        self.backend(&row)?.pause(&row.id)?;
        self.db.set_state(&row.id, "paused")
    }

    /// Thaw a paused container.
    pub fn unpause(&self, key: &str) -> Result<()> {
        let row = self.find(key)?;
        let _lock = ContainerLock::take(self, &row.id)?;
        if row.state != "paused" {
            return Err(Error::WrongState(format!("container {} is not paused", row.name)));
        }
        self.backend(&row)?.resume(&row.id)?;
        self.db.set_state(&row.id, "running")
    }

    /// Give a container a new name.
    pub fn rename(&self, key: &str, name: &str) -> Result<()> {
        crate::run::check_name(name)?;
        let row = self.find(key)?;
        self.db.rename(&row.id, name)
    }

    /// The host pids of a running container's processes.
    pub fn pids(&self, key: &str) -> Result<Vec<i32>> {
        let row = self.find(key)?;
        if !live(&row) {
            return Err(Error::WrongState(format!("container {} is not running", row.name)));
        }
        self.backend(&row)?.pids(&row.id)
    }

    /// Resource usage of a running container.
    pub fn stats(&self, key: &str) -> Result<(ContainerRow, berth_cgroups::Stats)> {
        let row = self.find(key)?;
        if !live(&row) {
            return Err(Error::WrongState(format!("container {} is not running", row.name)));
        }
        let rt =
            berth_runtime::Runtime::new(self.run_root.join(if self.settings(&row)?.runtime.is_some() { "runtime-ext" } else { "runtime" }));
        let st = rt.stats(&row.id).map_err(|e| Error::Invalid(format!("container {}: stats: {e}", row.name)))?;
        Ok((row, st))
    }

    /// The container's log file and driver.
    pub fn log_file(&self, row: &ContainerRow) -> Result<(std::path::PathBuf, crate::settings::LogDriver)> {
        Ok((self.dirs(&row.id).log(), self.settings(row)?.log_driver))
    }

    /// The container's bundle directory (config.json, rootfs).
    pub fn bundle_dir(&self, row: &ContainerRow) -> std::path::PathBuf {
        self.dirs(&row.id).bundle()
    }

    /// The container's run directory (the monitor's attach socket).
    pub fn attach_dir(&self, row: &ContainerRow) -> std::path::PathBuf {
        self.run_dir(&row.id)
    }

    /// Whether the container's monitor lives (attach is possible).
    pub fn has_monitor(&self, row: &ContainerRow) -> bool {
        monitor_alive(row)
    }
}
