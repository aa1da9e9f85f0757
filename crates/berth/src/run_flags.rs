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
    /// bridge (default when root), none (default rootless), host, a network's name,
    /// container:NAME|ID, ns:PATH.
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Publish a container port: [IP:][HOSTPORT[-END]:]CTRPORT[-END][/tcp|/udp].
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// IPv4 address on the network.
    #[arg(long)]
    pub ip: Option<String>,
    /// DNS server (replaces the host's).
    #[arg(long)]
    pub dns: Vec<String>,
    /// Extra /etc/hosts entry (NAME:IP).
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
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
        let network = parse_network(self.network.as_deref())?;
        let mut publish = Vec::new();
        for p in &self.publish {
            publish.extend(berth_net::PortMapping::parse(p)?);
        }
        let ip = self.ip.as_deref().map(|ip| ip.parse::<std::net::Ipv4Addr>().map_err(|_| anyhow!("--ip {ip:?}: not an IPv4 address"))).transpose()?;
        let dns = self.dns.iter().map(|d| d.parse::<std::net::IpAddr>().map_err(|_| anyhow!("--dns {d:?}: not an IP address"))).collect::<anyhow::Result<Vec<_>>>()?;
        let add_hosts = self.add_host.iter().map(|h| berth_net::etc::parse_add_host(h)).collect::<Result<Vec<_>, _>>()?;
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
            publish,
            ip,
            dns,
            add_hosts,
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

/// `--network`: bridge when unset and root (a rootless caller cannot make links), else none.
pub fn parse_network(value: Option<&str>) -> anyhow::Result<NetworkMode> {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    Ok(match value {
        None if root => NetworkMode::Bridge(berth_net::DEFAULT_NETWORK.into()),
        None | Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some(v) if v.starts_with("container:") => NetworkMode::Container(v["container:".len()..].to_string()),
        Some(v) if v.starts_with("ns:") => NetworkMode::Ns(v["ns:".len()..].into()),
        Some("") => bail!("--network: empty value"),
        Some(name) => {
            if !root {
                bail!("--network {name}: bridge networks need root (use none or host)");
            }
            NetworkMode::Bridge(name.to_string())
        }
    })
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

    #[test]
    fn network_values_map_to_modes() {
        assert_eq!(parse_network(Some("none")).unwrap(), NetworkMode::None);
        assert_eq!(parse_network(Some("host")).unwrap(), NetworkMode::Host);
        assert_eq!(parse_network(Some("container:web")).unwrap(), NetworkMode::Container("web".into()));
        assert_eq!(parse_network(Some("ns:/run/netns/x")).unwrap(), NetworkMode::Ns("/run/netns/x".into()));
        assert!(parse_network(Some("")).is_err());
    }
}
