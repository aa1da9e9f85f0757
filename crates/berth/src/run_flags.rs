//! The flags of `run`/`create` that shape the container's spec (what it runs, as whom, with
//! which limits, mounts and privileges), and their translation into `ContainerOptions`.
//! Lifecycle flags (`-d`, `--rm`, `--name`, restart, logs) live in `container_cmds.rs`.

use anyhow::{anyhow, bail};
use berth_engine::{ContainerOptions, NetworkMode};
use clap::Args;

/// Spec flags of `run` and `create`.
#[derive(Args, Debug, Default)]
pub struct SpecFlags {
    /// Set an environment variable (KEY=VALUE).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User (name|uid[:group|gid]).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// none or host.
    #[arg(long, default_value = "none")]
    pub network: String,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// CPUs (fractional).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// seccomp=unconfined, no-new-privileges.
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// All capabilities, all devices, no seccomp, no masked paths.
    #[arg(long)]
    pub privileged: bool,
}

/// Parse a size like 512m, 1g, 1024 (bytes).
pub fn parse_size(s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.trim_end_matches('b').chars().last() {
        Some('k') => (&t[..t.trim_end_matches('b').len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.trim_end_matches('b').len() - 1], 1 << 20),
        Some('g') => (&t[..t.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (t.trim_end_matches('b'), 1),
    };
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid size {s:?}"))?;
    if n <= 0.0 {
        bail!("invalid size {s:?}: must be positive");
    }
    Ok((n * mult as f64) as i64)
}

impl SpecFlags {
    /// The engine's options for these flags, the command and the terminal choice.
    pub fn to_options(&self, command: Vec<String>, tty: bool) -> anyhow::Result<ContainerOptions> {
        let network = match self.network.as_str() {
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            other => bail!("--network {other:?}: only none and host are supported yet"),
        };
        let mut opts = ContainerOptions {
            command,
            entrypoint: self.entrypoint.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            tty,
            hostname: self.hostname.clone(),
            read_only: self.read_only,
            network,
            memory: self.memory.as_deref().map(parse_size).transpose()?,
            pids_limit: self.pids_limit,
            cpus: self.cpus,
            privileged: self.privileged,
            ..Default::default()
        };
        for o in &self.security_opt {
            match o.as_str() {
                "seccomp=unconfined" => opts.seccomp_unconfined = true,
                "no-new-privileges" | "no-new-privileges=true" => opts.no_new_privileges = true,
                other => bail!("--security-opt {other:?} is not supported yet"),
            }
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("2MB").unwrap(), 2 << 20);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1m").is_err());
    }
}
