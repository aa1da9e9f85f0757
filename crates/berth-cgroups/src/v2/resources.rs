//! Writing `linux.resources` to v2 interface files, with runc's v1 → v2 conversions.

use std::io::ErrorKind;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources, LinuxThrottleDevice};

use super::devices_bpf::DeviceFilter;
use crate::cgroupfs;
use crate::error::{Error, Result};
use crate::resources::{blkio_weight_to_v2, check_page_size, check_quota, limit_v2, rdma_line, shares_to_weight, swap_to_v2};
use crate::v1::set_cpuset;

fn invalid(file: &str, value: impl ToString, reason: impl ToString) -> Error {
    Error::InvalidValue { file: file.into(), value: value.to_string(), reason: reason.to_string() }
}

/// Applies every resource of `r` that is set to the leaf `dir`; the `unified` map goes last so it wins.
pub(super) fn set(dir: &Path, r: &LinuxResources) -> Result<()> {
    // Compiled (validated) before anything is written; installed after the other checks.
    let device_filter = match r.devices().as_deref() {
        Some(rules) if !rules.is_empty() => Some(DeviceFilter::compile(rules)?),
        _ => None,
    };
    if let Some(net) = r.network() {
        if net.class_id().is_some() || net.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(Error::Unsupported("linux.resources.network (net_cls/net_prio) on cgroup v2".into()));
        }
    }
    if let Some(filter) = &device_filter {
        filter.install(dir)?;
    }
    if let Some(mem) = r.memory() {
        set_memory(dir, mem)?;
    }
    if let Some(cpu) = r.cpu() {
        set_cpu(dir, cpu)?;
        set_cpuset(dir, cpu)?;
    }
    if let Some(pids) = r.pids() {
        let limit = pids.limit();
        if limit != 0 {
            let v = if limit > 0 { limit.to_string() } else { "max".into() };
            cgroupfs::write(dir, "pids.max", &v)?;
        }
    }
    if let Some(bio) = r.block_io() {
        set_io(dir, bio)?;
    }
    for l in r.hugepage_limits().iter().flatten() {
        check_page_size(l.page_size())?;
        let file = format!("hugetlb.{}.max", l.page_size());
        let v = if l.limit() == -1 { "max".to_string() } else { l.limit().to_string() };
        if l.limit() < -1 {
            return Err(invalid(&file, l.limit(), "negative values other than -1 are invalid"));
        }
        cgroupfs::write(dir, &file, &v)?;
        let rsvd = format!("hugetlb.{}.rsvd.max", l.page_size());
        if dir.join(&rsvd).exists() {
            cgroupfs::write(dir, &rsvd, &v)?;
        }
    }
    for (dev, limit) in r.rdma().iter().flatten() {
        cgroupfs::write(dir, "rdma.max", &rdma_line(dev, limit)?)?;
    }
    if let Some(unified) = r.unified() {
        set_unified(dir, unified)?;
    }
    Ok(())
}

fn set_memory(dir: &Path, mem: &LinuxMemory) -> Result<()> {
    let limit = mem.limit().unwrap_or(0);
    let swap = swap_to_v2(mem.swap().unwrap_or(0), limit)?;
    let limit_s = limit_v2("memory.max", limit)?;
    if limit > 0 && mem.check_before_update() == Some(true) {
        let usage = cgroupfs::read_u64_or_zero(dir, "memory.current")?;
        if (limit as u64) < usage {
            return Err(Error::LimitBelowUsage { dir: dir.into(), limit, usage });
        }
    }
    if let Some(s) = &swap {
        match cgroupfs::write_raw(dir, "memory.swap.max", s) {
            Ok(()) => {}
            // Without swap accounting, "no swap" and "unlimited swap" are both already true.
            Err(e) if e.kind() == ErrorKind::NotFound && (s == "max" || s == "0") => {}
            Err(source) => return Err(Error::Write { dir: dir.into(), file: "memory.swap.max".into(), value: s.clone(), source }),
        }
    }
    if let Some(l) = &limit_s {
        cgroupfs::write(dir, "memory.max", l)?;
    }
    if let Some(v) = limit_v2("memory.low", mem.reservation().unwrap_or(0))? {
        cgroupfs::write(dir, "memory.low", &v)?;
    }
    #[allow(deprecated)]
    let kernel = mem.kernel();
    if kernel.is_some() || mem.kernel_tcp().is_some() {
        tracing::warn!("kernel memory limits do not exist on cgroup v2; ignored");
    }
    if mem.swappiness().is_some_and(|s| s != u64::MAX) {
        tracing::warn!("memory.swappiness does not exist on cgroup v2; ignored");
    }
    if mem.disable_oom_killer() == Some(true) {
        tracing::warn!("disableOOMKiller does not exist on cgroup v2; ignored");
    }
    Ok(())
}

fn set_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if cpu.realtime_period().unwrap_or(0) != 0 || cpu.realtime_runtime().unwrap_or(0) != 0 {
        return Err(Error::Unsupported("realtime cpu scheduling limits on cgroup v2".into()));
    }
    if let Some(idle) = cpu.idle() {
        if !(0..=1).contains(&idle) {
            return Err(invalid("cpu.idle", idle, "must be 0 or 1"));
        }
        cgroupfs::write(dir, "cpu.idle", &idle.to_string())?;
    }
    let weight = shares_to_weight(cpu.shares().unwrap_or(0));
    if weight != 0 {
        cgroupfs::write(dir, "cpu.weight", &weight.to_string())?;
    }
    let quota = cpu.quota().unwrap_or(0);
    check_quota("cpu.max", quota)?;
    let period = cpu.period().unwrap_or(0);
    let mut burst_later = None;
    if let Some(b) = cpu.burst() {
        let v = b.to_string();
        match cgroupfs::write_raw(dir, "cpu.max.burst", &v) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::warn!(dir = %dir.display(), "cpu.max.burst absent; cpu burst ignored")
            }
            // A burst above the old quota is refused until the new quota is in.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && quota != 0 => burst_later = Some(v),
            Err(source) => return Err(Error::Write { dir: dir.into(), file: "cpu.max.burst".into(), value: v, source }),
        }
    }
    if quota != 0 || period != 0 {
        let mut v = if quota > 0 { quota.to_string() } else { "max".to_string() };
        if period != 0 {
            v.push_str(&format!(" {period}"));
        }
        cgroupfs::write(dir, "cpu.max", &v)?;
        if let Some(b) = burst_later {
            cgroupfs::write(dir, "cpu.max.burst", &b)?;
        }
    }
    Ok(())
}

fn set_io(dir: &Path, bio: &LinuxBlockIo) -> Result<()> {
    let bfq = dir.join("io.bfq.weight").exists();
    if let Some(w) = bio.weight().filter(|w| *w != 0) {
        if bfq {
            if !(1..=1000).contains(&w) {
                return Err(invalid("io.bfq.weight", w, "valid range is 1-1000"));
            }
            cgroupfs::write(dir, "io.bfq.weight", &w.to_string())?;
        } else {
            cgroupfs::write(dir, "io.weight", &blkio_weight_to_v2("io.weight", w)?.to_string())?;
        }
    }
    if bio.leaf_weight().is_some() {
        tracing::warn!("blkio leafWeight does not exist on cgroup v2; ignored");
    }
    for wd in bio.weight_device().iter().flatten() {
        let Some(w) = wd.weight() else { continue };
        if wd.major() < 0 || wd.minor() < 0 {
            return Err(invalid("io.weight", format!("{}:{}", wd.major(), wd.minor()), "negative device number"));
        }
        let (file, w) = if bfq { ("io.bfq.weight", u64::from(w)) } else { ("io.weight", blkio_weight_to_v2("io.weight", w)?) };
        cgroupfs::write(dir, file, &format!("{}:{} {w}", wd.major(), wd.minor()))?;
    }
    let throttles: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        ("rbps", bio.throttle_read_bps_device()),
        ("wbps", bio.throttle_write_bps_device()),
        ("riops", bio.throttle_read_iops_device()),
        ("wiops", bio.throttle_write_iops_device()),
    ];
    for (key, list) in throttles {
        for t in list.iter().flatten() {
            if t.major() < 0 || t.minor() < 0 {
                return Err(invalid("io.max", format!("{}:{}", t.major(), t.minor()), "negative device number"));
            }
            // A rate of 0 means "no limit" in the spec's v1 heritage.
            let rate = if t.rate() == 0 { "max".to_string() } else { t.rate().to_string() };
            cgroupfs::write(dir, "io.max", &format!("{}:{} {key}={rate}", t.major(), t.minor()))?;
        }
    }
    Ok(())
}

/// Checks that a `unified` key names a file of the cgroup directory itself.
pub(crate) fn check_unified_key(key: &str) -> Result<()> {
    if key.is_empty() || key.contains('/') || key == "." || key == ".." || key.contains('\0') {
        return Err(invalid("linux.resources.unified", key, "a key must be a plain cgroup file name"));
    }
    if key.starts_with("cgroup.") && key != "cgroup.freeze" && key != "cgroup.max.depth" && key != "cgroup.max.descendants" {
        return Err(invalid("linux.resources.unified", key, "cgroup core files other than limits cannot be set"));
    }
    Ok(())
}

fn set_unified(dir: &Path, unified: &std::collections::HashMap<String, String>) -> Result<()> {
    let mut entries: Vec<(&String, &String)> = unified.iter().collect();
    entries.sort();
    // Validate every key before writing any, so a bad map changes nothing.
    for (k, _) in &entries {
        check_unified_key(k)?;
    }
    for (k, v) in entries {
        match cgroupfs::write_raw(dir, k, v) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(invalid(k, v, "no such file in the cgroup (is its controller enabled?)"));
            }
            Err(source) => return Err(Error::Write { dir: dir.into(), file: k.clone(), value: v.clone(), source }),
        }
    }
    Ok(())
}
