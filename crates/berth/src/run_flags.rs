//! The flags of `run`/`create` that shape the container's spec (what it runs, as whom, with
//! which limits, mounts and privileges), and their translation into `ContainerOptions`.
//! Lifecycle flags (`-d`, `--rm`, `--name`, restart, logs) live in `container_cmds.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail};
use berth_engine::{devices, env_file, mount_request, sysctls, ulimits, ContainerOptions, NetworkMode};
use clap::Args;

/// Spec flags of `run` and `create`.
#[derive(Args, Debug, Default)]
pub struct SpecFlags {
    /// Set an environment variable (KEY=VALUE; KEY alone takes this shell's value).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
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
    /// Swap limit: memory plus swap (e.g. 1g; -1 for unlimited).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU shares (relative weight, 2–262144).
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on (e.g. 0-2,4).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// seccomp=unconfined|FILE, no-new-privileges, apparmor=PROFILE, label=…|disable.
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// All capabilities, all devices, no seccomp, no masked paths.
    #[arg(long)]
    pub privileged: bool,
    /// Bind a host path, mount a named volume or make an anonymous one: HOST:CTR[:ro|rw|z|Z], NAME:CTR[:ro], CTR.
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Mount: type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…].
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount a tmpfs: CTR[:OPTIONS].
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Add capabilities (NAME, CAP_NAME or ALL).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop capabilities (NAME, CAP_NAME or ALL).
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Add a host device: HOST[:CTR][:rwm].
    #[arg(long)]
    pub device: Vec<String>,
    /// Resource limit: NAME=SOFT[:HARD] (e.g. nofile=1024:2048).
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Namespaced kernel parameter: KEY=VALUE.
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Size of /dev/shm (e.g. 64m).
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Container label: KEY=VALUE (also a spec annotation).
    #[arg(short = 'l', long)]
    pub label: Vec<String>,
    /// Spec annotation: KEY=VALUE.
    #[arg(long)]
    pub annotation: Vec<String>,
    /// Run berth-init as PID 1: it forwards signals and reaps zombies.
    #[arg(long)]
    pub init: bool,
}

/// `KEY=VALUE` (or `KEY`, an empty value) pairs of `flag`.
fn key_values(flag: &str, values: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in values {
        let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
        if k.is_empty() {
            bail!("{flag} {v:?}: expected KEY=VALUE");
        }
        out.insert(k.to_string(), val.to_string());
    }
    Ok(out)
}

/// Values of a list flag that may also be comma-separated (`--cap-add A,B`).
fn split_commas(values: &[String]) -> Vec<String> {
    values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()).map(String::from).collect()
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
        let ip = self
            .ip
            .as_deref()
            .map(|ip| ip.parse::<std::net::Ipv4Addr>().map_err(|_| anyhow!("--ip {ip:?}: not an IPv4 address")))
            .transpose()?;
        let dns = self
            .dns
            .iter()
            .map(|d| d.parse::<std::net::IpAddr>().map_err(|_| anyhow!("--dns {d:?}: not an IP address")))
            .collect::<anyhow::Result<Vec<_>>>()?;
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
            memory: self.memory.as_deref().map(|m| parse_size(m).map_err(|e| anyhow!("--memory: {e}"))).transpose()?,
            pids_limit: self.pids_limit,
            cpus: self.cpus,
            privileged: self.privileged,
            ..Default::default()
        };
        let host_env = |k: &str| std::env::var(k).ok();
        opts.env = self.env.iter().filter_map(|e| env_file::resolve_entry(e, &host_env)).collect();
        for f in &self.env_file {
            opts.env_file.extend(env_file::read(f)?);
        }
        opts.apply_security_opts(&self.security_opt)?;
        let size = |s: &str| parse_size(s).ok();
        for v in &self.volume {
            opts.mounts.push(mount_request::parse_volume(v)?);
        }
        for m in &self.mount {
            opts.mounts.push(mount_request::parse_mount(m, &size)?);
        }
        for t in &self.tmpfs {
            opts.mounts.push(mount_request::parse_tmpfs(t)?);
        }
        opts.cap_add = split_commas(&self.cap_add);
        opts.cap_drop = split_commas(&self.cap_drop);
        opts.devices = self.device.iter().map(|d| devices::parse(d)).collect::<Result<_, _>>()?;
        opts.ulimits = self.ulimit.iter().map(|u| ulimits::parse(u)).collect::<Result<_, _>>()?;
        for s in &self.sysctl {
            let own_netns = matches!(opts.network, NetworkMode::None | NetworkMode::Bridge(_));
            let (k, v) = sysctls::parse(s, own_netns)?;
            opts.sysctls.insert(k, v);
        }
        opts.shm_size = self.shm_size.as_deref().map(|s| parse_size(s).map_err(|e| anyhow!("--shm-size: {e}"))).transpose()?;
        opts.memory_swap = match self.memory_swap.as_deref() {
            None => None,
            Some("-1") => Some(-1),
            Some(s) => Some(parse_size(s).map_err(|e| anyhow!("--memory-swap: {e}"))?),
        };
        opts.cpu_shares = self.cpu_shares;
        opts.cpuset_cpus = self.cpuset_cpus.clone();
        opts.labels = key_values("--label", &self.label)?;
        opts.annotations = key_values("--annotation", &self.annotation)?;
        opts.init = self.init;
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

    fn flags(args: &[&str]) -> anyhow::Result<ContainerOptions> {
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            spec: SpecFlags,
        }
        let p = <P as clap::Parser>::try_parse_from(std::iter::once("run").chain(args.iter().copied()))?;
        p.spec.to_options(vec!["true".into()], false)
    }

    #[test]
    fn spec_flags_become_engine_options() {
        let o = flags(&[
            "-v",
            "/a:/b:ro",
            "--mount",
            "type=tmpfs,target=/t",
            "--tmpfs",
            "/run",
            "--cap-add",
            "sys_admin,net_admin",
            "--cap-drop",
            "ALL",
            "--device",
            "/dev/null:/dev/n",
            "--ulimit",
            "nofile=1:2",
            "--sysctl",
            "kernel.msgmax=1",
            "--shm-size",
            "1m",
            "-l",
            "a=1",
            "--label",
            "b",
            "--annotation",
            "x=y",
            "--memory",
            "1g",
            "--memory-swap",
            "-1",
            "-c",
            "512",
            "--cpuset-cpus",
            "0",
            "--init",
            "--security-opt",
            "no-new-privileges",
        ])
        .unwrap();
        assert_eq!(o.mounts.len(), 3);
        assert_eq!(o.cap_add, ["sys_admin", "net_admin"]);
        assert_eq!((o.devices.len(), o.ulimits.len(), o.sysctls.len()), (1, 1, 1));
        assert_eq!(o.shm_size, Some(1 << 20));
        assert_eq!(o.labels.get("b").map(String::as_str), Some(""));
        assert_eq!((o.memory_swap, o.cpu_shares, o.init, o.no_new_privileges), (Some(-1), Some(512), true, true));
    }

    #[test]
    fn bad_spec_flag_values_name_their_flag() {
        for (args, flag) in [
            (&["--ulimit", "nofile"][..], "--ulimit"),
            (&["--sysctl", "kernel.panic=1"][..], "--sysctl"),
            (&["-v", "rel/path:/x"][..], "--volume"),
            (&["--shm-size", "big"][..], "--shm-size"),
            (&["--label", "=x"][..], "--label"),
            (&["--security-opt", "bogus"][..], "--security-opt"),
            (&["--env-file", "/nonexistent"][..], "--env-file"),
        ] {
            let err = format!("{:#}", flags(args).unwrap_err());
            assert!(err.starts_with(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn a_bare_e_key_takes_the_callers_value_or_nothing() {
        std::env::set_var("BERTH_TEST_FROM_HOST", "yes");
        let o = flags(&["-e", "BERTH_TEST_FROM_HOST", "-e", "BERTH_TEST_UNSET_VAR", "-e", "X=1"]).unwrap();
        assert_eq!(o.env, ["BERTH_TEST_FROM_HOST=yes", "X=1"]);
    }

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
