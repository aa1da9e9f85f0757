//! The runtime spec berth generates for a container: podman/docker-like defaults, then the
//! image config (per the image spec's conversion rules), then the user's flags.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::devices::DeviceRequest;
use crate::error::{Error, Result};
use crate::mount_request::MountRequest;
use crate::security_opt::Seccomp;
use crate::ulimits::Ulimit;
use crate::{capabilities, devices, user};

/// Where `--init` mounts berth-init in the container (docker's path for its init).
pub const INIT_PATH: &str = "/dev/init";

/// docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
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
    /// `--env-file` entries (KEY=VALUE, bare keys already resolved), in file order: above the
    /// image's Env, below `-e`.
    pub env_file: Vec<String>,
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
    /// `--security-opt seccomp=FILE`: the profile read from the file.
    pub seccomp_profile: Option<Value>,
    /// `--security-opt no-new-privileges`.
    pub no_new_privileges: bool,
    /// `--security-opt apparmor=PROFILE`.
    pub apparmor_profile: Option<String>,
    /// `--security-opt label=…` (SELinux), unless `label=disable`.
    pub selinux_label: Option<String>,
    /// `--privileged`.
    pub privileged: bool,
    /// `-v`, `--mount`, `--tmpfs`, in the order given.
    pub mounts: Vec<MountRequest>,
    /// `--cap-add` (any case, with or without `CAP_`, or `ALL`).
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--device`.
    pub devices: Vec<DeviceRequest>,
    /// `--ulimit`.
    pub ulimits: Vec<Ulimit>,
    /// `--sysctl` (checked to be namespaced).
    pub sysctls: BTreeMap<String, String>,
    /// `--shm-size` in bytes.
    pub shm_size: Option<i64>,
    /// `--label`: also written into the spec's annotations; for the container record too.
    pub labels: BTreeMap<String, String>,
    /// `--annotation`: the spec's annotations (win over labels of the same key).
    pub annotations: BTreeMap<String, String>,
    /// `--memory-swap` in bytes (memory + swap; -1: unlimited).
    pub memory_swap: Option<i64>,
    /// `--cpu-shares` (relative weight).
    pub cpu_shares: Option<u64>,
    /// `--cpuset-cpus` (e.g. `0-2,4`).
    pub cpuset_cpus: Option<String>,
    /// `--init`: berth-init as PID 1.
    pub init: bool,
    /// `-p`: published ports (bridge networks only).
    pub publish: Vec<berth_net::PortMapping>,
    /// `--ip`: the address on the bridge network.
    pub ip: Option<std::net::Ipv4Addr>,
    /// `--dns`: nameservers replacing the host's.
    pub dns: Vec<std::net::IpAddr>,
    /// `--add-host`: extra /etc/hosts entries.
    pub add_hosts: Vec<berth_net::HostEntry>,
}

impl ContainerOptions {
    /// Apply `--security-opt` values (parsed by `security_opt::parse`).
    pub fn apply_security_opts(&mut self, values: &[String]) -> Result<()> {
        let o = crate::security_opt::parse(values)?;
        match o.seccomp {
            Seccomp::Default => {}
            Seccomp::Unconfined => self.seccomp_unconfined = true,
            Seccomp::Profile(p) => self.seccomp_profile = Some(p),
        }
        self.no_new_privileges |= o.no_new_privileges;
        self.apparmor_profile = o.apparmor_profile;
        self.selinux_label = if o.label_disabled { None } else { o.selinux_label };
        Ok(())
    }
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
    /// The user's mounts (and the image's volumes), resolved to spec mounts, parents first.
    pub mounts: &'a [Value],
    /// The host's berth-init when `--init` is on.
    pub init_binary: Option<&'a Path>,
    /// The network namespace to join (`--network container:`/`ns:`), resolved by the engine.
    pub netns_path: Option<&'a Path>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
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

/// The environment: defaults, then the image's, then `--env-file`, then `-e` (later wins,
/// by key).
pub fn environment(config: &Value, opts: &ContainerOptions, hostname: &str, home: &str) -> Vec<String> {
    let mut env: Vec<String> =
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(), format!("HOSTNAME={hostname}")];
    if opts.tty {
        env.push("TERM=xterm".into());
    }
    let image_env = strings(config.get("config").and_then(|c| c.get("Env")));
    for kv in image_env.into_iter().chain(opts.env_file.iter().cloned()).chain(opts.env.iter().cloned()) {
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
    let user_spec =
        opts.user.clone().or_else(|| image_cfg.and_then(|c| c.get("User")).and_then(Value::as_str).map(String::from)).unwrap_or_default();
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
    let caps = capabilities::effective_set(opts.privileged, &opts.cap_add, &opts.cap_drop)?;
    let caps_json = json!(caps);
    let mut args = process_args(inp.image_config, opts)?;
    if let Some(init) = inp.init_binary {
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
        spec["mounts"].as_array_mut().ok_or_else(|| Error::Invalid("default spec has no mounts".into()))?.push(
            json!({"destination": INIT_PATH, "type": "bind", "source": init, "options": ["bind", "ro", "nosuid", "nodev", "rprivate"]}),
        );
    }
    spec["process"] = json!({
        "terminal": opts.tty,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
        "args": args,
        "env": environment(inp.image_config, opts, &hostname, &user.home),
        "cwd": cwd,
        "capabilities": {"bounding": caps_json, "effective": caps_json, "permitted": caps_json},
        "noNewPrivileges": opts.no_new_privileges,
    });
    if !opts.ulimits.is_empty() {
        spec["process"]["rlimits"] =
            json!(opts.ulimits.iter().map(|u| json!({"type": u.kind, "soft": u.soft, "hard": u.hard})).collect::<Vec<_>>());
    }
    if let Some(p) = &opts.apparmor_profile {
        spec["process"]["apparmorProfile"] = json!(p);
    }
    if let Some(l) = &opts.selinux_label {
        spec["process"]["selinuxLabel"] = json!(l);
    }
    spec["root"] = json!({"path": inp.rootfs, "readonly": opts.read_only});
    spec["hostname"] = json!(hostname);
    let mut annotations: BTreeMap<String, String> = opts.labels.clone();
    annotations.extend(opts.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
    if !annotations.is_empty() {
        spec["annotations"] = json!(annotations);
    }
    set_mounts(&mut spec, inp, opts)?;
    let linux = &mut spec["linux"];
    let mut namespaces =
        vec![json!({"type": "pid"}), json!({"type": "ipc"}), json!({"type": "uts"}), json!({"type": "mount"}), json!({"type": "cgroup"})];
    match (&opts.network, inp.netns_path) {
        (NetworkMode::Host, _) => {}
        (NetworkMode::Container(_) | NetworkMode::Ns(_), Some(path)) => namespaces.push(json!({"type": "network", "path": path})),
        (NetworkMode::Container(c), None) => {
            return Err(Error::Invalid(format!("--network container:{c}: the container's namespace is unknown")))
        }
        (NetworkMode::Ns(p), None) => return Err(Error::Invalid(format!("--network ns:{}: no path", p.display()))),
        (NetworkMode::None | NetworkMode::Bridge(_), _) => namespaces.push(json!({"type": "network"})),
    }
    linux["namespaces"] = json!(namespaces);
    linux["resources"] = resources(opts)?;
    if !opts.devices.is_empty() {
        let mut nodes = Vec::new();
        for d in &opts.devices {
            let (node, rule) = devices::resolve(d)?;
            nodes.push(node);
            if let Some(rules) = linux["resources"]["devices"].as_array_mut() {
                rules.push(rule);
            }
        }
        linux["devices"] = json!(nodes);
    }
    if !opts.sysctls.is_empty() {
        linux["sysctl"] = json!(opts.sysctls);
    }
    if opts.privileged {
        linux["maskedPaths"] = json!([]);
        linux["readonlyPaths"] = json!([]);
    }
    if let Some(profile) = &opts.seccomp_profile {
        linux["seccomp"] = crate::seccomp_profile::for_container(profile, &caps);
    } else if !opts.seccomp_unconfined && !opts.privileged {
        let profile: Value = serde_json::from_str(DEFAULT_SECCOMP).map_err(|e| Error::Invalid(format!("default seccomp profile: {e}")))?;
        linux["seccomp"] = profile;
    }
    Ok(spec)
}

/// The default mounts, the /etc files, `--shm-size`, then the user's mounts: a user mount
/// replaces a default one at the same destination (`--tmpfs /dev/shm`, `-v …:/etc/hosts`).
fn set_mounts(spec: &mut Value, inp: &SpecInputs, opts: &ContainerOptions) -> Result<()> {
    let mounts = spec["mounts"].as_array_mut().ok_or_else(|| Error::Invalid("default spec has no mounts".into()))?;
    for (dest, src) in inp.etc_files {
        mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    }
    if let Some(size) = opts.shm_size {
        for m in mounts.iter_mut().filter(|m| m["destination"] == "/dev/shm") {
            let mut options: Vec<Value> = m["options"].as_array().cloned().unwrap_or_default();
            options.retain(|o| !o.as_str().is_some_and(|o| o.starts_with("size=")));
            options.push(json!(format!("size={size}")));
            m["options"] = json!(options);
        }
    }
    mounts.retain(|m| !inp.mounts.iter().any(|u| u["destination"] == m["destination"]));
    mounts.extend(inp.mounts.iter().cloned());
    Ok(())
}

/// linux.resources from the limits flags (devices: all denied unless privileged; `--device`
/// rules are added by the caller).
fn resources(opts: &ContainerOptions) -> Result<Value> {
    let mut resources = json!({"devices": [{"allow": opts.privileged, "access": "rwm"}]});
    if let Some(m) = opts.memory {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(swap) = opts.memory_swap {
        let Some(m) = opts.memory else {
            return Err(Error::Invalid("--memory-swap needs --memory: memory-swap is memory plus swap".into()));
        };
        if swap != -1 && swap < m {
            return Err(Error::Invalid(format!("--memory-swap {swap} is below --memory {m}: memory-swap is memory plus swap")));
        }
        resources["memory"]["swap"] = json!(swap);
    }
    if let Some(p) = opts.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(c) = opts.cpus {
        if !(c > 0.0 && c.is_finite()) {
            return Err(Error::Invalid(format!("--cpus {c}: must be a positive number")));
        }
        let period = 100_000u64;
        cpu.insert("quota".into(), json!((c * period as f64) as i64));
        cpu.insert("period".into(), json!(period));
    }
    if let Some(shares) = opts.cpu_shares {
        if !(2..=262_144).contains(&shares) {
            return Err(Error::Invalid(format!("--cpu-shares {shares}: must be between 2 and 262144")));
        }
        cpu.insert("shares".into(), json!(shares));
    }
    if let Some(set) = &opts.cpuset_cpus {
        if !valid_cpu_list(set) {
            return Err(Error::Invalid(format!("--cpuset-cpus {set:?}: expected a list like 0-2,4")));
        }
        cpu.insert("cpus".into(), json!(set));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    Ok(resources)
}

/// `0`, `0-3`, `0,2-4` (the kernel's cpu list format).
fn valid_cpu_list(s: &str) -> bool {
    !s.is_empty()
        && s.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => matches!((a.parse::<u32>(), b.parse::<u32>()), (Ok(a), Ok(b)) if a <= b),
            None => part.parse::<u32>().is_ok(),
        })
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
            let inp = SpecInputs {
                id: "0123456789abcdef",
                rootfs: dir.path(),
                image_config: &config,
                etc_files: &[],
                mounts: &[],
                init_binary: None,
                netns_path: path,
            };
            let spec = generate(&inp, &ContainerOptions { network: mode, ..Default::default() })?;
            Ok::<_, Error>(spec["linux"]["namespaces"].as_array().unwrap().iter().find(|n| n["type"] == "network").cloned())
        };
        assert_eq!(netns(NetworkMode::None, None).unwrap(), Some(json!({"type": "network"})));
        assert_eq!(netns(NetworkMode::Bridge("bridge".into()), None).unwrap(), Some(json!({"type": "network"})));
        assert_eq!(netns(NetworkMode::Host, None).unwrap(), None);
        let p = Path::new("/proc/42/ns/net");
        assert_eq!(
            netns(NetworkMode::Container("web".into()), Some(p)).unwrap(),
            Some(json!({"type": "network", "path": "/proc/42/ns/net"}))
        );
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

    fn gen(opts: &ContainerOptions, mounts: &[Value], init: Option<&Path>) -> Result<Value> {
        let dir = tempfile::tempdir().unwrap();
        let image = cfg(json!({"Env": ["A=image", "B=image", "C=image"], "Cmd": ["sh"]}));
        generate(
            &SpecInputs {
                id: "0123456789abcdef",
                rootfs: dir.path(),
                image_config: &image,
                etc_files: &[],
                mounts,
                init_binary: init,
                netns_path: None,
            },
            opts,
        )
    }

    fn has_env(spec: &Value, kv: &str) -> bool {
        spec["process"]["env"].as_array().unwrap().iter().any(|e| e == kv)
    }

    #[test]
    fn env_precedence_is_image_then_env_file_then_e() {
        let o = ContainerOptions { env_file: vec!["B=file".into(), "C=file".into()], env: vec!["C=flag".into()], ..Default::default() };
        let spec = gen(&o, &[], None).unwrap();
        assert!(has_env(&spec, "A=image") && has_env(&spec, "B=file") && has_env(&spec, "C=flag"));
        assert!(!has_env(&spec, "B=image") && !has_env(&spec, "C=file"));
    }

    #[test]
    fn user_mounts_replace_defaults_at_the_same_destination_and_shm_size_sets_the_size() {
        let o = ContainerOptions { shm_size: Some(128 << 20), ..Default::default() };
        let spec = gen(&o, &[], None).unwrap();
        let shm = spec["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/dev/shm").unwrap().clone();
        assert!(shm["options"].as_array().unwrap().contains(&json!(format!("size={}", 128 << 20))));
        assert!(!shm["options"].as_array().unwrap().contains(&json!("size=65536k")));
        let user = json!({"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]});
        let spec = gen(&ContainerOptions::default(), std::slice::from_ref(&user), None).unwrap();
        let shms: Vec<&Value> = spec["mounts"].as_array().unwrap().iter().filter(|m| m["destination"] == "/dev/shm").collect();
        assert_eq!(shms, [&user]);
    }

    #[test]
    fn labels_and_annotations_become_the_specs_annotations() {
        let o = ContainerOptions {
            labels: [("team".to_string(), "a".to_string()), ("k".to_string(), "label".to_string())].into(),
            annotations: [("k".to_string(), "annotation".to_string())].into(),
            ..Default::default()
        };
        let spec = gen(&o, &[], None).unwrap();
        assert_eq!(spec["annotations"], json!({"team": "a", "k": "annotation"}));
        assert!(gen(&ContainerOptions::default(), &[], None).unwrap().get("annotations").is_none());
    }

    #[test]
    fn capabilities_ulimits_sysctls_and_devices_reach_the_spec() {
        let o = ContainerOptions {
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["net_admin".into()],
            ulimits: vec![crate::ulimits::parse("nofile=100:200").unwrap()],
            sysctls: [("kernel.msgmax".to_string(), "4096".to_string())].into(),
            devices: vec![crate::devices::parse("/dev/null:/dev/mynull:rw").unwrap()],
            ..Default::default()
        };
        let spec = gen(&o, &[], None).unwrap();
        assert_eq!(spec["process"]["capabilities"]["effective"], json!(["CAP_NET_ADMIN"]));
        assert_eq!(spec["process"]["rlimits"], json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]));
        assert_eq!(spec["linux"]["sysctl"], json!({"kernel.msgmax": "4096"}));
        assert_eq!(spec["linux"]["devices"][0]["path"], "/dev/mynull");
        let rules = spec["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(rules[0], json!({"allow": false, "access": "rwm"}));
        assert_eq!(rules[1], json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}));
        let err = gen(&ContainerOptions { cap_add: vec!["bogus".into()], ..Default::default() }, &[], None).unwrap_err().to_string();
        assert!(err.starts_with("--cap-add"), "{err}");
    }

    #[test]
    fn memory_swap_cpu_shares_and_cpuset_are_checked_and_set() {
        let o = ContainerOptions {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            ..Default::default()
        };
        let r = &gen(&o, &[], None).unwrap()["linux"]["resources"];
        assert_eq!(r["memory"], json!({"limit": 64 << 20, "swap": 128 << 20}));
        assert_eq!(r["cpu"], json!({"shares": 512, "cpus": "0"}));
        let o = ContainerOptions { memory: Some(64 << 20), memory_swap: Some(-1), ..Default::default() };
        assert_eq!(gen(&o, &[], None).unwrap()["linux"]["resources"]["memory"]["swap"], -1);
        for (o, flag) in [
            (ContainerOptions { memory_swap: Some(1 << 30), ..Default::default() }, "--memory-swap"),
            (ContainerOptions { memory: Some(64 << 20), memory_swap: Some(1 << 20), ..Default::default() }, "--memory-swap"),
            (ContainerOptions { cpu_shares: Some(1), ..Default::default() }, "--cpu-shares"),
            (ContainerOptions { cpuset_cpus: Some("0-".into()), ..Default::default() }, "--cpuset-cpus"),
        ] {
            let err = gen(&o, &[], None).unwrap_err().to_string();
            assert!(err.starts_with(flag) && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn security_opts_set_seccomp_apparmor_and_selinux() {
        let mut o = ContainerOptions::default();
        o.apply_security_opts(&[
            "seccomp=unconfined".into(),
            "apparmor=berth-test".into(),
            "label=level:s0:c1,c2".into(),
            "no-new-privileges".into(),
        ])
        .unwrap();
        let spec = gen(&o, &[], None).unwrap();
        assert!(spec["linux"].get("seccomp").is_none());
        assert_eq!(spec["process"]["apparmorProfile"], "berth-test");
        assert_eq!(spec["process"]["selinuxLabel"], "system_u:system_r:container_t:s0:c1,c2");
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert!(gen(&ContainerOptions::default(), &[], None).unwrap()["linux"]["seccomp"]["defaultAction"].is_string());
        let mut o = ContainerOptions::default();
        o.apply_security_opts(&["label=disable".into()]).unwrap();
        assert!(gen(&o, &[], None).unwrap()["process"].get("selinuxLabel").is_none());
    }

    #[test]
    fn init_runs_first_from_a_read_only_bind() {
        let spec = gen(&ContainerOptions { init: true, ..Default::default() }, &[], Some(Path::new("/usr/bin/berth-init"))).unwrap();
        assert_eq!(spec["process"]["args"], json!([INIT_PATH, "--", "sh"]));
        let m = spec["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == INIT_PATH).unwrap();
        assert_eq!(m["source"], "/usr/bin/berth-init");
        assert!(m["options"].as_array().unwrap().contains(&json!("ro")));
    }
}
