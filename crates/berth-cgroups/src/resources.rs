//! Conversions and validation of `linux.resources` values shared by v1 and v2 (runc's rules).

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxRdma};

use crate::error::{Error, Result};

fn invalid(file: &str, value: impl ToString, reason: &str) -> Error {
    Error::InvalidValue { file: file.to_string(), value: value.to_string(), reason: reason.to_string() }
}

/// cpu.shares (v1, 2..=262144) → cpu.weight (v2, 1..=10000); 0 means unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        s => 1 + ((s - 2) * 9999) / 262_142,
    }
}

/// blkio.weight (v1, 10..=1000) → io.weight (v2, 1..=10000); 0 means unset.
pub fn blkio_weight_to_v2(file: &str, weight: u16) -> Result<u64> {
    match weight {
        0 => Ok(0),
        10..=1000 => Ok(1 + (u64::from(weight) - 10) * 9999 / 990),
        _ => Err(invalid(file, weight, "blkio weight must be within 10..=1000")),
    }
}

/// The memory+swap limit of the spec → v2 memory.swap.max (swap only). `None` = leave unset.
pub fn swap_to_v2(swap: i64, memory: i64) -> Result<Option<String>> {
    // Like runc: unlimited memory without an explicit swap means unlimited swap too.
    if memory == -1 && swap == 0 {
        return Ok(Some("max".into()));
    }
    match swap {
        0 => return Ok(None),
        -1 => return Ok(Some("max".into())),
        s if s < -1 => return Err(invalid("memory.swap.max", s, "negative values other than -1 are invalid")),
        _ => {}
    }
    if memory == 0 || memory == -1 {
        return Err(invalid("memory.swap.max", swap, "a swap limit needs a memory limit"));
    }
    if memory < 0 {
        return Err(invalid("memory.max", memory, "negative values other than -1 are invalid"));
    }
    if swap < memory {
        return Err(invalid("memory.swap.max", swap, "memory+swap limit must be >= the memory limit"));
    }
    Ok(Some((swap - memory).to_string()))
}

/// A v1 byte/count limit: 0 → unset, -1 → "-1" (unlimited), other negatives rejected.
pub fn limit_v1(file: &str, v: i64) -> Result<Option<String>> {
    match v {
        0 => Ok(None),
        -1 => Ok(Some("-1".into())),
        v if v < 0 => Err(invalid(file, v, "negative values other than -1 are invalid")),
        v => Ok(Some(v.to_string())),
    }
}

/// A v2 byte/count limit: 0 → unset, -1 → "max", other negatives rejected.
pub fn limit_v2(file: &str, v: i64) -> Result<Option<String>> {
    Ok(limit_v1(file, v)?.map(|s| if s == "-1" { "max".into() } else { s }))
}

/// A CFS quota: 0 → unset, -1 → unlimited, other negatives rejected.
pub fn check_quota(file: &str, quota: i64) -> Result<()> {
    if quota < -1 {
        return Err(invalid(file, quota, "a cpu quota must be > 0 or -1 (unlimited)"));
    }
    Ok(())
}

/// Checks a cpuset list such as "0-3,7".
pub fn check_cpuset_list(file: &str, list: &str) -> Result<()> {
    let t = list.trim();
    if t.is_empty() {
        return Ok(());
    }
    for part in t.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) else {
            return Err(invalid(file, list, "expected a list like \"0-3,7\""));
        };
        if a > b {
            return Err(invalid(file, list, "a range must go upwards"));
        }
    }
    Ok(())
}

/// Checks a hugepage size like "2MB" or "1GB" so it can become part of a file name.
pub fn check_page_size(size: &str) -> Result<()> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || !["KB", "MB", "GB"].contains(&unit) {
        return Err(invalid("hugetlb.<size>", size, "expected a page size like 2MB or 1GB"));
    }
    Ok(())
}

/// The hugepage sizes of the host, as cgroup file names use them ("2MB", "1GB").
pub fn host_page_sizes() -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") else { return Vec::new() };
    let mut out: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kb = name.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse::<u64>().ok()?;
            Some(page_size_name(kb))
        })
        .collect();
    out.sort();
    out
}

/// A size in kB → the cgroup spelling ("2048" → "2MB").
pub fn page_size_name(kb: u64) -> String {
    if kb >= 1 << 20 && kb & ((1 << 20) - 1) == 0 {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb & ((1 << 10) - 1) == 0 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

/// One device cgroup rule in the v1 "type major:minor access" form.
pub fn device_rule_line(rule: &LinuxDeviceCgroup) -> Result<String> {
    let typ = match rule.typ().unwrap_or_default() {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        // Unbuffered character devices are character devices for the cgroup.
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => return Err(invalid("devices", "p", "FIFO rules do not exist for the device cgroup")),
    };
    let num = |n: Option<i64>| match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    };
    let access = rule.access().as_deref().unwrap_or("");
    let access = if access.is_empty() { "rwm" } else { access };
    if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(invalid("devices", access, "access must be made of r, w and m"));
    }
    Ok(format!("{typ} {}:{} {access}", num(rule.major()), num(rule.minor())))
}

/// One rdma.max line: "<device> hca_handle=<n|max> hca_object=<n|max>".
pub fn rdma_line(device: &str, limit: &LinuxRdma) -> Result<String> {
    if device.is_empty() || device.contains(char::is_whitespace) || device.contains('/') {
        return Err(invalid("rdma.max", device, "not a device name"));
    }
    let v = |n: Option<u32>| n.map_or_else(|| "max".to_string(), |n| n.to_string());
    Ok(format!("{device} hca_handle={} hca_object={}", v(limit.hca_handles()), v(limit.hca_objects())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
        assert_eq!(shares_to_weight(512), 1 + (510 * 9999) / 262_142);
    }

    #[test]
    fn blkio_weight_converts_and_rejects_out_of_range() {
        assert_eq!(blkio_weight_to_v2("io.weight", 10).unwrap(), 1);
        assert_eq!(blkio_weight_to_v2("io.weight", 1000).unwrap(), 10_000);
        assert_eq!(blkio_weight_to_v2("io.weight", 500).unwrap(), 1 + 490 * 9999 / 990);
        assert!(blkio_weight_to_v2("io.weight", 5).is_err());
    }

    #[test]
    fn swap_converts_to_v2_semantics() {
        assert_eq!(swap_to_v2(0, -1).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_to_v2(-1, 100).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_to_v2(0, 100).unwrap(), None);
        assert_eq!(swap_to_v2(300, 100).unwrap().as_deref(), Some("200"));
        assert!(swap_to_v2(50, 100).is_err());
        assert!(swap_to_v2(300, 0).is_err());
        assert!(swap_to_v2(-5, 100).is_err());
    }

    #[test]
    fn limits_map_unset_unlimited_and_reject_negatives() {
        assert_eq!(limit_v1("memory.limit_in_bytes", 0).unwrap(), None);
        assert_eq!(limit_v1("memory.limit_in_bytes", -1).unwrap().as_deref(), Some("-1"));
        assert_eq!(limit_v2("memory.max", -1).unwrap().as_deref(), Some("max"));
        assert_eq!(limit_v2("memory.max", 4096).unwrap().as_deref(), Some("4096"));
        let e = limit_v1("memory.limit_in_bytes", -2).unwrap_err().to_string();
        assert!(e.contains("memory.limit_in_bytes") && e.contains("-2"), "{e}");
        assert!(check_quota("cpu.cfs_quota_us", -5).is_err());
        assert!(check_quota("cpu.cfs_quota_us", -1).is_ok());
    }

    #[test]
    fn cpuset_lists_are_checked() {
        for ok in ["0", "0-3", "0-3,7", "1,2,3", ""] {
            check_cpuset_list("cpuset.cpus", ok).unwrap();
        }
        for bad in ["abc", "3-1", "1,,2", "-1", "0-"] {
            let e = check_cpuset_list("cpuset.cpus", bad).unwrap_err().to_string();
            assert!(e.contains("cpuset.cpus"), "{e}");
        }
    }

    #[test]
    fn page_sizes_are_named_like_the_kernel() {
        assert_eq!(page_size_name(2048), "2MB");
        assert_eq!(page_size_name(1_048_576), "1GB");
        assert_eq!(page_size_name(64), "64KB");
        check_page_size("2MB").unwrap();
        assert!(check_page_size("2MB/../x").is_err());
        assert!(check_page_size("MB").is_err());
    }

    #[test]
    fn device_rules_render_in_v1_syntax() {
        let deny_all = LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().unwrap();
        assert_eq!(device_rule_line(&deny_all).unwrap(), "a *:* rwm");
        let null = LinuxDeviceCgroupBuilder::default().allow(true).typ(LinuxDeviceType::C).major(1).minor(3).access("rw").build().unwrap();
        assert_eq!(device_rule_line(&null).unwrap(), "c 1:3 rw");
        let bad = LinuxDeviceCgroupBuilder::default().allow(true).access("rwx").build().unwrap();
        assert!(device_rule_line(&bad).is_err());
    }

    #[test]
    fn rdma_lines_use_max_for_unset() {
        let l = oci_spec::runtime::LinuxRdmaBuilder::default().hca_handles(3u32).build().unwrap();
        assert_eq!(rdma_line("mlx5_1", &l).unwrap(), "mlx5_1 hca_handle=3 hca_object=max");
        assert!(rdma_line("a b", &l).is_err());
    }
}
