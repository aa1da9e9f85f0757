//! The runtime spec berth generates for a container: podman/docker-like defaults, then the
//! image config (per the image spec's conversion rules), then the user's flags.

use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::user;

/// docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
];

/// The default seccomp profile: docker's/podman's defaults for docker's capability set.
const DEFAULT_SECCOMP: &str = include_str!("../../../bench/seccomp-default.json");

/// `--network`: which network namespace the container gets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// A network namespace with only loopback.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A new namespace joined to a bridge network (berth-net) by name.
    Bridge(String),
    /// The namespace of another container (name or id).
    Container(String),
    /// The namespace at a path (`ns:/run/netns/x`).
    Ns(std::path::PathBuf),
}

/// What the user asked for on `berth run`/`create`.
#[derive(Debug, Clone, Default)]
pub struct ContainerOptions {
    /// The command (overrides the image's Cmd).
    pub command: Vec<String>,
    /// `--entrypoint` (Some("") clears the image's).
    pub entrypoint: Option<String>,
    /// `-e` KEY=VALUE.
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--network`.
    pub network: NetworkMode,
    /// `--memory` in bytes.
    pub memory: Option<i64>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `--cpus` (fractional CPUs).
    pub cpus: Option<f64>,
    /// `--security-opt seccomp=unconfined`.
    pub seccomp_unconfined: bool,
    /// `--security-opt no-new-privileges`.
    pub no_new_privileges: bool,
    /// `--privileged`.
    pub privileged: bool,
    /// `-p`: published ports (bridge networks only).
    pub publish: Vec<berth_net::PortMapping>,
    /// `--ip`: the address on the bridge network.
    pub ip: Option<std::net::Ipv4Addr>,
    /// `--dns`: nameservers replacing the host's.
    pub dns: Vec<std::net::IpAddr>,
    /// `--add-host`: extra /etc/hosts entries.
    pub add_hosts: Vec<berth_net::HostEntry>,
}

/// Inputs of the spec that come from the engine.
pub struct SpecInputs<'a> {
    /// The container id.
    pub id: &'a str,
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    /// The image config document.
    pub image_config: &'a Value,
    /// Files the engine wrote for /etc/hostname, /etc/hosts, /etc/resolv.conf.
    pub etc_files: &'a [(String, std::path::PathBuf)],
    /// The network namespace to join (`--network container:`/`ns:`), resolved by the engine.
    pub netns_path: Option<&'a Path>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// The process args: Entrypoint + Cmd, with the user's overrides (docker's rules).
pub fn process_args(config: &Value, opts: &ContainerOptions) -> Result<Vec<String>> {
    let c = config.get("config");
    let entrypoint = match &opts.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => strings(c.and_then(|c| c.get("Entrypoint"))),
    };
    // An --entrypoint drops the image's Cmd, as docker does.
    let cmd = if !opts.command.is_empty() {
        opts.command.clone()
    } else if opts.entrypoint.is_some() {
        Vec::new()
    } else {
        strings(c.and_then(|c| c.get("Cmd")))
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::Invalid("no command specified: the image has no Entrypoint or Cmd and none was given".into()));
    }
    Ok(args)
}

/// The environment: defaults, then the image's, then `-e` (later wins, by key).
pub fn environment(config: &Value, opts: &ContainerOptions, hostname: &str, home: &str) -> Vec<String> {
    let mut env: Vec<String> = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        format!("HOSTNAME={hostname}"),
    ];
    if opts.tty {
        env.push("TERM=xterm".into());
    }
    let image_env = strings(config.get("config").and_then(|c| c.get("Env")));
    for kv in image_env.into_iter().chain(opts.env.iter().cloned()) {
        let key = kv.split('=').next().unwrap_or(&kv).to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    env
}

/// Build the whole config.json for a container.
pub fn generate(inp: &SpecInputs, opts: &ContainerOptions) -> Result<Value> {
    let mut spec = berth_runtime::spec::default_spec(false);
    let image_cfg = inp.image_config.get("config");
    let user_spec = opts.user.clone().or_else(|| image_cfg.and_then(|c| c.get("User")).and_then(Value::as_str).map(String::from)).unwrap_or_default();
    let user = user::resolve(inp.rootfs, &user_spec)?;
    let hostname = opts.hostname.clone().unwrap_or_else(|| inp.id[..12.min(inp.id.len())].to_string());
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| image_cfg.and_then(|c| c.get("WorkingDir")).and_then(Value::as_str).filter(|w| !w.is_empty()).map(String::from))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::Invalid(format!("the working directory {cwd:?} must be absolute")));
    }
    let caps_json = if opts.privileged {
        json!(caps::all().iter().map(|c| c.to_string()).collect::<Vec<_>>())
    } else {
        json!(DEFAULT_CAPS)
    };
    spec["process"] = json!({
        "terminal": opts.tty,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
        "args": process_args(inp.image_config, opts)?,
        "env": environment(inp.image_config, opts, &hostname, &user.home),
        "cwd": cwd,
        "capabilities": {"bounding": caps_json, "effective": caps_json, "permitted": caps_json},
        "noNewPrivileges": opts.no_new_privileges,
    });
    spec["root"] = json!({"path": inp.rootfs, "readonly": opts.read_only});
    spec["hostname"] = json!(hostname);
    let mounts = spec["mounts"].as_array_mut().ok_or_else(|| Error::Invalid("default spec has no mounts".into()))?;
    for (dest, src) in inp.etc_files {
        mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    }
    let linux = &mut spec["linux"];
    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "ipc"}), json!({"type": "uts"}), json!({"type": "mount"}), json!({"type": "cgroup"})];
    match (&opts.network, inp.netns_path) {
        (NetworkMode::Host, _) => {}
        (NetworkMode::Container(_) | NetworkMode::Ns(_), Some(path)) => namespaces.push(json!({"type": "network", "path": path})),
        (NetworkMode::Container(c), None) => return Err(Error::Invalid(format!("--network container:{c}: the container's namespace is unknown"))),
        (NetworkMode::Ns(p), None) => return Err(Error::Invalid(format!("--network ns:{}: no path", p.display()))),
        (NetworkMode::None | NetworkMode::Bridge(_), _) => namespaces.push(json!({"type": "network"})),
    }
    linux["namespaces"] = json!(namespaces);
    let mut resources = json!({"devices": [{"allow": opts.privileged, "access": "rwm"}]});
    if let Some(m) = opts.memory {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(p) = opts.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    if let Some(c) = opts.cpus {
        let period = 100_000u64;
        resources["cpu"] = json!({"quota": (c * period as f64) as i64, "period": period});
    }
    linux["resources"] = resources;
    if opts.privileged {
        linux["maskedPaths"] = json!([]);
        linux["readonlyPaths"] = json!([]);
    }
    if !opts.seccomp_unconfined && !opts.privileged {
        let profile: Value = serde_json::from_str(DEFAULT_SECCOMP).map_err(|e| Error::Invalid(format!("default seccomp profile: {e}")))?;
        linux["seccomp"] = profile;
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> Value {
        json!({"config": v})
    }

    #[test]
    fn entrypoint_and_cmd_follow_dockers_rules() {
        let c = cfg(json!({"Entrypoint": ["/bin/ep"], "Cmd": ["a", "b"]}));
        let o = ContainerOptions::default();
        assert_eq!(process_args(&c, &o).unwrap(), ["/bin/ep", "a", "b"]);
        let o = ContainerOptions { command: vec!["x".into()], ..Default::default() };
        assert_eq!(process_args(&c, &o).unwrap(), ["/bin/ep", "x"]);
        let o = ContainerOptions { entrypoint: Some("/bin/sh".into()), ..Default::default() };
        assert_eq!(process_args(&c, &o).unwrap(), ["/bin/sh"]);
        let o = ContainerOptions { entrypoint: Some(String::new()), command: vec!["ls".into()], ..Default::default() };
        assert_eq!(process_args(&c, &o).unwrap(), ["ls"]);
        assert!(process_args(&cfg(json!({})), &ContainerOptions::default()).is_err());
    }

    #[test]
    fn the_network_mode_decides_the_network_namespace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        let config = cfg(json!({"Cmd": ["true"]}));
        let netns = |mode: NetworkMode, path: Option<&Path>| {
            let inp = SpecInputs { id: "0123456789abcdef", rootfs: dir.path(), image_config: &config, etc_files: &[], netns_path: path };
            let spec = generate(&inp, &ContainerOptions { network: mode, ..Default::default() })?;
            Ok::<_, Error>(spec["linux"]["namespaces"].as_array().unwrap().iter().find(|n| n["type"] == "network").cloned())
        };
        assert_eq!(netns(NetworkMode::None, None).unwrap(), Some(json!({"type": "network"})));
        assert_eq!(netns(NetworkMode::Bridge("bridge".into()), None).unwrap(), Some(json!({"type": "network"})));
        assert_eq!(netns(NetworkMode::Host, None).unwrap(), None);
        let p = Path::new("/proc/42/ns/net");
        assert_eq!(netns(NetworkMode::Container("web".into()), Some(p)).unwrap(), Some(json!({"type": "network", "path": "/proc/42/ns/net"})));
        assert_eq!(netns(NetworkMode::Ns(p.into()), Some(p)).unwrap(), Some(json!({"type": "network", "path": "/proc/42/ns/net"})));
        assert!(netns(NetworkMode::Container("web".into()), None).is_err());
    }

    #[test]
    fn environment_layers_defaults_image_and_flags() {
        let c = cfg(json!({"Env": ["PATH=/opt/bin", "A=1"]}));
        let o = ContainerOptions { env: vec!["A=2".into(), "B=3".into()], ..Default::default() };
        let env = environment(&c, &o, "h", "/root");
        assert!(env.contains(&"PATH=/opt/bin".to_string()));
        assert!(env.contains(&"A=2".to_string()) && !env.contains(&"A=1".to_string()));
        assert!(env.contains(&"B=3".to_string()) && env.contains(&"HOME=/root".to_string()));
    }
}
