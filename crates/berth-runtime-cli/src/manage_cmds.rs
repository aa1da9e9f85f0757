//! `pause`, `resume`, `ps`, `events` and `update`: runc's flags and output formats over
//! the library's `manage` operations.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use berth_runtime::manage::Event;
use berth_runtime::Runtime;
use clap::Args;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

type CmdResult = Result<(), Box<dyn std::error::Error>>;

/// The container id of `pause` and `resume`.
#[derive(Args)]
pub struct IdArgs {
    /// Container id.
    id: String,
}

/// Arguments of `ps`.
#[derive(Args)]
pub struct PsArgs {
    /// table or json.
    #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Container id.
    id: String,
    /// Arguments for ps (default -ef), after `--`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

/// Arguments of `events`.
#[derive(Args)]
pub struct EventsArgs {
    /// Interval between stats events (Go duration: 5s, 500ms, 1m).
    #[arg(long, default_value = "5s")]
    interval: String,
    /// Print the container's stats once and exit.
    #[arg(long)]
    stats: bool,
    /// Container id.
    id: String,
}

/// Arguments of `update`: runc's flags, or a whole LinuxResources JSON with `-r`.
#[derive(Args)]
pub struct UpdateArgs {
    /// Container id.
    id: String,
    /// A LinuxResources JSON file to read the new values from ("-" for stdin).
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Block IO weight (10-1000).
    #[arg(long = "blkio-weight", allow_negative_numbers = true)]
    blkio_weight: Option<String>,
    /// CPU CFS period in microseconds.
    #[arg(long = "cpu-period", allow_negative_numbers = true)]
    cpu_period: Option<String>,
    /// CPU CFS quota in microseconds (-1: unlimited).
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    cpu_quota: Option<String>,
    /// CPU shares (relative weight vs. other containers).
    #[arg(long = "cpu-share", alias = "cpu-shares", allow_negative_numbers = true)]
    cpu_share: Option<String>,
    /// CPU realtime period in microseconds.
    #[arg(long = "cpu-rt-period", allow_negative_numbers = true)]
    cpu_rt_period: Option<String>,
    /// CPU realtime runtime in microseconds.
    #[arg(long = "cpu-rt-runtime", allow_negative_numbers = true)]
    cpu_rt_runtime: Option<String>,
    /// CPUs to use (0-3, 0,1).
    #[arg(long = "cpuset-cpus", allow_negative_numbers = true)]
    cpuset_cpus: Option<String>,
    /// Memory nodes to use (0-3, 0,1).
    #[arg(long = "cpuset-mems", allow_negative_numbers = true)]
    cpuset_mems: Option<String>,
    /// Kernel memory limit (obsolete; ignored by new kernels).
    #[arg(long = "kernel-memory", allow_negative_numbers = true)]
    kernel_memory: Option<String>,
    /// Kernel TCP buffer memory limit (obsolete; ignored by new kernels).
    #[arg(long = "kernel-memory-tcp", allow_negative_numbers = true)]
    kernel_memory_tcp: Option<String>,
    /// Memory limit (e.g. 512m, 1g; -1: unlimited).
    #[arg(long, allow_negative_numbers = true)]
    memory: Option<String>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation", allow_negative_numbers = true)]
    memory_reservation: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap).
    #[arg(long = "memory-swap", allow_negative_numbers = true)]
    memory_swap: Option<String>,
    /// Maximum number of pids (-1: unlimited).
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pids_limit: Option<String>,
}

/// `pause`: freeze the container.
pub fn pause(rt: &Runtime, a: &IdArgs) -> CmdResult {
    Ok(rt.pause(&a.id)?)
}

/// `resume`: thaw a paused container.
pub fn resume(rt: &Runtime, a: &IdArgs) -> CmdResult {
    Ok(rt.resume(&a.id)?)
}

/// `ps`: the container's pids as JSON, or the host's `ps` output cut to them.
pub fn ps(rt: &Runtime, a: &PsArgs) -> CmdResult {
    let pids = rt.pids(&a.id)?;
    if a.format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<&str> = if a.ps_args.is_empty() { vec!["-ef"] } else { a.ps_args.iter().map(String::as_str).collect() };
    let out = std::process::Command::new("ps").args(&args).output().map_err(|e| format!("run ps: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("ps {}: {}: {}", args.join(" "), out.status, text.trim()).into());
    }
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let pid_col = header.split_whitespace().position(|f| f == "PID").ok_or("couldn't find PID field in ps output")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{header}")?;
    for line in lines.filter(|l| !l.is_empty()) {
        let pid = line.split_whitespace().nth(pid_col).and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            writeln!(stdout, "{line}")?;
        }
    }
    Ok(())
}

/// `events`: one stats event with `--stats`, else stats every interval and OOM events until
/// the container stops.
pub fn events(rt: &Runtime, a: &EventsArgs) -> CmdResult {
    let interval = parse_duration(&a.interval).map_err(|e| format!("invalid value {:?} for --interval: {e}", a.interval))?;
    if interval.is_zero() {
        return Err("duration interval must be greater than 0".into());
    }
    let print = |e: &Event| -> berth_runtime::Result<()> {
        let line = serde_json::to_string(e).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|_| out.flush())
            .map_err(|source| berth_runtime::Error::Io { context: "write event".into(), source })
    };
    if a.stats {
        let stats = rt.stats(&a.id)?;
        print(&Event::stats(&a.id, stats))?;
        return Ok(());
    }
    Ok(rt.watch_events(&a.id, interval, print)?)
}

/// `update`: change the resources of a running container.
pub fn update(rt: &Runtime, a: &UpdateArgs) -> CmdResult {
    let change = match &a.resources {
        Some(path) => {
            if a.has_value_flags() {
                return Err("--resources cannot be combined with the single-value flags of update".into());
            }
            read_resources(path)?
        }
        None => a.to_resources()?,
    };
    Ok(rt.update(&a.id, &change)?)
}

fn read_resources(path: &PathBuf) -> Result<LinuxResources, Box<dyn std::error::Error>> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| format!("read resources from stdin: {e}"))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("read resources {}: {e}", path.display()))?
    };
    serde_json::from_str(&text).map_err(|e| format!("resources {}: invalid LinuxResources JSON: {e}", path.display()).into())
}

fn bad(flag: &str, value: &str, what: &str) -> String {
    format!("invalid value {value:?} for --{flag}: {what}")
}

fn uint(flag: &str, v: &Option<String>) -> Result<Option<u64>, String> {
    v.as_deref().map(|s| s.parse::<u64>().map_err(|_| bad(flag, s, "expected an unsigned integer"))).transpose()
}

fn int(flag: &str, v: &Option<String>) -> Result<Option<i64>, String> {
    v.as_deref().map(|s| s.parse::<i64>().map_err(|_| bad(flag, s, "expected an integer"))).transpose()
}

fn bytes(flag: &str, v: &Option<String>) -> Result<Option<i64>, String> {
    v.as_deref()
        .map(|s| if s == "-1" { Ok(-1) } else { ram_in_bytes(s).ok_or_else(|| bad(flag, s, "expected a size like 512m or 1g, or -1")) })
        .transpose()
}

impl UpdateArgs {
    fn has_value_flags(&self) -> bool {
        [
            &self.blkio_weight,
            &self.cpu_period,
            &self.cpu_quota,
            &self.cpu_share,
            &self.cpu_rt_period,
            &self.cpu_rt_runtime,
            &self.cpuset_cpus,
            &self.cpuset_mems,
            &self.kernel_memory,
            &self.kernel_memory_tcp,
            &self.memory,
            &self.memory_reservation,
            &self.memory_swap,
            &self.pids_limit,
        ]
        .iter()
        .any(|v| v.is_some())
    }

    /// The flags as a LinuxResources holding only what was given; every value is parsed
    /// before anything is applied.
    fn to_resources(&self) -> Result<LinuxResources, String> {
        let mut r = LinuxResources::default();
        let mut mem = LinuxMemory::default();
        mem.set_limit(bytes("memory", &self.memory)?);
        mem.set_reservation(bytes("memory-reservation", &self.memory_reservation)?);
        mem.set_swap(bytes("memory-swap", &self.memory_swap)?);
        #[allow(deprecated)]
        mem.set_kernel(bytes("kernel-memory", &self.kernel_memory)?);
        mem.set_kernel_tcp(bytes("kernel-memory-tcp", &self.kernel_memory_tcp)?);
        if mem != LinuxMemory::default() {
            r.set_memory(Some(mem));
        }
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(uint("cpu-share", &self.cpu_share)?);
        cpu.set_period(uint("cpu-period", &self.cpu_period)?);
        cpu.set_quota(int("cpu-quota", &self.cpu_quota)?);
        cpu.set_realtime_period(uint("cpu-rt-period", &self.cpu_rt_period)?);
        cpu.set_realtime_runtime(int("cpu-rt-runtime", &self.cpu_rt_runtime)?);
        cpu.set_cpus(self.cpuset_cpus.clone());
        cpu.set_mems(self.cpuset_mems.clone());
        if cpu != LinuxCpu::default() {
            r.set_cpu(Some(cpu));
        }
        if let Some(limit) = int("pids-limit", &self.pids_limit)? {
            let mut p = LinuxPids::default();
            p.set_limit(limit);
            r.set_pids(Some(p));
        }
        if let Some(s) = &self.blkio_weight {
            let w = s.parse::<u16>().map_err(|_| bad("blkio-weight", s, "expected a weight of 10-1000"))?;
            let mut b = LinuxBlockIo::default();
            b.set_weight(Some(w));
            r.set_block_io(Some(b));
        }
        Ok(r)
    }
}

/// A size like docker's `RAMInBytes`: "1024", "512m", "1.5g", "64MiB", "2 GB"; binary units.
fn ram_in_bytes(s: &str) -> Option<i64> {
    let num_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, rest) = s.split_at(num_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.contains("..") {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut chars = rest.chars().peekable();
    let shift = match chars.peek().map(|c| c.to_ascii_lowercase()) {
        Some(u @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            chars.next();
            10 * (1 + "kmgtp".find(u)?)
        }
        _ => 0,
    };
    if shift > 0 && chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'i')) {
        chars.next();
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'b')) {
        chars.next();
    }
    if chars.next().is_some() {
        return None;
    }
    let bytes = value * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes < i64::MAX as f64).then_some(bytes as i64)
}

/// A Go duration such as "5s", "1m30s", "250ms", "1.5h".
fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err("expected a positive duration like 5s or 500ms".into());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().map_err(|_| format!("missing number in {s:?}"))?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let secs = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("unknown unit {unit:?} in {s:?}")),
        };
        rest = &rest[u..];
        total += value * secs;
    }
    Duration::try_from_secs_f64(total).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker_units() {
        assert_eq!(ram_in_bytes("1024"), Some(1024));
        assert_eq!(ram_in_bytes("512m"), Some(512 << 20));
        assert_eq!(ram_in_bytes("1g"), Some(1 << 30));
        assert_eq!(ram_in_bytes("1.5G"), Some(3 << 29));
        assert_eq!(ram_in_bytes("64MiB"), Some(64 << 20));
        assert_eq!(ram_in_bytes("2 kb"), Some(2048));
        for bad in ["", "abc", "-5", "1x", "m", "1.m", "1mm", "1 2"] {
            assert_eq!(ram_in_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "5", "s", "-1s", "5x"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
