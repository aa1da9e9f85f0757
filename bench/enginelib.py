"""What the engine benchmarks share: the busybox image imported offline into berth, podman and
docker, each engine with private storage under one scratch directory; a private dockerd
started and stopped by the benchmark; the peak-RSS launcher; and cleanup of what the engines
leave (containers, mounts, cgroups, /run/docker)."""
import json, os, resource, shutil, subprocess, time

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGE = "localhost/bench:latest"
DEBIAN_DOCKER_CLI = "/usr/bin/docker"  # the CLI that matches Debian's dockerd (PATH may hold another)


def busybox_rootfs_tar(base):
    """A busybox root filesystem (sh, true, sleep) as a tarball; returns (rootfs, tar)."""
    rootfs = os.path.join(base, "rootfs")
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"]:
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin/busybox"))
    for applet in ["sh", "true", "sleep"]:
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    with open(os.path.join(rootfs, "etc/passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(rootfs, "etc/group"), "w") as f:
        f.write("root:x:0:\n")
    tar = os.path.join(base, "rootfs.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
    return rootfs, tar


def peak_rss_launcher(base):
    """bench/peak-rss.c built static into base (ru_maxrss of the command alone)."""
    launcher = os.path.join(base, "peak-rss")
    subprocess.run(["gcc", "-static", "-O2", "-o", launcher, os.path.join(HERE, "peak-rss.c")], check=True)
    return launcher


def peak_rss(launcher, cmd):
    """Peak RSS (KiB) of one run of cmd, which must succeed."""
    p = subprocess.run([launcher, *cmd], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {p.stderr}")
    for line in reversed(p.stderr.splitlines()):
        if line.startswith("peak-rss-kib "):
            return int(line.split()[1])
    raise RuntimeError(f"{cmd[0]}: no RSS reported: {p.stderr}")


def timed(cmd):
    """Wall time (ms) of cmd, which must succeed."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    return dt


def berth_cmd(berth, base):
    """berth with its storage and runtime state under base."""
    return [berth, "--root", os.path.join(base, "berth"), "--runroot", os.path.join(base, "berth-run")]


def unmounted_v1_controller():
    """A cgroup v1 controller bound to a hierarchy mounted nowhere, if any. crun 1.8 refuses
    such a host ("cgroups in hybrid mode not supported"): it happens after a v1 hierarchy
    that still had cgroups was unmounted (the hugetlb workaround of runtime-bench.py, when
    other containers created cgroups in it meanwhile); only a reboot undoes it."""
    try:
        cgroups = open("/proc/self/cgroup").read().splitlines()
        mounts = open("/proc/self/mountinfo").read().splitlines()
    except OSError:
        return None
    mounted = set()
    for m in mounts:
        if " - cgroup " in m:
            mounted.update(m.rsplit(" ", 1)[-1].split(","))
    for line in cgroups:
        ctrls = line.split(":")[1] if line.count(":") >= 2 else ""
        for c in filter(None, ctrls.split(",")):
            if not c.startswith("name=") and c not in mounted:
                return c
    return None


def podman_runtime_args():
    """podman's default runtime here is crun; on a host crun refuses (see
    unmounted_v1_controller) podman runs with runc, its other supported runtime."""
    return ["--runtime", "runc"] if unmounted_v1_controller() else []


def podman_cmd(base):
    """podman with private storage (vfs), cgroupfs, file events."""
    return ["podman", "--root", os.path.join(base, "podman"), "--runroot", os.path.join(base, "podman-run"),
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"] + podman_runtime_args()


def podman_cgroup_parent(base):
    """The cgroup parent of the benchmark's podman containers (removed at the end)."""
    return "/" + os.path.basename(base.rstrip("/")) + "-podman"


def podman_run_opts(base, network="none"):
    """`podman run` options: no network, a cgroup parent of the benchmark's own, and this
    host's hard rlimits: podman's defaults (nofile 1048576) cannot be set where root lacks
    CAP_SYS_RESOURCE (this sandbox)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
    return ["--network", network, "--cgroup-parent", podman_cgroup_parent(base),
            "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


def podman_cleanup(base):
    """Remove the benchmark's podman containers, mounts and cgroups."""
    subprocess.run(podman_cmd(base) + ["rm", "-a", "-f", "-t", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_processes_mentioning(os.path.join(base, "podman"))
    unmount_under(base)
    remove_cgroup(podman_cgroup_parent(base))


class Dockerd:
    """A private dockerd (Debian's docker.io): its own data root, exec root, pid file, socket,
    daemon.json and cgroup parent under base; no networking (no bridge, no iptables), vfs
    storage, cgroupfs. `stop()` removes its containers, stops it and what it started."""

    def __init__(self, base):
        self.base = os.path.join(base, "docker")
        os.makedirs(self.base)
        self.run_docker_preexisted = os.path.exists("/run/docker")
        self.cgroup_parent = "/" + os.path.basename(base.rstrip("/"))
        d = lambda n: os.path.join(self.base, n)
        with open(d("daemon.json"), "w") as f:
            json.dump({"deprecated-key-path": d("key.json")}, f)
        self.log = open(d("dockerd.log"), "w")
        self.proc = subprocess.Popen(
            ["dockerd", "--config-file", d("daemon.json"), "--data-root", d("data"), "--exec-root", d("exec"),
             "--pidfile", d("dockerd.pid"), "-H", "unix://" + d("docker.sock"),
             "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--userland-proxy=false",
             "--storage-driver", "vfs", "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", self.cgroup_parent],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(600):
            if subprocess.run(self.cmd() + ["version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dockerd did not come up; its log: {d('dockerd.log')}")

    def cmd(self):
        cli = DEBIAN_DOCKER_CLI if os.path.exists(DEBIAN_DOCKER_CLI) else "docker"
        return [cli, "--host", "unix://" + os.path.join(self.base, "docker.sock")]

    def version(self):
        p = subprocess.run(self.cmd() + ["version", "--format", "{{.Server.Version}}"], stdout=subprocess.PIPE, text=True)
        return p.stdout.strip()

    def daemons_peak_rss_kib(self):
        """VmHWM of dockerd and the containerd it started (what the CLI's RSS leaves out)."""
        total = 0
        pids = [str(self.proc.pid)]
        try:
            pids += subprocess.run(["pgrep", "-P", str(self.proc.pid)], stdout=subprocess.PIPE, text=True).stdout.split()
        except FileNotFoundError:
            pass
        for pid in pids:
            try:
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self):
        if self.proc.poll() is None:
            ids = subprocess.run(self.cmd() + ["ps", "-aq"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.split()
            if ids:
                subprocess.run(self.cmd() + ["rm", "-f", *ids], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_processes_mentioning(self.base)
        unmount_under(self.base)
        remove_cgroup(self.cgroup_parent)
        if not self.run_docker_preexisted:
            shutil.rmtree("/run/docker", ignore_errors=True)
        self.log.close()


def kill_processes_mentioning(path):
    """SIGKILL every process whose command line names path (containerd, shims left behind)."""
    me = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(pid) != me and path.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                os.kill(int(pid), 9)
        except OSError:
            pass


def unmount_under(path):
    """Detach every mount at or below path, deepest first."""
    for _ in range(3):
        points = [l.split()[4] for l in open("/proc/self/mountinfo") if l.split()[4].startswith(path.rstrip("/") + "/") or l.split()[4] == path]
        if not points:
            return
        for p in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", p], stderr=subprocess.DEVNULL)


def remove_cgroup(rel):
    """rmdir rel and its empty children in every cgroup hierarchy."""
    rel = rel.strip("/")
    if not rel:
        return
    roots = [os.path.join("/sys/fs/cgroup", h) for h in os.listdir("/sys/fs/cgroup")] + ["/sys/fs/cgroup"]
    for root in roots:
        top = os.path.join(root, rel)
        if os.path.isdir(top):
            for dirpath, _, _ in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass


def ratio_line(med, berth_key, peers):
    """`berth / best peer` for a row: peers are the other engines' keys present in med."""
    peers = [p for p in peers if p in med]
    if berth_key not in med or not peers:
        return None
    best = min(peers, key=lambda p: med[p])
    return f"berth / best peer ({best}): {med[berth_key] / med[best]:.2f}x"
