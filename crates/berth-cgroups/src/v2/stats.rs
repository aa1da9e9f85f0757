//! Statistics from v2 interface files, mapped onto runc's (v1-shaped) fields.

use std::path::Path;

use crate::cgroupfs::{parse_flat_keyed, read_keyed, read_opt, read_u64_or_zero};
use crate::error::Result;
use crate::resources::host_page_sizes;
use crate::stats::{parse_io_stat, HugetlbStats, MemoryEntry, PidsStats, Stats};

/// Reads every available statistic of the leaf `d`.
pub(super) fn collect(d: &Path) -> Result<Stats> {
    let mut s = Stats::default();
    if let Some(text) = read_opt(d, "cpu.stat")? {
        for (k, v) in parse_flat_keyed(d, "cpu.stat", &text)? {
            let ns = v.saturating_mul(1000);
            match k.as_str() {
                "usage_usec" => s.cpu.usage.total = ns,
                "user_usec" => s.cpu.usage.user = ns,
                "system_usec" => s.cpu.usage.kernel = ns,
                "nr_periods" => s.cpu.throttling.periods = v,
                "nr_throttled" => s.cpu.throttling.throttled_periods = v,
                "throttled_usec" => s.cpu.throttling.throttled_time = ns,
                _ => {}
            }
        }
    }
    if d.join("memory.current").exists() {
        let usage = read_u64_or_zero(d, "memory.current")?;
        let limit = read_u64_or_zero(d, "memory.max")?;
        s.memory.usage = MemoryEntry {
            limit,
            usage,
            max: read_u64_or_zero(d, "memory.peak")?,
            failcnt: read_keyed(d, "memory.events", "max")?.unwrap_or(0),
        };
        // runc reports v2 swap as memory+swap so consumers keep v1 semantics.
        if d.join("memory.swap.current").exists() {
            let swap = read_u64_or_zero(d, "memory.swap.current")?;
            let swap_max = read_u64_or_zero(d, "memory.swap.max")?;
            s.memory.swap = MemoryEntry {
                limit: swap_max.saturating_add(limit),
                usage: swap.saturating_add(usage),
                max: 0,
                failcnt: read_keyed(d, "memory.swap.events", "max")?.unwrap_or(0),
            };
        }
        if let Some(text) = read_opt(d, "memory.stat")? {
            s.memory.raw = parse_flat_keyed(d, "memory.stat", &text)?.into_iter().collect();
            s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
        }
    }
    if d.join("pids.current").exists() {
        s.pids = PidsStats {
            current: read_u64_or_zero(d, "pids.current")?,
            limit: match read_u64_or_zero(d, "pids.max")? {
                u64::MAX => 0,
                v => v,
            },
        };
    }
    if let Some(text) = read_opt(d, "io.stat")? {
        let (bytes, ios) = parse_io_stat(d, &text)?;
        s.blkio.io_service_bytes_recursive = bytes;
        s.blkio.io_serviced_recursive = ios;
    }
    for size in host_page_sizes() {
        let current = format!("hugetlb.{size}.current");
        if d.join(&current).exists() {
            let h = HugetlbStats {
                usage: read_u64_or_zero(d, &current)?,
                max: 0,
                failcnt: read_keyed(d, &format!("hugetlb.{size}.events"), "max")?.unwrap_or(0),
            };
            s.hugetlb.insert(size, h);
        }
    }
    Ok(s)
}
