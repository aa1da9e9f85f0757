//! Managing a live container through its cgroup: runc's `pause`, `resume`, `ps`, `events`
//! and `update`.
//!
//! Each operation takes the container's lock only for as long as it reads the record and
//! acts; the `events` loop re-reads the init's start time instead of holding the lock, so a
//! concurrent `delete` is never blocked by it.

use std::time::{Duration, Instant};

use berth_cgroups::resources::{check_cpuset_list, check_page_size, check_quota, limit_v1};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use serde::Serialize;

use crate::cgroup::ContainerCgroup;
use crate::container::Runtime;
use crate::error::{Error, Result};
use crate::state::{self, ContainerRecord, StateDir, Status};

/// How often the `events` loop looks for OOM kills and for the container's end.
const EVENTS_POLL: Duration = Duration::from_millis(100);

/// One line of `events` output, in runc's shape: `{"type":"stats","id":…,"data":{…}}` or
/// `{"type":"oom","id":…}`.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// "stats" or "oom".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The container id.
    pub id: String,
    /// The statistics of a "stats" event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<berth_cgroups::Stats>,
}

impl Event {
    /// A stats event.
    pub fn stats(id: &str, stats: berth_cgroups::Stats) -> Self {
        Event { kind: "stats", id: id.to_string(), data: Some(stats) }
    }

    /// An OOM-kill event.
    pub fn oom(id: &str) -> Self {
        Event { kind: "oom", id: id.to_string(), data: None }
    }
}

fn wrong(id: &str, message: &str) -> Error {
    Error::WrongState { id: id.to_string(), message: message.to_string() }
}

fn cgroup_of(record: &ContainerRecord) -> ContainerCgroup {
    ContainerCgroup::from_paths(record.cgroup_paths.clone())
}

impl Runtime {
    /// Open a container that must not have stopped: its lock, record and status.
    fn open_live(&self, id: &str) -> Result<(StateDir, ContainerRecord, Status)> {
        let dir = StateDir::open(self.root(), id)?;
        let record = dir.load()?;
        let status = state::derive_status(&dir, &record);
        if status == Status::Stopped {
            return Err(wrong(id, "container not running"));
        }
        Ok((dir, record, status))
    }

    /// Freeze every process of a created or running container (runc `pause`).
    pub fn pause(&self, id: &str) -> Result<()> {
        let (_dir, record, status) = self.open_live(id)?;
        match status {
            Status::Created | Status::Running => cgroup_of(&record).freeze(),
            _ => Err(wrong(id, "container not running")),
        }
    }

    /// Thaw a paused container (runc `resume`).
    pub fn resume(&self, id: &str) -> Result<()> {
        let dir = StateDir::open(self.root(), id)?;
        let record = dir.load()?;
        // A frozen created container still reports "created" (its exec fifo is there).
        let paused = match state::derive_status(&dir, &record) {
            Status::Paused => true,
            Status::Created => berth_cgroups::is_frozen(&record.cgroup_paths),
            _ => false,
        };
        if !paused {
            return Err(wrong(id, "container not paused"));
        }
        cgroup_of(&record).thaw()
    }

    /// The host pids of every process in the container's cgroup (runc `ps`).
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let dir = StateDir::open(self.root(), id)?;
        cgroup_of(&dir.load()?).pids()
    }

    /// Resource usage of a live container (runc `events --stats`).
    pub fn stats(&self, id: &str) -> Result<berth_cgroups::Stats> {
        let (_dir, record, _) = self.open_live(id)?;
        cgroup_of(&record).stats()
    }

    /// Report the container's events until it stops: a stats event every `interval` and an
    /// OOM event whenever the OOM killer kills in its cgroup. Stops early if `emit` fails.
    pub fn watch_events(&self, id: &str, interval: Duration, mut emit: impl FnMut(&Event) -> Result<()>) -> Result<()> {
        if interval.is_zero() {
            return Err(Error::InvalidConfig("duration interval must be greater than 0".into()));
        }
        let (dir, record, _) = self.open_live(id)?;
        drop(dir);
        let cgroup = cgroup_of(&record);
        let mut ooms = cgroup.oom_kill_count().unwrap_or(0);
        let mut next_stats = Instant::now() + interval;
        loop {
            std::thread::sleep(EVENTS_POLL.min(interval));
            // OOM first: a kill of the init itself must still be reported before we stop.
            if let Ok(n) = cgroup.oom_kill_count() {
                if n > ooms {
                    emit(&Event::oom(id))?;
                }
                ooms = n;
            }
            if state::process_start_time(record.pid) != Some(record.pid_start_time) {
                return Ok(());
            }
            if Instant::now() >= next_stats {
                next_stats += interval;
                match cgroup.stats() {
                    Ok(s) => emit(&Event::stats(id, s))?,
                    // runc logs and keeps going: one unreadable file is no reason to stop watching.
                    Err(e) => tracing::error!("container {id:?}: stats: {e}"),
                }
            }
        }
    }

    /// Change the resources of a live container (runc `update`): `change` is merged into the
    /// resources it was created with, checked as a whole, written to its cgroup, and saved in
    /// its config copy. Invalid values change nothing; if the kernel refuses a value the
    /// previous resources are written back.
    pub fn update(&self, id: &str, change: &LinuxResources) -> Result<()> {
        let (dir, record, _) = self.open_live(id)?;
        let mut spec = dir.load_config()?;
        let mut linux = spec.linux().clone().unwrap_or_default();
        let old = linux.resources().clone().unwrap_or_default();
        let new = merge_update(&old, change);
        check_resources(&new)?;
        let cgroup = cgroup_of(&record);
        if let Err(e) = cgroup.set(&without_devices(&new)) {
            if let Err(re) = cgroup.set(&without_devices(&old)) {
                tracing::warn!("container {id:?}: restore resources after a failed update: {re}");
            }
            return Err(e);
        }
        linux.set_resources(Some(new));
        spec.set_linux(Some(linux));
        dir.save_config(&spec)
    }
}

/// The resources to rewrite on update: device rules are left as they are (runc's `update`
/// does not touch them, and replaying them would briefly deny every device).
fn without_devices(r: &LinuxResources) -> LinuxResources {
    let mut r = r.clone();
    r.set_devices(None);
    r
}

/// `old` with the fields runc's `update` knows taken from `change` where it sets them.
fn merge_update(old: &LinuxResources, change: &LinuxResources) -> LinuxResources {
    let mut r = old.clone();
    if let Some(c) = change.memory() {
        let mut m = old.memory().unwrap_or_default();
        if c.limit().is_some() {
            m.set_limit(c.limit());
            // Unlimited memory without a swap value means unlimited swap too, else the old
            // memory+swap limit would be below the new memory limit.
            if c.limit() == Some(-1) && c.swap().is_none() {
                m.set_swap(Some(-1));
            }
        }
        for (value, set) in [
            (c.reservation(), LinuxMemory::set_reservation as fn(&mut LinuxMemory, Option<i64>) -> &mut LinuxMemory),
            (c.swap(), LinuxMemory::set_swap),
            (c.kernel_tcp(), LinuxMemory::set_kernel_tcp),
        ] {
            if value.is_some() {
                set(&mut m, value);
            }
        }
        #[allow(deprecated)]
        if c.kernel().is_some() {
            m.set_kernel(c.kernel());
        }
        if c.swappiness().is_some() {
            m.set_swappiness(c.swappiness());
        }
        r.set_memory(Some(m));
    }
    if let Some(c) = change.cpu() {
        r.set_cpu(Some(merge_cpu(old.cpu().clone().unwrap_or_default(), c)));
    }
    if let Some(p) = change.pids() {
        let mut pids = LinuxPids::default();
        pids.set_limit(p.limit());
        r.set_pids(Some(pids));
    }
    if let Some(w) = change.block_io().as_ref().and_then(|b| b.weight()) {
        let mut b: LinuxBlockIo = old.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    if change.unified().is_some() {
        r.set_unified(change.unified().clone());
    }
    let ignored = [
        ("devices", change.devices().is_some()),
        ("hugepageLimits", change.hugepage_limits().is_some()),
        ("network", change.network().is_some()),
        ("rdma", change.rdma().is_some()),
    ];
    for (name, given) in ignored {
        if given {
            tracing::warn!("update: linux.resources.{name} cannot be updated; ignored");
        }
    }
    r
}

fn merge_cpu(mut cpu: LinuxCpu, c: &LinuxCpu) -> LinuxCpu {
    let mut take_u = |v: Option<u64>, set: fn(&mut LinuxCpu, Option<u64>) -> &mut LinuxCpu| {
        if v.is_some() {
            set(&mut cpu, v);
        }
    };
    take_u(c.shares(), LinuxCpu::set_shares);
    take_u(c.period(), LinuxCpu::set_period);
    take_u(c.realtime_period(), LinuxCpu::set_realtime_period);
    take_u(c.burst(), LinuxCpu::set_burst);
    for (v, set) in [
        (c.quota(), LinuxCpu::set_quota as fn(&mut LinuxCpu, Option<i64>) -> &mut LinuxCpu),
        (c.realtime_runtime(), LinuxCpu::set_realtime_runtime),
        (c.idle(), LinuxCpu::set_idle),
    ] {
        if v.is_some() {
            set(&mut cpu, v);
        }
    }
    if c.cpus().is_some() {
        cpu.set_cpus(c.cpus().clone());
    }
    if c.mems().is_some() {
        cpu.set_mems(c.mems().clone());
    }
    cpu
}

fn invalid(file: &str, value: impl ToString, reason: &str) -> Error {
    Error::Cgroup(berth_cgroups::Error::InvalidValue { file: file.to_string(), value: value.to_string(), reason: reason.to_string() })
}

/// Check every value before anything is written, so a bad update changes nothing.
fn check_resources(r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory() {
        let limit = m.limit().unwrap_or(0);
        let swap = m.swap().unwrap_or(0);
        #[allow(deprecated)]
        let kernel = m.kernel();
        for (file, v) in [
            ("memory.limit_in_bytes", m.limit()),
            ("memory.memsw.limit_in_bytes", m.swap()),
            ("memory.soft_limit_in_bytes", m.reservation()),
            ("memory.kmem.limit_in_bytes", kernel),
            ("memory.kmem.tcp.limit_in_bytes", m.kernel_tcp()),
        ] {
            limit_v1(file, v.unwrap_or(0))?;
        }
        if swap > 0 && limit <= 0 {
            return Err(invalid("memory.memsw.limit_in_bytes", swap, "a memory+swap limit needs a memory limit"));
        }
        if swap > 0 && swap < limit {
            return Err(invalid(
                "memory.memsw.limit_in_bytes",
                swap,
                &format!("the memory+swap limit must be >= the memory limit {limit} (set --memory-swap too)"),
            ));
        }
        if let Some(s) = m.swappiness().filter(|s| *s > 100 && *s != u64::MAX) {
            return Err(invalid("memory.swappiness", s, "valid range is 0-100"));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|s| *s != 0 && !(2..=262_144).contains(s)) {
            return Err(invalid("cpu.shares", s, "valid range is 2-262144"));
        }
        check_quota("cpu.cfs_quota_us", c.quota().unwrap_or(0))?;
        if let Some(p) = c.period().filter(|p| *p != 0 && !(1_000..=1_000_000).contains(p)) {
            return Err(invalid("cpu.cfs_period_us", p, "valid range is 1000-1000000 (1 ms to 1 s)"));
        }
        if let Some(rt) = c.realtime_runtime().filter(|r| *r < -1) {
            return Err(invalid("cpu.rt_runtime_us", rt, "must be >= 0 or -1 (unlimited)"));
        }
        if let Some(i) = c.idle().filter(|i| !(0..=1).contains(i)) {
            return Err(invalid("cpu.idle", i, "must be 0 or 1"));
        }
        if let Some(v) = c.cpus() {
            check_cpuset_list("cpuset.cpus", v)?;
        }
        if let Some(v) = c.mems() {
            check_cpuset_list("cpuset.mems", v)?;
        }
    }
    if let Some(w) = r.block_io().as_ref().and_then(|b| b.weight()).filter(|w| *w != 0) {
        if !(10..=1000).contains(&w) {
            return Err(invalid("blkio.weight", w, "valid range is 10-1000"));
        }
    }
    for l in r.hugepage_limits().iter().flatten() {
        check_page_size(l.page_size())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn update_keeps_old_values_and_takes_new_ones() {
        let old = resources(r#"{"memory":{"limit":100,"swap":200},"cpu":{"shares":512,"quota":1000},"pids":{"limit":5}}"#);
        let change = resources(r#"{"memory":{"limit":150},"cpu":{"period":50000}}"#);
        let new = merge_update(&old, &change);
        let m = new.memory().unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(150), Some(200)));
        let c = new.cpu().as_ref().unwrap();
        assert_eq!((c.shares(), c.quota(), c.period()), (Some(512), Some(1000), Some(50000)));
        assert_eq!(new.pids().unwrap().limit(), 5);
    }

    #[test]
    fn unlimited_memory_without_swap_makes_swap_unlimited() {
        let old = resources(r#"{"memory":{"limit":100,"swap":100}}"#);
        let new = merge_update(&old, &resources(r#"{"memory":{"limit":-1}}"#));
        assert_eq!(new.memory().unwrap().swap(), Some(-1));
    }

    #[test]
    fn bad_values_are_refused_before_anything_is_written() {
        for bad in [
            r#"{"cpu":{"cpus":"x-y"}}"#,
            r#"{"cpu":{"quota":-5}}"#,
            r#"{"cpu":{"shares":1}}"#,
            r#"{"memory":{"limit":200,"swap":100}}"#,
            r#"{"memory":{"limit":-7}}"#,
            r#"{"blockIO":{"weight":5}}"#,
        ] {
            assert!(check_resources(&resources(bad)).is_err(), "{bad} accepted");
        }
        check_resources(&resources(r#"{"memory":{"limit":100,"swap":100},"cpu":{"cpus":"0-1"}}"#)).unwrap();
    }

    #[test]
    fn events_serialize_like_runc() {
        let oom = serde_json::to_value(Event::oom("c")).unwrap();
        assert_eq!(oom, serde_json::json!({"type": "oom", "id": "c"}));
        let st = serde_json::to_value(Event::stats("c", Default::default())).unwrap();
        assert_eq!(st["type"], "stats");
        assert!(st["data"]["memory"].is_object());
    }
}
