#!/usr/bin/env python3
"""Engine start benchmark: `berth run --rm IMG true` vs `podman run --rm --network none IMG
true` on the same busybox image (imported offline into both), alternating, N runs each; and
`berth-runtime run` of a prepared bundle as the floor. Prints medians and ratios.

Usage: bench/engine-bench.py [--runs N] [--berth-dir DIR]   (run as root; podman installed)
"""
import argparse, os, shutil, statistics, subprocess, tempfile, time

def timed(cmd, env=None):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    return dt

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--berth-dir", default="/usr/local/bin", help="where berth and berth-runtime are (scripts/build-release)")
    a = ap.parse_args()
    berth = os.path.join(a.berth_dir, "berth")
    runtime = os.path.join(a.berth_dir, "berth-runtime")
    base = tempfile.mkdtemp(prefix="berth-engine-bench-")
    try:
        rootfs = os.path.join(base, "rootfs")
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev"]:
            os.makedirs(os.path.join(rootfs, d))
        shutil.copy("/bin/busybox", os.path.join(rootfs, "bin/busybox"))
        for ap_ in ["sh", "true"]:
            os.symlink("busybox", os.path.join(rootfs, "bin", ap_))
        with open(os.path.join(rootfs, "etc/passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\n")
        with open(os.path.join(rootfs, "etc/group"), "w") as f:
            f.write("root:x:0:\n")
        tar = os.path.join(base, "rootfs.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
        broot = os.path.join(base, "berth")
        subprocess.run([berth, "--root", broot, "import", tar, "localhost/bench:latest"], check=True, stdout=subprocess.DEVNULL)
        p = ["podman", "--root", os.path.join(base, "podman"), "--runroot", os.path.join(base, "podman-run"),
             "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        subprocess.run(p + ["import", tar, "localhost/bench:latest"], check=True, stdout=subprocess.DEVNULL)
        # The bare runtime on a prepared bundle, as the floor.
        bundle = os.path.join(base, "bundle")
        os.makedirs(bundle)
        subprocess.run(["cp", "-a", rootfs, os.path.join(bundle, "rootfs")], check=True)
        subprocess.run([runtime, "spec", "--bundle", bundle], check=True)
        import json
        cfg = json.load(open(os.path.join(bundle, "config.json")))
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = ["true"]
        json.dump(cfg, open(os.path.join(bundle, "config.json"), "w"))
        # podman's default rlimits (nofile 1048576) cannot be set where root lacks
        # CAP_SYS_RESOURCE (this sandbox): give it the current hard limits.
        import resource
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
        ulimits = ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]
        rows = {"berth run --rm": [], "podman run --rm": [], "berth-runtime run": []}
        for i in range(a.runs + 1):
            # --network none on both sides (berth's default became bridge; see bench/net-bench.py).
            b = timed([berth, "--root", broot, "run", "--rm", "--network", "none", "localhost/bench", "true"])
            pd = timed(p + ["run", "--rm", "--network", "none"] + ulimits + ["localhost/bench", "true"])
            r = timed([runtime, "--root", os.path.join(base, "rt"), "run", "--bundle", bundle, f"r{i}"])
            if i == 0:
                continue  # warm-up
            rows["berth run --rm"].append(b)
            rows["podman run --rm"].append(pd)
            rows["berth-runtime run"].append(r)
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(f"engine `run --rm IMG true`, {a.runs} alternating runs each")
        print(f"{'command':<22}{'median ms':>10}{'berth/this':>12}")
        for k in rows:
            print(f"{k:<22}{med[k]:>10.2f}{med['berth run --rm'] / med[k]:>12.2f}")
        print(f"engine overhead over the bare runtime: {med['berth run --rm'] - med['berth-runtime run']:.2f} ms")
    finally:
        subprocess.run(["podman", "--root", os.path.join(base, "podman"), "--runroot", os.path.join(base, "podman-run"),
                        "--storage-driver", "vfs", "rm", "-a", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["umount", "-R", os.path.join(base, "podman")], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)

if __name__ == "__main__":
    main()
