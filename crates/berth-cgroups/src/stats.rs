//! Resource usage statistics, shaped like the `data` of runc's `events --stats` JSON.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// All statistics of a container's cgroup.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    /// CPU time and throttling.
    pub cpu: CpuStats,
    /// Memory usage and limits.
    pub memory: MemoryStats,
    /// Number of tasks.
    pub pids: PidsStats,
    /// Block I/O counters.
    pub blkio: BlkioStats,
    /// Hugetlb usage per page size ("2MB").
    pub hugetlb: HashMap<String, HugetlbStats>,
}

/// CPU usage and throttling.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CpuStats {
    /// CPU time used.
    pub usage: CpuUsage,
    /// CFS throttling counters.
    pub throttling: Throttling,
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CpuUsage {
    /// Total CPU time.
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    /// Total CPU time per CPU (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Kernel CPU time per CPU (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    /// User CPU time per CPU (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    /// Time spent in kernel mode.
    pub kernel: u64,
    /// Time spent in user mode.
    pub user: u64,
}

/// CFS bandwidth throttling counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    /// Number of enforcement periods.
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// Periods in which the group was throttled.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Total throttled time in nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// Memory statistics.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MemoryStats {
    /// Page cache bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Memory usage.
    pub usage: MemoryEntry,
    /// Memory+swap usage (v1 semantics, also on v2).
    pub swap: MemoryEntry,
    /// Kernel memory (v1 only).
    pub kernel: MemoryEntry,
    /// Kernel TCP buffer memory (v1 only).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as read.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// One usage/limit quadruple; `u64::MAX` means unlimited.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MemoryEntry {
    /// The limit.
    pub limit: u64,
    /// Current usage.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak usage.
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Times the limit was hit.
    pub failcnt: u64,
}

/// Task counts.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PidsStats {
    /// Tasks in the cgroup now.
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// pids.max (0 = unlimited).
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// Block I/O counters per device and operation.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlkioStats {
    /// Bytes transferred.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// I/O operations issued.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// Queued operations (v1 CFQ/BFQ only).
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    /// Time spent servicing (v1 CFQ/BFQ only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    /// Time spent waiting (v1 CFQ/BFQ only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    /// Merged operations (v1 CFQ/BFQ only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    /// Device time (v1 CFQ/BFQ only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    /// Sectors transferred (v1 CFQ/BFQ only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// One block I/O counter.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BlkioEntry {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// Operation ("Read", "Write", "Sync", "Async", "Discard", "Total"), empty for single values.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// The counter.
    pub value: u64,
}

/// Hugetlb usage of one page size.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HugetlbStats {
    /// Bytes in use.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak bytes (v1 only).
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Times the limit was hit.
    pub failcnt: u64,
}

fn parse_err(dir: &Path, file: &str, line: &str) -> Error {
    Error::Parse { dir: dir.to_path_buf(), file: file.to_string(), reason: format!("unexpected line {line:?}") }
}

fn parse_dev(dir: &Path, file: &str, line: &str, dev: &str) -> Result<(u64, u64)> {
    let (ma, mi) = dev.split_once(':').ok_or_else(|| parse_err(dir, file, line))?;
    match (ma.parse(), mi.parse()) {
        (Ok(ma), Ok(mi)) => Ok((ma, mi)),
        _ => Err(parse_err(dir, file, line)),
    }
}

/// Parses a v1 blkio file: "8:0 Read 4096" lines (and "8:0 4096"); "Total N" lines are skipped.
pub(crate) fn parse_blkio_v1(dir: &Path, file: &str, text: &str) -> Result<Vec<BlkioEntry>> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dev, op, value) = match f.as_slice() {
            [k, _] if *k == "Total" => continue,
            [dev, value] => (*dev, "", *value),
            [dev, op, value] => (*dev, *op, *value),
            _ => return Err(parse_err(dir, file, line)),
        };
        let (major, minor) = parse_dev(dir, file, line, dev)?;
        let value = value.parse().map_err(|_| parse_err(dir, file, line))?;
        out.push(BlkioEntry { major, minor, op: op.to_string(), value });
    }
    Ok(out)
}

/// Parses v2 io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 …") into (bytes, ios) entries like runc.
pub(crate) fn parse_io_stat(dir: &Path, text: &str) -> Result<(Vec<BlkioEntry>, Vec<BlkioEntry>)> {
    let (mut bytes, mut ios) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace();
        let dev = f.next().ok_or_else(|| parse_err(dir, "io.stat", line))?;
        let (major, minor) = parse_dev(dir, "io.stat", line, dev)?;
        for kv in f {
            let (k, v) = kv.split_once('=').ok_or_else(|| parse_err(dir, "io.stat", line))?;
            let value: u64 = v.parse().map_err(|_| parse_err(dir, "io.stat", line))?;
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "dbytes" => (&mut bytes, "Discard"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                "dios" => (&mut ios, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry { major, minor, op: op.into(), value });
        }
    }
    Ok((bytes, ios))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_v1_lines_parse_and_total_is_skipped() {
        let text = "8:0 Read 4096\n8:0 Write 0\n8:0 Total 4096\nTotal 4096\n";
        let e = parse_blkio_v1(Path::new("/b"), "blkio.x", text).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0], BlkioEntry { major: 8, minor: 0, op: "Read".into(), value: 4096 });
        assert!(parse_blkio_v1(Path::new("/b"), "blkio.x", "8-0 Read 1\n").is_err());
    }

    #[test]
    fn io_stat_splits_bytes_and_ios() {
        let text = "253:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n";
        let (b, i) = parse_io_stat(Path::new("/c"), text).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(i.len(), 3);
        assert_eq!(b[1], BlkioEntry { major: 253, minor: 0, op: "Write".into(), value: 20 });
    }

    #[test]
    fn stats_serialize_with_runc_field_names() {
        let mut s = Stats::default();
        s.cpu.throttling.throttled_periods = 2;
        s.blkio.io_service_bytes_recursive.push(BlkioEntry { major: 8, minor: 0, op: "Read".into(), value: 1 });
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["cpu"]["throttling"]["throttledPeriods"], 2);
        assert_eq!(j["blkio"]["ioServiceBytesRecursive"][0]["op"], "Read");
        assert!(j["memory"].get("kernelTCP").is_some());
    }
}
