//! Kubernetes' path to berth-runtime: containerd 1.6's CRI plugin, driven over its gRPC socket as
//! the kubelet drives it, runs pods whose runtime handler `berth` is the io.containerd.runc.v2
//! shim with `BinaryName` = berth-runtime (README's Kubernetes configuration, minus the
//! RuntimeClass, which only names the handler).
//!
//! Each test starts a private containerd (config, root, state and sockets under its scratch
//! directory, the CRI plugin on, pod network namespaces mounted under its state dir), imports a
//! pause-like sandbox image built offline from busybox-static into the `k8s.io` namespace, and
//! goes through the kubelet's calls: RunPodSandbox → CreateContainer → StartContainer →
//! ExecSync → UpdateContainerResources → ContainerStats → StopContainer → RemoveContainer →
//! StopPodSandbox → RemovePodSandbox, checking
//! along the way that berth-runtime (its state under the handler's `Root`) runs the pause and
//! the container. Pods have a cgroup parent of their own and either the host network or a
//! network namespace set up by the CNI bridge plugin (Debian's containernetworking-plugins; a
//! bridge of the test's own, no address on the host, no NAT). On drop a test removes what is
//! left of its pods, stops containerd and its shims, unmounts, removes its cgroups and bridge.

#[path = "common/interop.rs"]
mod interop;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use interop::{ok, run, skip_unless, wait_for, Scratch, BIN};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::{Channel, Endpoint, Uri};

/// The sandbox (pause) image and the container image: busybox whose command sleeps forever.
const IMAGE: &str = "localhost/berth-pause:latest";
const HANDLER: &str = "berth";
/// The namespace the CRI plugin keeps its containers in (the shim's runc root is `<Root>/k8s.io`).
const CRI_NAMESPACE: &str = "k8s.io";

/// Where the CNI plugins of Debian's containernetworking-plugins are.
const CNI_BIN: &str = "/usr/lib/cni";
/// libcni's result cache, which containerd 1.6 does not let a config move: removed again
/// (when empty) if the test made it.
const CNI_CACHE: &str = "/var/lib/cni";

/// The pod's network.
#[derive(Clone, Copy, PartialEq)]
enum PodNetwork {
    /// The host's (NamespaceMode NODE): no CNI plugin, no network namespace.
    Host,
    /// A network namespace of the pod's own, set up by the CNI bridge plugin (a bridge of the
    /// test's own without address or NAT, host-local IPAM with its state in the scratch dir).
    Bridge,
}

struct Cri {
    daemon: Option<Child>,
    network: PodNetwork,
    /// The bridge the CNI plugin creates (deleted on drop), with PodNetwork::Bridge.
    bridge: Option<String>,
    cni_cache_preexisted: bool,
    /// Every pod this test ran (their CNI cache entries go on drop, should containerd not).
    pods: Vec<String>,
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    /// The `Root` option of the handler: berth-runtime's `--root` is `<runc_root>/k8s.io`.
    runc_root: PathBuf,
    cgroup_parent: String,
    scratch: Scratch,
}

impl Cri {
    /// A private containerd with the CRI plugin and the sandbox image, or None (reason printed).
    fn start(test: &str, network: PodNetwork) -> Option<Cri> {
        if skip_unless(test, &["containerd", "ctr", "containerd-shim-runc-v2", "timeout", "tar", "sha256sum", "ip"]) {
            return None;
        }
        if network == PodNetwork::Bridge {
            let missing: Vec<&str> =
                ["bridge", "host-local", "loopback"].into_iter().filter(|p| !Path::new(CNI_BIN).join(p).is_file()).collect();
            if !missing.is_empty() {
                eprintln!(
                    "SKIP {test}: CNI plugins {} not in {CNI_BIN} (package containernetworking-plugins; scripts/setup installs it)",
                    missing.join(", ")
                );
                return None;
            }
        }
        let mut scratch = Scratch::new(test);
        let cgroup_parent = format!("/{}", scratch.tag);
        scratch.cgroups.push(cgroup_parent.clone());
        let runc_root = scratch.path("runc");
        for d in ["cni-conf", "cni-bin", "logs"] {
            std::fs::create_dir_all(scratch.path(d)).unwrap();
        }
        let d = |n: &str| scratch.path(n).to_string_lossy().into_owned();
        let cni_cache_preexisted = Path::new(CNI_CACHE).exists();
        let (cni_bin, bridge) = match network {
            PodNetwork::Host => (d("cni-bin"), None),
            PodNetwork::Bridge => {
                let n = scratch.tag.rsplit('-').next().unwrap().parse::<u32>().unwrap_or(0);
                let bridge = format!("bcri{}", (std::process::id() * 16 + n) % 1_000_000);
                // A /24 of 10.200.0.0/13 for this test (no address on the host side: no route).
                let net = (std::process::id() * 16 + n) % 2048;
                let conf = serde_json::json!({
                    "cniVersion": "0.4.0", "name": scratch.tag,
                    "plugins": [{
                        "type": "bridge", "bridge": bridge, "isGateway": false, "ipMasq": false,
                        "ipam": {"type": "host-local", "dataDir": d("cni-ipam"),
                                 "ranges": [[{"subnet": format!("10.{}.{}.0/24", 200 + net / 256, net % 256)}]]},
                    }],
                });
                std::fs::write(scratch.path("cni-conf/10-berth.conflist"), conf.to_string()).unwrap();
                (CNI_BIN.to_string(), Some(bridge))
            }
        };
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  level = \"debug\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{IMAGE}\"\n  stream_server_port = \"0\"\n\
             \x20 netns_mounts_under_state_dir = true\n  restrict_oom_score_adj = {restrict_oom}\n\
             [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"{cni_bin}\"\n  conf_dir = \"{cni_conf}\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"overlayfs\"\n  default_runtime_name = \"{HANDLER}\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{HANDLER}]\n  runtime_type = \"io.containerd.runc.v2\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{HANDLER}.options]\n\
             \x20 BinaryName = \"{BIN}\"\n  Root = \"{runc}\"\n  SystemdCgroup = false\n",
            root = d("root"),
            state = d("state"),
            sock = d("containerd.sock"),
            cni_bin = cni_bin,
            cni_conf = d("cni-conf"),
            runc = runc_root.display(),
            restrict_oom = !has_cap_sys_resource(),
        );
        std::fs::write(scratch.path("config.toml"), config).unwrap();
        let log = std::fs::File::create(scratch.path("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(scratch.path("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sock = scratch.path("containerd.sock");
        let ctr_up = |sock: &Path| run(Command::new("ctr").arg("--address").arg(sock).arg("version"), 30).status.success();
        let up = wait_for(30, || ctr_up(&sock));
        let channel = up.then(|| rt.block_on(connect(&sock)));
        let Some(channel) = channel else {
            let c = PartialCri { daemon: Some(daemon), bridge, scratch };
            panic!("containerd did not come up: {}", c.log());
        };
        let mut c = Cri {
            daemon: Some(daemon),
            network,
            bridge,
            cni_cache_preexisted,
            pods: Vec::new(),
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            rt,
            runc_root,
            cgroup_parent,
            scratch,
        };
        // The CRI plugin registers its services only if it loaded: say why if it did not.
        let version = c.rt.block_on(c.runtime.version(VersionRequest::default()));
        match version {
            Ok(v) => eprintln!("CRI: {:?}", v.into_inner()),
            Err(e) => panic!("the CRI plugin of containerd does not answer ({e}); its log:\n{}", c.log()),
        }
        let archive = c.scratch.busybox_oci_archive_with_cmd(IMAGE, &["sleep", "infinity"]);
        ok(&c.ctr(&["--namespace", CRI_NAMESPACE, "image", "import", archive.to_str().unwrap()]));
        // The CRI plugin learns of imported images through containerd's events.
        let spec = ImageSpec { image: IMAGE.into(), ..Default::default() };
        let seen = wait_for(20, || {
            let req = ImageStatusRequest { image: Some(spec.clone()), verbose: false };
            c.rt.block_on(c.images.image_status(req)).map(|r| r.into_inner().image.is_some()).unwrap_or(false)
        });
        assert!(seen, "the CRI plugin does not see the imported sandbox image {IMAGE}: {}", c.log());
        Some(c)
    }

    fn ctr(&self, args: &[&str]) -> Output {
        run(Command::new("ctr").arg("--address").arg(self.scratch.path("containerd.sock")).args(args), 120)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path("containerd.log")).unwrap_or_default()
    }

    /// berth-runtime's `--root` for the pod's containers (the shim appends the namespace).
    fn berth_root(&self) -> PathBuf {
        self.runc_root.join(CRI_NAMESPACE)
    }

    /// `berth-runtime state` of a container in the handler's root.
    fn berth_state(&self, id: &str) -> Option<serde_json::Value> {
        let out = run(Command::new(BIN).arg("--root").arg(self.berth_root()).args(["state", id]), 30);
        out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// A pod on the test's network (host or CNI bridge), with a cgroup parent and a log directory of its own.
    fn pod_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("{}-{name}", self.scratch.tag),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: self.scratch.path("logs").to_string_lossy().into_owned(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: match self.network {
                            PodNetwork::Host => NamespaceMode::Node as i32,
                            PodNetwork::Bridge => NamespaceMode::Pod as i32,
                        },
                        pid: NamespaceMode::Pod as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The calls below, each failing the test with the CRI's message and containerd's log.
    fn run_pod(&mut self, config: &PodSandboxConfig) -> String {
        let req = RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: HANDLER.into() };
        let r = self.rt.block_on(self.runtime.run_pod_sandbox(req));
        let id = self.expect(r, "RunPodSandbox").pod_sandbox_id;
        self.pods.push(id.clone());
        id
    }

    fn create_container(&mut self, pod: &str, pod_config: &PodSandboxConfig, config: ContainerConfig) -> String {
        let req = CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(config), sandbox_config: Some(pod_config.clone()) };
        let r = self.rt.block_on(self.runtime.create_container(req));
        self.expect(r, "CreateContainer").container_id
    }

    fn start_container(&mut self, id: &str) {
        let r = self.rt.block_on(self.runtime.start_container(StartContainerRequest { container_id: id.into() }));
        self.expect(r, "StartContainer");
    }

    fn container_status(&mut self, id: &str) -> ContainerStatusResponse {
        let req = ContainerStatusRequest { container_id: id.into(), verbose: true };
        let r = self.rt.block_on(self.runtime.container_status(req));
        self.expect(r, "ContainerStatus")
    }

    fn pod_status(&mut self, id: &str) -> PodSandboxStatus {
        let req = PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: false };
        let r = self.rt.block_on(self.runtime.pod_sandbox_status(req));
        self.expect(r, "PodSandboxStatus").status.expect("PodSandboxStatus has a status")
    }

    /// A container of `pod` that runs `cmd` (the image's entrypoint is replaced).
    fn container_config(name: &str, cmd: &[&str]) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(ImageSpec { image: IMAGE.into(), ..Default::default() }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            ..Default::default()
        }
    }

    fn exec_sync(&mut self, id: &str, cmd: &[&str]) -> ExecSyncResponse {
        let req = ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: 30 };
        let r = self.rt.block_on(self.runtime.exec_sync(req));
        self.expect(r, "ExecSync")
    }

    fn update_resources(&mut self, id: &str, linux: LinuxContainerResources) {
        let req = UpdateContainerResourcesRequest { container_id: id.into(), linux: Some(linux), ..Default::default() };
        let r = self.rt.block_on(self.runtime.update_container_resources(req));
        self.expect(r, "UpdateContainerResources");
    }

    fn container_stats(&mut self, id: &str) -> ContainerStats {
        let r = self.rt.block_on(self.runtime.container_stats(ContainerStatsRequest { container_id: id.into() }));
        self.expect(r, "ContainerStats").stats.expect("ContainerStats has stats")
    }

    fn stop_container(&mut self, id: &str, timeout: i64) {
        let r = self.rt.block_on(self.runtime.stop_container(StopContainerRequest { container_id: id.into(), timeout }));
        self.expect(r, "StopContainer");
    }

    fn remove_container(&mut self, id: &str) {
        let r = self.rt.block_on(self.runtime.remove_container(RemoveContainerRequest { container_id: id.into() }));
        self.expect(r, "RemoveContainer");
    }

    fn stop_pod(&mut self, id: &str) {
        let r = self.rt.block_on(self.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.into() }));
        self.expect(r, "StopPodSandbox");
    }

    fn remove_pod(&mut self, id: &str) {
        let r = self.rt.block_on(self.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id.into() }));
        self.expect(r, "RemovePodSandbox");
    }

    #[track_caller]
    fn expect<T>(&self, r: Result<tonic::Response<T>, tonic::Status>, call: &str) -> T {
        match r {
            Ok(r) => r.into_inner(),
            Err(e) => panic!("{call}: {} ({:?})\ncontainerd's log:\n{}", e.message(), e.code(), self.log_tail()),
        }
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        // Pods left by a failed test: stopping and removing a pod removes its containers.
        let pods = self.rt.block_on(self.runtime.list_pod_sandbox(ListPodSandboxRequest::default()));
        for pod in pods.map(|r| r.into_inner().items).unwrap_or_default() {
            let _ = self.rt.block_on(self.runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() }));
            let _ = self.rt.block_on(self.runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.id }));
        }
        stop_daemon(&mut self.daemon);
        delete_link(self.bridge.as_deref());
        if self.bridge.is_some() {
            // libcni's cached results of our pods (`<network>-<pod>-eth0`, `cni-loopback-<pod>-lo`):
            // left when containerd died before tearing the pod's network down.
            let results = Path::new(CNI_CACHE).join("results");
            for e in std::fs::read_dir(&results).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{}-", self.scratch.tag)) || self.pods.iter().any(|p| name.contains(p.as_str())) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            if !self.cni_cache_preexisted {
                let _ = std::fs::remove_dir(&results);
                let _ = std::fs::remove_dir(CNI_CACHE);
            }
        }
        // Scratch's drop kills shims still naming our socket, unmounts (the pod's network
        // namespace is mounted under containerd's state dir), removes the cgroups.
    }
}

/// containerd before the CRI client was connected: stopped on drop all the same.
struct PartialCri {
    daemon: Option<Child>,
    bridge: Option<String>,
    scratch: Scratch,
}

impl PartialCri {
    fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path("containerd.log")).unwrap_or_default()
    }
}

impl Drop for PartialCri {
    fn drop(&mut self) {
        stop_daemon(&mut self.daemon);
        delete_link(self.bridge.as_deref());
    }
}

/// Delete a network link the test's CNI plugin made (the veth ends go with the netns).
fn delete_link(name: Option<&str>) {
    if let Some(name) = name {
        if Path::new("/sys/class/net").join(name).exists() {
            let _ = run(Command::new("ip").args(["link", "del", name]), 30);
        }
    }
}

fn stop_daemon(daemon: &mut Option<Child>) {
    if let Some(mut d) = daemon.take() {
        // SAFETY: kill(2) on the pid of the containerd we spawned and have not reaped.
        unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
        if !wait_for(10, || d.try_wait().map(|s| s.is_some()).unwrap_or(true)) {
            let _ = d.kill();
        }
        let _ = d.wait();
    }
}

/// A gRPC channel over containerd's unix socket (the URI is a placeholder tonic requires).
async fn connect(sock: &Path) -> Channel {
    let sock = sock.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(sock).await?)) }
        }))
        .await
        .expect("connect to containerd's gRPC socket")
}

/// Whether this process may lower an oom_score_adj. Without CAP_SYS_RESOURCE (a root in a
/// container, as on this project's machines) the CRI plugin's -998 for the pause container
/// cannot be set, by berth-runtime or runc: `restrict_oom_score_adj` makes the plugin clamp it
/// to containerd's own value, as for rootless nodes.
fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim).unwrap_or("0");
    const CAP_SYS_RESOURCE: u32 = 24;
    u64::from_str_radix(eff, 16).map(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0).unwrap_or(false)
}

/// The cgroup directory of a pod's container in a v1 hierarchy (or the v2 tree).
fn cgroup_dir(controller: &str, parent: &str, id: &str) -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup").join(controller);
    let base = if v1.is_dir() { v1 } else { PathBuf::from("/sys/fs/cgroup") };
    base.join(parent.trim_start_matches('/')).join(id)
}

#[test]
fn cri_pod_sandbox_and_container_run_under_berth_runtime() {
    let Some(mut c) = Cri::start("cri_pod", PodNetwork::Host) else { return };
    let pod_config = c.pod_config("hello-berth");
    let pod = c.run_pod(&pod_config);

    // The pause container is berth-runtime's: its state is in the handler's root, running.
    let pause = c.berth_state(&pod).unwrap_or_else(|| panic!("berth-runtime does not know the sandbox {pod}"));
    assert_eq!(pause["status"], "running", "sandbox state: {pause}");

    let config = ContainerConfig {
        metadata: Some(ContainerMetadata { name: "hello".into(), attempt: 0 }),
        image: Some(ImageSpec { image: IMAGE.into(), ..Default::default() }),
        command: vec!["sh".into(), "-c".into()],
        args: vec!["echo hello from berth; echo $GREETING; exec sleep infinity".into()],
        envs: vec![KeyValue { key: "GREETING".into(), value: "hi-env".into() }],
        log_path: "hello.log".into(),
        labels: HashMap::from([("app".into(), "hello".into())]),
        ..Default::default()
    };
    let id = c.create_container(&pod, &pod_config, config);
    // containerd 1.6 creates the task (berth-runtime create + start) in StartContainer.
    c.start_container(&id);

    let state = c.berth_state(&id).expect("berth-runtime state of the started container");
    assert_eq!(state["status"], "running", "container state after StartContainer: {state}");
    let status = c.container_status(&id);
    let s = status.status.as_ref().expect("ContainerStatus has a status");
    assert_eq!(s.state, ContainerState::ContainerRunning as i32, "CRI state: {s:?}");
    // The CRI plugin's verbose info: the pid berth-runtime reports, berth-runtime as the binary.
    let info: serde_json::Value = serde_json::from_str(status.info.get("info").expect("verbose info")).unwrap();
    assert_eq!(info["pid"], state["pid"], "CRI's pid and berth-runtime's differ: {info}");
    assert_eq!(info["runtimeType"], "io.containerd.runc.v2", "{info}");
    assert!(info["runtimeOptions"].to_string().contains(BIN), "the handler's BinaryName is not berth-runtime: {}", info["runtimeOptions"]);

    // The pod's cgroup parent holds the container's cgroup.
    let mem = cgroup_dir("memory", &c.cgroup_parent, &id);
    assert!(mem.is_dir(), "no cgroup {}", mem.display());
    let procs = std::fs::read_to_string(mem.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|p| serde_json::json!(p.parse::<i64>().unwrap()) == state["pid"]), "pid not in {}: {procs}", mem.display());

    // ExecSync: berth-runtime exec through the shim, in the container's namespaces.
    let r = c.exec_sync(&id, &["sh", "-c", "echo exec-ok; echo $GREETING; cat /proc/1/comm; echo oops >&2"]);
    assert_eq!(String::from_utf8_lossy(&r.stdout), "exec-ok\nhi-env\nsleep\n", "stderr: {}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(String::from_utf8_lossy(&r.stderr), "oops\n");
    assert_eq!(r.exit_code, 0);
    let r = c.exec_sync(&id, &["sh", "-c", "exit 3"]);
    assert_eq!(r.exit_code, 3, "ExecSync's exit status");
    // The pod's containers share its pid namespace with the pause container (pid 1 there).
    let r = c.exec_sync(&id, &["ps", "-o", "comm"]);
    let ps = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(ps.lines().filter(|l| l.trim() == "sleep").count() >= 2, "pause and container not in one pid namespace: {ps}");

    // UpdateContainerResources: the shim runs `berth-runtime update --resources -` (JSON on stdin).
    let limits = LinuxContainerResources { memory_limit_in_bytes: 96 << 20, cpu_shares: 512, ..Default::default() };
    c.update_resources(&id, limits);
    assert_eq!(std::fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap().trim(), (96u64 << 20).to_string());
    let shares = cgroup_dir("cpu", &c.cgroup_parent, &id).join("cpu.shares");
    assert_eq!(std::fs::read_to_string(&shares).unwrap().trim(), "512", "{}", shares.display());
    // ContainerStats: the shim reads the cgroups berth-runtime put the container in.
    let stats = c.container_stats(&id);
    let usage = stats.memory.and_then(|m| m.usage_bytes).map(|u| u.value).unwrap_or(0);
    assert!(usage > 0, "no memory usage in ContainerStats");

    // The container's output reached the CRI log file (kubelet's format: time stream tag text).
    let log = c.scratch.path("logs/hello.log");
    let logged = wait_for(10, || std::fs::read_to_string(&log).map(|l| l.contains(" stdout F hello from berth\n")).unwrap_or(false));
    assert!(logged, "container log: {:?}", std::fs::read_to_string(&log));
    assert!(std::fs::read_to_string(&log).unwrap().contains(" stdout F hi-env\n"));

    c.stop_container(&id, 2);
    let s = c.container_status(&id).status.unwrap();
    assert_eq!(s.state, ContainerState::ContainerExited as i32, "CRI state after StopContainer: {s:?}");
    // Not pid 1 (the pause container is, in the pod's pid namespace): SIGTERM ends sleep.
    assert_eq!(s.exit_code, 143, "StopContainer's SIGTERM did not reach the container");
    c.remove_container(&id);
    assert!(c.berth_state(&id).is_none(), "berth-runtime still knows the removed container {id}");
    assert!(!c.berth_root().join(&id).exists(), "state dir of {id} left behind");
    assert!(!mem.exists(), "cgroup {} outlived the container", mem.display());

    c.stop_pod(&pod);
    let stopped = c.berth_state(&pod).map(|s| s["status"].clone());
    assert!(stopped.is_none() || stopped == Some("stopped".into()), "sandbox after StopPodSandbox: {stopped:?}");
    c.remove_pod(&pod);
    assert!(c.berth_state(&pod).is_none(), "berth-runtime still knows the removed sandbox {pod}");
    let pods = c.rt.block_on(c.runtime.list_pod_sandbox(ListPodSandboxRequest::default()));
    assert!(c.expect(pods, "ListPodSandbox").items.is_empty());
    let left: Vec<String> = std::fs::read_dir(c.berth_root())
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.iter().all(|n| n.starts_with('.')), "berth-runtime state left: {left:?}");
    let rootfs_mounts: Vec<String> =
        interop::mounts_under(&c.scratch.dir).into_iter().filter(|m| m.contains(&id) || m.contains(&pod)).collect();
    assert!(rootfs_mounts.is_empty(), "mounts of the pod left: {rootfs_mounts:?}");
}

/// The network namespace of a process (its nsfs inode, as readlink shows it).
fn netns_of(pid: i64) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).map(|p| p.display().to_string()).unwrap_or_default()
}

#[test]
fn cri_pod_network_namespace_from_cni_is_joined_by_its_container() {
    let Some(mut c) = Cri::start("cri_cni", PodNetwork::Bridge) else { return };
    let pod_config = c.pod_config("net-berth");
    let pod = c.run_pod(&pod_config);
    let status = c.pod_status(&pod);
    let ip = status.network.as_ref().map(|n| n.ip.clone()).unwrap_or_default();
    assert!(ip.starts_with("10.2"), "the CNI bridge plugin gave the pod no address: {status:?}");

    // berth-runtime created the pause container in the netns that the CNI plugin set up: the
    // config it was given names the namespace by path (under containerd's state dir).
    let pause = c.berth_state(&pod).expect("berth-runtime state of the sandbox");
    let pause_pid = pause["pid"].as_i64().unwrap();
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(PathBuf::from(pause["bundle"].as_str().unwrap()).join("config.json")).unwrap()).unwrap();
    let netns_path = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "network")
        .and_then(|n| n["path"].as_str())
        .map(PathBuf::from);
    let netns_path = netns_path.unwrap_or_else(|| panic!("the sandbox's spec joins no network namespace: {}", spec["linux"]["namespaces"]));
    assert!(netns_path.starts_with(&c.scratch.dir), "netns {} outside containerd's state dir", netns_path.display());
    assert_ne!(netns_of(pause_pid), netns_of(std::process::id() as i64), "the pause container is in the host's netns");

    let id = c.create_container(&pod, &pod_config, Cri::container_config("web", &["sleep", "infinity"]));
    c.start_container(&id);
    let state = c.berth_state(&id).expect("berth-runtime state of the container");
    assert_eq!(state["status"], "running");
    // The container joined the pod's namespace (the shim passes it as /proc/<pause>/ns/net).
    assert_eq!(netns_of(state["pid"].as_i64().unwrap()), netns_of(pause_pid), "container and pause in different netns");
    let r = c.exec_sync(&id, &["ip", "-o", "-4", "addr", "show", "eth0"]);
    let addr = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(
        addr.contains(&format!("inet {ip}/24")),
        "eth0 in the container: {addr:?} (pod ip {ip}) {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let r = c.exec_sync(&id, &["cat", "/proc/net/dev"]);
    assert!(String::from_utf8_lossy(&r.stdout).contains("lo:"), "no loopback in the pod's netns");

    c.stop_container(&id, 2);
    c.remove_container(&id);
    c.stop_pod(&pod);
    c.remove_pod(&pod);
    assert!(c.berth_state(&pod).is_none() && c.berth_state(&id).is_none(), "berth-runtime still knows the pod's containers");
    assert!(!netns_path.exists(), "the pod's netns {} outlived the pod", netns_path.display());
    let left: Vec<String> = interop::mounts_under(&c.scratch.dir);
    assert!(left.is_empty(), "mounts left after RemovePodSandbox: {left:?}");
}

#[test]
fn cri_start_container_reports_berth_runtime_error() {
    let Some(mut c) = Cri::start("cri_error", PodNetwork::Host) else { return };
    let pod_config = c.pod_config("err-berth");
    let pod = c.run_pod(&pod_config);
    let id = c.create_container(&pod, &pod_config, Cri::container_config("missing", &["/nonexistent"]));
    let r = c.rt.block_on(c.runtime.start_container(StartContainerRequest { container_id: id.clone() }));
    let err = r.expect_err("StartContainer of a missing command succeeded");
    // The shim reads berth-runtime's last `--log-format json` error line into its message.
    assert!(err.message().contains(r#"exec: "/nonexistent": no such file or directory"#), "CRI's error lacks berth's: {}", err.message());
    assert!(c.berth_state(&id).is_none(), "the failed create left berth-runtime state for {id}");
    c.remove_container(&id);
    c.stop_pod(&pod);
    c.remove_pod(&pod);
}
