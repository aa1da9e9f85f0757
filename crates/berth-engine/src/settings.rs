//! A container's lifecycle settings: what `run`/`create` decided beyond the spec — terminal,
//! logs, restart policy, how to stop it, which runtime drives it, labels. Stored as JSON in
//! the container's row.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where the monitor writes the container's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LogDriver {
    /// docker's: one JSON object per line.
    #[default]
    JsonFile,
    /// podman's/CRI's: `TIME STREAM F|P TEXT`.
    K8sFile,
    /// Output is dropped.
    None,
}

impl std::str::FromStr for LogDriver {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "json-file" => Ok(LogDriver::JsonFile),
            "k8s-file" => Ok(LogDriver::K8sFile),
            "none" => Ok(LogDriver::None),
            other => Err(Error::Invalid(format!("--log-driver {other:?}: expected json-file, k8s-file or none"))),
        }
    }
}

/// When the monitor brings an exited container back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum RestartPolicy {
    /// Never.
    #[default]
    No,
    /// After a non-zero exit, at most `max` times (0: no limit).
    OnFailure {
        /// The limit (0: none).
        max: u32,
    },
    /// After every exit, unless stopped by a user.
    Always,
    /// As always (berth has no daemon restart to tell them apart).
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Invalid(format!("--restart {s:?}: expected no, on-failure[:N], always or unless-stopped"));
        match s.split_once(':') {
            None if s == "no" => Ok(RestartPolicy::No),
            None if s == "always" => Ok(RestartPolicy::Always),
            None if s == "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            None if s == "on-failure" => Ok(RestartPolicy::OnFailure { max: 0 }),
            Some(("on-failure", n)) => Ok(RestartPolicy::OnFailure { max: n.parse().map_err(|_| bad())? }),
            _ => Err(bad()),
        }
    }
}

impl RestartPolicy {
    /// docker's name of the policy.
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    /// Whether a container that exited with `code`, restarted `count` times so far, comes back.
    pub fn restarts(&self, code: i32, count: i64) -> bool {
        match *self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max } => code != 0 && (max == 0 || count < i64::from(max)),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

/// Everything about a container's life that is not in its spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerSettings {
    /// `-t`: the container gets a terminal.
    pub tty: bool,
    /// `-i`: its stdin stays open.
    pub interactive: bool,
    /// `--log-driver`.
    pub log_driver: LogDriver,
    /// `--log-opt max-size=`: bytes before the log rotates (0: no limit).
    pub log_max_size: u64,
    /// `--restart`.
    pub restart: RestartPolicy,
    /// The signal `stop` sends first (`--stop-signal`, else the image's StopSignal, else SIGTERM).
    pub stop_signal: i32,
    /// Seconds `stop` waits before SIGKILL (`--stop-timeout`).
    pub stop_timeout: u64,
    /// `--runtime PATH`: a runc-compatible binary instead of the in-process runtime.
    pub runtime: Option<PathBuf>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// The process args, for display.
    pub command: Vec<String>,
}

impl Default for ContainerSettings {
    fn default() -> Self {
        ContainerSettings {
            tty: false,
            interactive: false,
            log_driver: LogDriver::JsonFile,
            log_max_size: 10 << 20,
            restart: RestartPolicy::No,
            stop_signal: libc::SIGTERM,
            stop_timeout: 10,
            runtime: None,
            labels: BTreeMap::new(),
            command: Vec::new(),
        }
    }
}

impl ContainerSettings {
    /// From a row's JSON (defaults for what an older row lacks).
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Invalid(format!("container settings: {e}")))
    }

    /// As stored in the row.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_and_decide_like_dockers() {
        let p: RestartPolicy = "on-failure:2".parse().unwrap();
        assert!(p.restarts(1, 0) && p.restarts(1, 1) && !p.restarts(1, 2) && !p.restarts(0, 0));
        assert!("always".parse::<RestartPolicy>().unwrap().restarts(0, 100));
        assert!(!"no".parse::<RestartPolicy>().unwrap().restarts(1, 0));
        assert!("sometimes".parse::<RestartPolicy>().is_err() && "on-failure:x".parse::<RestartPolicy>().is_err());
    }

    #[test]
    fn settings_round_trip_and_old_rows_get_defaults() {
        let s = ContainerSettings { tty: true, restart: RestartPolicy::OnFailure { max: 3 }, ..Default::default() };
        assert_eq!(ContainerSettings::from_json(&s.to_json()).unwrap(), s);
        assert_eq!(ContainerSettings::from_json("{}").unwrap(), ContainerSettings::default());
    }
}
