//! Writing `linux.resources` to v1 controller files (runc's fs driver order and rules).

use std::io::ErrorKind;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxNetwork, LinuxResources, LinuxThrottleDevice};

use super::V1Manager;
use crate::cgroupfs;
use crate::error::{Error, Result};
use crate::resources::{check_cpuset_list, check_page_size, check_quota, device_rule_line, limit_v1, rdma_line};

fn need<'a>(m: &'a V1Manager, controller: &str, resource: &str) -> Result<&'a Path> {
    m.dir(controller).ok_or_else(|| Error::ControllerMissing { controller: controller.into(), resource: resource.into() })
}

fn invalid(file: &str, value: impl ToString, reason: impl ToString) -> Error {
    Error::InvalidValue { file: file.into(), value: value.to_string(), reason: reason.to_string() }
}

/// Applies every resource of `r` that is set.
pub(super) fn set(m: &V1Manager, r: &LinuxResources) -> Result<()> {
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(Error::Unsupported("linux.resources.unified on a cgroup v1 host (use the typed resource fields)".into()));
    }
    if let Some(mem) = r.memory() {
        set_memory(need(m, "memory", "linux.resources.memory")?, mem)?;
    }
    if let Some(cpu) = r.cpu() {
        let uses_cpu = cpu.shares().is_some()
            || cpu.quota().is_some()
            || cpu.period().is_some()
            || cpu.burst().is_some()
            || cpu.realtime_period().is_some()
            || cpu.realtime_runtime().is_some()
            || cpu.idle().is_some();
        if uses_cpu {
            set_cpu(need(m, "cpu", "linux.resources.cpu")?, cpu)?;
        }
        if cpu.cpus().is_some() || cpu.mems().is_some() {
            set_cpuset(need(m, "cpuset", "linux.resources.cpu.cpus/mems")?, cpu)?;
        }
    }
    if let Some(pids) = r.pids() {
        let limit = pids.limit();
        if limit != 0 {
            let v = if limit > 0 { limit.to_string() } else { "max".into() };
            cgroupfs::write(need(m, "pids", "linux.resources.pids")?, "pids.max", &v)?;
        }
    }
    if let Some(bio) = r.block_io() {
        set_blkio(need(m, "blkio", "linux.resources.blockIO")?, bio)?;
    }
    if let Some(limits) = r.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
        let dir = need(m, "hugetlb", "linux.resources.hugepageLimits")?;
        for l in limits {
            set_hugepage(dir, l.page_size(), l.limit())?;
        }
    }
    if let Some(net) = r.network() {
        set_network(m, net)?;
    }
    if let Some(rules) = r.devices().as_ref().filter(|d| !d.is_empty()) {
        set_devices(need(m, "devices", "linux.resources.devices")?, rules)?;
    }
    if let Some(rdma) = r.rdma().as_ref().filter(|d| !d.is_empty()) {
        let dir = need(m, "rdma", "linux.resources.rdma")?;
        for (dev, limit) in rdma {
            cgroupfs::write(dir, "rdma.max", &rdma_line(dev, limit)?)?;
        }
    }
    Ok(())
}

/// Writes a kernel-memory style file that newer kernels dropped or refuse: ignored with a warning.
fn write_obsolete(dir: &Path, file: &str, value: &str) -> Result<()> {
    match cgroupfs::write_raw(dir, file, value) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound || matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(524)) => {
            tracing::warn!(dir = %dir.display(), file, value, error = %e, "kernel memory limits are not supported by this kernel; ignored");
            Ok(())
        }
        Err(source) => Err(Error::Write { dir: dir.into(), file: file.into(), value: value.into(), source }),
    }
}

fn set_memory(dir: &Path, mem: &LinuxMemory) -> Result<()> {
    let limit = mem.limit().unwrap_or(0);
    let mut swap = mem.swap().unwrap_or(0);
    // runc: unlimited memory with no explicit swap means unlimited swap too.
    if limit == -1 && swap == 0 {
        swap = -1;
    }
    let limit_s = limit_v1("memory.limit_in_bytes", limit)?;
    let swap_s = limit_v1("memory.memsw.limit_in_bytes", swap)?;
    if limit > 0 && mem.check_before_update() == Some(true) {
        let usage = cgroupfs::read_u64_or_zero(dir, "memory.usage_in_bytes")?;
        if (limit as u64) < usage {
            return Err(Error::LimitBelowUsage { dir: dir.into(), limit, usage });
        }
    }
    let write_swap = |v: &str| -> Result<()> {
        if dir.join("memory.memsw.limit_in_bytes").exists() {
            return cgroupfs::write(dir, "memory.memsw.limit_in_bytes", v);
        }
        if swap == -1 {
            return Ok(());
        }
        Err(Error::Unsupported(format!(
            "a swap limit ({v}): {} has no memory.memsw.limit_in_bytes (swap accounting is off)",
            dir.display()
        )))
    };
    // The kernel wants memory <= memory+swap at every step, so the order depends on the change.
    let swap_first = match (&limit_s, &swap_s) {
        (Some(_), Some(_)) => swap == -1 || cgroupfs::read_u64_or_zero(dir, "memory.limit_in_bytes")? < swap as u64,
        _ => false,
    };
    if swap_first {
        if let Some(s) = &swap_s {
            write_swap(s)?;
        }
    }
    if let Some(l) = &limit_s {
        cgroupfs::write(dir, "memory.limit_in_bytes", l)?;
    }
    if !swap_first {
        if let Some(s) = &swap_s {
            write_swap(s)?;
        }
    }
    if let Some(v) = limit_v1("memory.soft_limit_in_bytes", mem.reservation().unwrap_or(0))? {
        cgroupfs::write(dir, "memory.soft_limit_in_bytes", &v)?;
    }
    #[allow(deprecated)]
    let kernel = mem.kernel();
    if let Some(v) = limit_v1("memory.kmem.limit_in_bytes", kernel.unwrap_or(0))? {
        write_obsolete(dir, "memory.kmem.limit_in_bytes", &v)?;
    }
    if let Some(v) = limit_v1("memory.kmem.tcp.limit_in_bytes", mem.kernel_tcp().unwrap_or(0))? {
        write_obsolete(dir, "memory.kmem.tcp.limit_in_bytes", &v)?;
    }
    match mem.swappiness() {
        Some(v) if v <= 100 => cgroupfs::write(dir, "memory.swappiness", &v.to_string())?,
        // -1 in Go specs arrives as u64::MAX: "leave the default".
        Some(u64::MAX) | None => {}
        Some(v) => return Err(invalid("memory.swappiness", v, "valid range is 0-100")),
    }
    if mem.disable_oom_killer() == Some(true) {
        cgroupfs::write(dir, "memory.oom_control", "1")?;
    }
    if let Some(h) = mem.use_hierarchy() {
        if let Err(e) = cgroupfs::write(dir, "memory.use_hierarchy", if h { "1" } else { "0" }) {
            tracing::warn!(error = %e, "memory.use_hierarchy is deprecated by the kernel; ignored");
        }
    }
    Ok(())
}

fn set_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
        cgroupfs::write(dir, "cpu.shares", &shares.to_string())?;
        let got = cgroupfs::parse_u64(dir, "cpu.shares", &cgroupfs::read(dir, "cpu.shares")?)?;
        if got != shares {
            return Err(invalid("cpu.shares", shares, format!("the kernel clamped it to {got}; allowed range is 2-262144")));
        }
    }
    let quota = cpu.quota().unwrap_or(0);
    check_quota("cpu.cfs_quota_us", quota)?;
    let mut period_later = None;
    if let Some(p) = cpu.period().filter(|p| *p != 0) {
        let v = p.to_string();
        if let Err(source) = cgroupfs::write_raw(dir, "cpu.cfs_period_us", &v) {
            // A shorter period can conflict with the current quota; retry after the quota.
            if source.raw_os_error() != Some(libc::EINVAL) || quota == 0 {
                return Err(Error::Write { dir: dir.into(), file: "cpu.cfs_period_us".into(), value: v, source });
            }
            period_later = Some(v);
        }
    }
    let mut burst_later = None;
    if let Some(b) = cpu.burst() {
        let v = b.to_string();
        match cgroupfs::write_raw(dir, "cpu.cfs_burst_us", &v) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::warn!(dir = %dir.display(), "cpu.cfs_burst_us absent; cpu burst ignored")
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && quota != 0 => burst_later = Some(v),
            Err(source) => return Err(Error::Write { dir: dir.into(), file: "cpu.cfs_burst_us".into(), value: v, source }),
        }
    }
    if quota != 0 {
        cgroupfs::write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
        if let Some(v) = period_later {
            cgroupfs::write(dir, "cpu.cfs_period_us", &v)?;
        }
        if let Some(v) = burst_later {
            cgroupfs::write(dir, "cpu.cfs_burst_us", &v)?;
        }
    }
    if let Some(p) = cpu.realtime_period().filter(|p| *p != 0) {
        cgroupfs::write(dir, "cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = cpu.realtime_runtime().filter(|r| *r != 0) {
        if r < -1 {
            return Err(invalid("cpu.rt_runtime_us", r, "must be >= 0 or -1 (unlimited)"));
        }
        cgroupfs::write(dir, "cpu.rt_runtime_us", &r.to_string())?;
    }
    if let Some(idle) = cpu.idle() {
        if !(0..=1).contains(&idle) {
            return Err(invalid("cpu.idle", idle, "must be 0 or 1"));
        }
        cgroupfs::write(dir, "cpu.idle", &idle.to_string())?;
    }
    Ok(())
}

/// cpuset.cpus/mems; shared with v2, whose file names are the same.
pub(crate) fn set_cpuset(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    for (file, value) in [("cpuset.cpus", cpu.cpus()), ("cpuset.mems", cpu.mems())] {
        if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
            check_cpuset_list(file, v)?;
            cgroupfs::write(dir, file, v.trim())?;
        }
    }
    Ok(())
}

fn device_number(file: &str, major: i64, minor: i64) -> Result<String> {
    if major < 0 || minor < 0 {
        return Err(invalid(file, format!("{major}:{minor}"), "device numbers must not be negative"));
    }
    Ok(format!("{major}:{minor}"))
}

fn set_blkio(dir: &Path, bio: &LinuxBlockIo) -> Result<()> {
    let bfq = dir.join("blkio.bfq.weight").exists();
    let (weight_file, weight_dev_file) =
        if bfq { ("blkio.bfq.weight", "blkio.bfq.weight_device") } else { ("blkio.weight", "blkio.weight_device") };
    let weight_missing = || {
        Error::Unsupported(format!(
            "blkio weights: {} has neither blkio.bfq.weight nor blkio.weight (no BFQ/CFQ I/O scheduler)",
            dir.display()
        ))
    };
    if let Some(w) = bio.weight().filter(|w| *w != 0) {
        if !(10..=1000).contains(&w) {
            return Err(invalid(weight_file, w, "valid range is 10-1000"));
        }
        if !dir.join(weight_file).exists() {
            return Err(weight_missing());
        }
        cgroupfs::write(dir, weight_file, &w.to_string())?;
    }
    if let Some(w) = bio.leaf_weight().filter(|w| *w != 0) {
        if !dir.join("blkio.leaf_weight").exists() {
            return Err(Error::Unsupported("blkio leafWeight (needs the CFQ scheduler, gone since Linux 5.0)".into()));
        }
        cgroupfs::write(dir, "blkio.leaf_weight", &w.to_string())?;
    }
    for wd in bio.weight_device().iter().flatten() {
        let dev = device_number(weight_dev_file, wd.major(), wd.minor())?;
        if let Some(w) = wd.weight() {
            if !dir.join(weight_dev_file).exists() {
                return Err(weight_missing());
            }
            cgroupfs::write(dir, weight_dev_file, &format!("{dev} {w}"))?;
        }
        if let Some(w) = wd.leaf_weight() {
            cgroupfs::write(dir, "blkio.leaf_weight_device", &format!("{dev} {w}"))?;
        }
    }
    let throttles: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        ("blkio.throttle.read_bps_device", bio.throttle_read_bps_device()),
        ("blkio.throttle.write_bps_device", bio.throttle_write_bps_device()),
        ("blkio.throttle.read_iops_device", bio.throttle_read_iops_device()),
        ("blkio.throttle.write_iops_device", bio.throttle_write_iops_device()),
    ];
    for (file, list) in throttles {
        for t in list.iter().flatten() {
            let dev = device_number(file, t.major(), t.minor())?;
            cgroupfs::write(dir, file, &format!("{dev} {}", t.rate()))?;
        }
    }
    Ok(())
}

fn set_hugepage(dir: &Path, size: &str, limit: i64) -> Result<()> {
    check_page_size(size)?;
    let file = format!("hugetlb.{size}.limit_in_bytes");
    if limit < -1 {
        return Err(invalid(&file, limit, "negative values other than -1 are invalid"));
    }
    if !dir.join(&file).exists() {
        return Err(invalid(&file, size, "this host has no such huge page size"));
    }
    let v = limit.to_string();
    cgroupfs::write(dir, &file, &v)?;
    // Reservation accounting (Linux 5.7+) is the better limit when present; runc sets both.
    let rsvd = format!("hugetlb.{size}.rsvd.limit_in_bytes");
    if dir.join(&rsvd).exists() {
        cgroupfs::write(dir, &rsvd, &v)?;
    }
    Ok(())
}

fn set_network(m: &V1Manager, net: &LinuxNetwork) -> Result<()> {
    if let Some(id) = net.class_id() {
        cgroupfs::write(need(m, "net_cls", "linux.resources.network.classID")?, "net_cls.classid", &id.to_string())?;
    }
    if let Some(prios) = net.priorities().as_ref().filter(|p| !p.is_empty()) {
        let dir = need(m, "net_prio", "linux.resources.network.priorities")?;
        for p in prios {
            if p.name().is_empty() || p.name().contains(char::is_whitespace) {
                return Err(invalid("net_prio.ifpriomap", p.name(), "not an interface name"));
            }
            cgroupfs::write(dir, "net_prio.ifpriomap", &format!("{} {}", p.name(), p.priority()))?;
        }
    }
    Ok(())
}

/// Denies everything, then replays the spec's rules in order, as runc's v1 driver did.
fn set_devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let lines = rules.iter().map(|r| Ok((r.allow(), device_rule_line(r)?))).collect::<Result<Vec<_>>>()?;
    cgroupfs::write(dir, "devices.deny", "a")?;
    for (allow, line) in lines {
        cgroupfs::write(dir, if allow { "devices.allow" } else { "devices.deny" }, &line)?;
    }
    Ok(())
}
