//! `logs`: a container's output from its log file, optionally followed until it exits.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail};
use berth_engine::logs::{self, LogEntry, LogFollower, Stream};
use clap::Args;

use crate::context::Context;

/// Flags of `logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow the output until the container exits.
    #[arg(short, long)]
    follow: bool,
    /// Show only the last N lines ("all" for every line).
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Only lines since this time: RFC 3339, or a duration ago (30s, 10m, 2h).
    #[arg(long)]
    since: Option<String>,
    /// Prefix each line with its time.
    #[arg(short, long)]
    timestamps: bool,
    /// The container.
    container: String,
}

/// A `--since` value as an RFC 3339 UTC time comparable with the log's.
fn since_time(s: &str) -> anyhow::Result<String> {
    // A number and a unit (s, m, h); split on the last char so a multi-byte unit cannot
    // cut the string off a char boundary.
    let secs = s.char_indices().last().and_then(|(i, unit)| {
        let per = match unit {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            _ => return None,
        };
        s[..i].parse::<f64>().ok().map(|n| n * per)
    });
    if let Some(ago) = secs {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64() - ago;
        return Ok(berth_runtime_time(now));
    }
    if s.len() >= 20 && s.as_bytes().get(4) == Some(&b'-') && s.contains('T') {
        return Ok(s.to_string());
    }
    if let Ok(epoch) = s.parse::<f64>() {
        return Ok(berth_runtime_time(epoch));
    }
    bail!("--since {s:?}: expected RFC 3339 time, Unix seconds or a duration like 10m")
}

fn berth_runtime_time(epoch: f64) -> String {
    berth_engine::format_time(epoch.floor() as i64, ((epoch.fract()) * 1e9) as u32)
}

fn print(e: &LogEntry, timestamps: bool) {
    let text = if timestamps { format!("{} {}", e.time, e.text) } else { e.text.clone() };
    // A closed pipe (`| head`) just ends the output.
    let _ = match e.stream {
        Stream::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
        Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
    };
}

/// `logs`.
pub fn logs(ctx: &Context, a: LogsArgs) -> anyhow::Result<()> {
    let engine = crate::container_cmds::engine(ctx)?;
    let row = engine.find(&a.container)?;
    let (path, driver) = engine.log_file(&row)?;
    if driver == berth_engine::LogDriver::None {
        bail!("container {}: its log driver is none: no logs are kept", row.name);
    }
    let since = a.since.as_deref().map(since_time).transpose()?;
    let tail: Option<usize> = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(n.parse().map_err(|_| anyhow!("--tail {n:?}: expected a number or all"))?),
    };
    // The rotated file, then the current one through the follower (no line lost or doubled).
    let mut entries = logs::read_file(driver, &logs::rotated(&path));
    let mut follower = LogFollower::new(driver, &path, 0);
    entries.extend(follower.poll());
    let keep = |e: &LogEntry| since.as_ref().is_none_or(|s| e.time.as_str() >= s.as_str());
    let entries: Vec<LogEntry> = entries.into_iter().filter(keep).collect();
    let skip = tail.map_or(0, |n| entries.len().saturating_sub(n));
    for e in &entries[skip..] {
        print(e, a.timestamps);
    }
    if !a.follow {
        return Ok(());
    }
    loop {
        let running = matches!(engine.find(&row.id).map(|r| r.state), Ok(s) if s == "running" || s == "paused" || s == "restarting");
        for e in follower.poll() {
            print(&e, a.timestamps);
        }
        if !running {
            // One last look: the monitor flushes before it records the exit.
            for e in follower.poll() {
                print(&e, a.timestamps);
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_times_and_epochs_and_refuses_the_rest_without_panicking() {
        assert!(since_time("10m").unwrap().starts_with("20"));
        assert_eq!(since_time("2026-11-28T12:00:00.000000000Z").unwrap(), "2026-11-28T12:00:00.000000000Z");
        assert!(since_time("1700000000").unwrap().starts_with("2023-11-14T"));
        for bad in ["", "10µ", "é", "m", "yesterday"] {
            assert!(since_time(bad).is_err(), "{bad:?}");
        }
    }
}
