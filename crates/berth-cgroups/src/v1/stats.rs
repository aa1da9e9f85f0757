//! Statistics from v1 controller files; absent controllers leave their part zero.

use std::path::Path;

use super::V1Manager;
use crate::cgroupfs::{self, parse_flat_keyed, read_opt, read_u64_or_zero};
use crate::error::Result;
use crate::resources::host_page_sizes;
use crate::stats::{parse_blkio_v1, BlkioStats, CpuStats, HugetlbStats, MemoryEntry, MemoryStats, PidsStats, Stats};

/// USER_HZ, the unit of cpuacct.stat; 100 on every Linux architecture berth targets.
const USER_HZ: u64 = 100;
const NS_PER_SEC: u64 = 1_000_000_000;

/// Reads every available statistic.
pub(super) fn collect(m: &V1Manager) -> Result<Stats> {
    let mut s = Stats::default();
    if let Some(d) = m.dir("cpuacct") {
        cpuacct(d, &mut s.cpu)?;
    }
    if let Some(d) = m.dir("cpu") {
        if let Some(text) = read_opt(d, "cpu.stat")? {
            for (k, v) in parse_flat_keyed(d, "cpu.stat", &text)? {
                match k.as_str() {
                    "nr_periods" => s.cpu.throttling.periods = v,
                    "nr_throttled" => s.cpu.throttling.throttled_periods = v,
                    "throttled_time" => s.cpu.throttling.throttled_time = v,
                    _ => {}
                }
            }
        }
    }
    if let Some(d) = m.dir("memory") {
        s.memory = memory(d)?;
    }
    if let Some(d) = m.dir("pids") {
        s.pids = PidsStats {
            current: read_u64_or_zero(d, "pids.current")?,
            limit: match read_u64_or_zero(d, "pids.max")? {
                u64::MAX => 0,
                v => v,
            },
        };
    }
    if let Some(d) = m.dir("blkio") {
        s.blkio = blkio(d)?;
    }
    if let Some(d) = m.dir("hugetlb") {
        for size in host_page_sizes() {
            let h = HugetlbStats {
                usage: read_u64_or_zero(d, &format!("hugetlb.{size}.usage_in_bytes"))?,
                max: read_u64_or_zero(d, &format!("hugetlb.{size}.max_usage_in_bytes"))?,
                failcnt: read_u64_or_zero(d, &format!("hugetlb.{size}.failcnt"))?,
            };
            s.hugetlb.insert(size, h);
        }
    }
    Ok(s)
}

fn per_cpu(dir: &Path, file: &str) -> Result<Vec<u64>> {
    let Some(text) = read_opt(dir, file)? else { return Ok(Vec::new()) };
    text.split_whitespace().map(|v| cgroupfs::parse_u64(dir, file, v)).collect()
}

fn cpuacct(d: &Path, cpu: &mut CpuStats) -> Result<()> {
    cpu.usage.total = read_u64_or_zero(d, "cpuacct.usage")?;
    cpu.usage.percpu = per_cpu(d, "cpuacct.usage_percpu")?;
    cpu.usage.percpu_kernel = per_cpu(d, "cpuacct.usage_percpu_sys")?;
    cpu.usage.percpu_user = per_cpu(d, "cpuacct.usage_percpu_user")?;
    if let Some(text) = read_opt(d, "cpuacct.stat")? {
        for (k, ticks) in parse_flat_keyed(d, "cpuacct.stat", &text)? {
            let ns = ticks.saturating_mul(NS_PER_SEC / USER_HZ);
            match k.as_str() {
                "user" => cpu.usage.user = ns,
                "system" => cpu.usage.kernel = ns,
                _ => {}
            }
        }
    }
    Ok(())
}

fn memory_entry(d: &Path, prefix: &str) -> Result<MemoryEntry> {
    Ok(MemoryEntry {
        limit: read_u64_or_zero(d, &format!("{prefix}.limit_in_bytes"))?,
        usage: read_u64_or_zero(d, &format!("{prefix}.usage_in_bytes"))?,
        max: read_u64_or_zero(d, &format!("{prefix}.max_usage_in_bytes"))?,
        failcnt: read_u64_or_zero(d, &format!("{prefix}.failcnt"))?,
    })
}

fn memory(d: &Path) -> Result<MemoryStats> {
    let mut m = MemoryStats {
        usage: memory_entry(d, "memory")?,
        swap: memory_entry(d, "memory.memsw")?,
        kernel: memory_entry(d, "memory.kmem")?,
        kernel_tcp: memory_entry(d, "memory.kmem.tcp")?,
        ..Default::default()
    };
    if let Some(text) = read_opt(d, "memory.stat")? {
        m.raw = parse_flat_keyed(d, "memory.stat", &text)?.into_iter().collect();
        m.cache = m.raw.get("cache").copied().unwrap_or(0);
    }
    Ok(m)
}

fn blkio(d: &Path) -> Result<BlkioStats> {
    // BFQ files carry the full set when that scheduler is in use; throttle files always exist.
    let prefix = if d.join("blkio.bfq.io_service_bytes_recursive").exists() {
        "blkio.bfq"
    } else if d.join("blkio.io_service_bytes_recursive").exists() {
        "blkio"
    } else {
        "blkio.throttle"
    };
    let read = |name: &str| -> Result<Vec<_>> {
        let file = format!("{prefix}.{name}");
        match read_opt(d, &file)? {
            Some(text) => parse_blkio_v1(d, &file, &text),
            None => Ok(Vec::new()),
        }
    };
    let mut b = BlkioStats {
        io_service_bytes_recursive: read("io_service_bytes_recursive")?,
        io_serviced_recursive: read("io_serviced_recursive")?,
        io_queued_recursive: read("io_queued_recursive")?,
        io_service_time_recursive: read("io_service_time_recursive")?,
        io_wait_time_recursive: read("io_wait_time_recursive")?,
        io_merged_recursive: read("io_merged_recursive")?,
        io_time_recursive: read("time_recursive")?,
        sectors_recursive: read("sectors_recursive")?,
    };
    // BFQ without CONFIG_BFQ_CGROUP_DEBUG may report nothing; fall back to the throttle counters.
    if prefix != "blkio.throttle" && b.io_service_bytes_recursive.is_empty() {
        for (name, list) in
            [("io_service_bytes_recursive", &mut b.io_service_bytes_recursive), ("io_serviced_recursive", &mut b.io_serviced_recursive)]
        {
            let file = format!("blkio.throttle.{name}");
            if let Some(text) = read_opt(d, &file)? {
                *list = parse_blkio_v1(d, &file, &text)?;
            }
        }
    }
    Ok(b)
}
