#!/usr/bin/env python3
"""Runtime start benchmark: `run` of /bin/true on the same busybox bundle, alternating
berth-runtime, runc and crun (and youki if installed), N runs each. Prints the median and
p90 wall time, the median peak RSS of the runtime process, and ratios against berth.

Usage: bench/runtime-bench.py [--runs N] [--profile plain|limits] [--berth PATH]
  plain:  no cgroup resources, no seccomp (the runtime's own path)
  limits: memory + pids limits and a docker-default-sized seccomp profile
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

from enginelib import unmounted_v1_controller
from summary import record

def build_bundle(base, profile, spec_from):
    bundle = os.path.join(base, "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"]:
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin/busybox"))
    for a in ["sh", "true"]:
        os.symlink("busybox", os.path.join(rootfs, "bin", a))
    subprocess.run([spec_from, "spec", "--bundle", bundle], check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    cfg["ociVersion"] = "1.0.2"  # the newest version every runtime here accepts (crun 1.8)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    cfg["linux"].pop("resources", None)
    if profile == "limits":
        cfg["linux"]["resources"] = {"memory": {"limit": 256 * 1024 * 1024}, "pids": {"limit": 100}}
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "seccomp-default.json")) as f:
            cfg["linux"]["seccomp"] = json.load(f)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return bundle

def peak_rss(launcher, binary, root, bundle, cid, extra=()):
    """Peak RSS (KiB) of one `run`, measured through a tiny static launcher."""
    p = subprocess.run([launcher, binary, *extra, "--root", root, "run", "--bundle", bundle, cid],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in reversed(p.stderr.splitlines()):
        if line.startswith("peak-rss-kib "):
            return int(line.split()[1])
    raise RuntimeError(f"{binary}: no RSS reported: {p.stderr}")

def wait_hierarchies_settled(limit=120):
    """Wait until no v1 hierarchy is mounted nowhere: after the hugetlb workaround's umount the
    kernel destroys the hierarchy asynchronously (it can take a while), and crun refuses the
    host until then."""
    deadline = time.time() + limit
    while unmounted_v1_controller() and time.time() < deadline:
        time.sleep(0.5)
    return unmounted_v1_controller()


def one_run(binary, root, bundle, cid, extra=()):
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, *extra, "--root", root, "run", "--bundle", bundle, cid],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, _ = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if status != 0:
        raise RuntimeError(f"{binary} run failed ({status}): {err}")
    return dt * 1000.0

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--profile", default="plain", choices=["plain", "limits"])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--berth", help="berth-runtime binary (default: build with scripts/build-release)")
    args = ap.parse_args()
    if args.berth:
        berth = os.path.abspath(args.berth)
    else:
        berth = subprocess.run([os.path.join(here, "..", "scripts", "build-release")], check=True,
                               stdout=subprocess.PIPE, text=True).stdout.strip()
    runtimes = [("berth-runtime", berth, ())]
    notes = []
    for name in ["crun", "runc", "youki"]:
        path = shutil.which(name)
        if path:
            runtimes.append((name, path, ()))
        elif name == "youki":
            notes.append("youki not installed (Debian 12 does not package it): skipped")
        else:
            notes.append(f"{name} not installed (scripts/setup --bench installs it): skipped")
    base = tempfile.mkdtemp(prefix="berth-bench-")
    hugetlb_mnt = None
    wait_hierarchies_settled(20)
    try:
        bundle = build_bundle(base, args.profile, berth)
        hugetlb_mnt = None
        skipped = set()
        for k, (name, binary, extra) in enumerate(runtimes):  # warm-up, not measured
            try:
                one_run(binary, os.path.join(base, "root-" + name), bundle, f"warm-{name}", extra)
            except RuntimeError as e:
                # crun 1.8 refuses hybrid cgroup hosts (a controller in the v2 tree): it then
                # runs without cgroups, i.e. doing less work than the others.
                stuck = unmounted_v1_controller() if name == "crun" else None
                if name == "crun" and ("hybrid" in str(e) or stuck) and hugetlb_mnt is None:
                    if stuck:
                        # A v1 hierarchy without a mount (see enginelib): crun refuses the
                        # host and it cannot be mounted again until a reboot.
                        notes.append(f"crun skipped: it refuses this host (the v1 controller {stuck!r} has a "
                                     "hierarchy mounted nowhere since an earlier run of this workaround "
                                     "overlapped other containers; a reboot restores it)")
                        skipped.add(name)
                        continue
                    # crun 1.8 refuses a hybrid host whose cgroup2 tree holds a controller
                    # (hugetlb here). Binding hugetlb to a v1 hierarchy for the duration of
                    # the run empties the v2 tree, for every runtime alike. Nothing else may
                    # create cgroups meanwhile: a v1 hierarchy unmounted while it still has
                    # cgroups outlives its mount and crun refuses the host from then on.
                    hugetlb_mnt = os.path.join(base, "hugetlb")
                    os.makedirs(hugetlb_mnt)
                    subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "cgroup", hugetlb_mnt], check=True)
                    notes.append("hugetlb moved to a v1 hierarchy during the run (crun 1.8 refuses controllers in the v2 tree)")
                    one_run(binary, os.path.join(base, "root-" + name), bundle, f"warm-{name}", extra)
                else:
                    raise
        runtimes = [r for r in runtimes if r[0] not in skipped]
        samples = {n: [] for n, _, _ in runtimes}
        rss = {n: [] for n, _, _ in runtimes}
        for i in range(args.runs):
            for name, binary, extra in runtimes:
                ms = one_run(binary, os.path.join(base, "root-" + name), bundle, f"b{i}-{name}", extra)
                samples[name].append(ms)
        launcher = os.path.join(base, "peak-rss")
        subprocess.run(["gcc", "-static", "-O2", "-o", launcher, os.path.join(here, "peak-rss.c")], check=True)
        for i in range(5):
            for name, binary, extra in runtimes:
                rss[name].append(peak_rss(launcher, binary, os.path.join(base, "root-" + name), bundle, f"r{i}-{name}", extra))
        med = {n: statistics.median(v) for n, v in samples.items()}
        print(f"runtime `run /bin/true`, profile={args.profile}, {args.runs} alternating runs each")
        print(f"{'runtime':<14}{'median ms':>10}{'p90 ms':>9}{'peak RSS KiB':>14}{'berth/this':>12}")
        for name, _, _ in runtimes:
            v = sorted(samples[name])
            p90 = v[min(len(v) - 1, int(len(v) * 0.9))]
            ratio = med["berth-runtime"] / med[name]
            print(f"{name:<14}{med[name]:>10.2f}{p90:>9.2f}{statistics.median(rss[name]):>14.0f}{ratio:>12.2f}")
        peers = [n for n, _, _ in runtimes if n != "berth-runtime"]
        if peers:
            best = min(peers, key=lambda n: med[n])
            print(f"berth / best peer ({best}): {med['berth-runtime'] / med[best]:.2f}x")
        for n in notes:
            print("note:", n)
        rss_med = {n: statistics.median(v) for n, v in rss.items()}
        record(f"runtime `run /bin/true` ({args.profile})", "ms", (med["berth-runtime"], rss_med["berth-runtime"]),
               {n: (med[n], rss_med[n]) for n in peers})
    finally:
        if subprocess.run(["umount", os.path.join(base, "hugetlb")], stderr=subprocess.DEVNULL).returncode == 0:
            wait_hierarchies_settled(20)
        shutil.rmtree(base, ignore_errors=True)

if __name__ == "__main__":
    main()
