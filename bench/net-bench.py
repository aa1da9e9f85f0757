#!/usr/bin/env python3
"""Network setup cost: `berth run --rm --network bridge IMG true` vs `--network none` on the
same busybox image, the two alternating, N runs each; then podman likewise (netavark) unless
--no-podman. The difference of the medians is what attaching (address, veth, routes, rules)
and detaching cost per container, end to end, in a stream of containers (the bridge and the
nftables table stay while containers come within a second of each other). Then the cold
case: `--network bridge` after the network went idle (bridge and table reaped), which also
creates the bridge and the table.

Usage: bench/net-bench.py [--runs N] [--cold-runs N] [--berth-dir DIR] [--no-podman]   (root)
"""
import argparse, os, re, shutil, statistics, subprocess, tempfile, time

from enginelib import podman_cleanup, podman_cmd, podman_run_opts

def timed(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    return dt

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--berth-dir", default="/usr/local/bin", help="where berth is (target/release for a local build)")
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--cold-runs", type=int, default=8)
    a = ap.parse_args()
    berth = os.path.join(a.berth_dir, "berth")
    base = tempfile.mkdtemp(prefix="berth-net-bench-")
    tables_before = []
    p = podman_cmd(base)
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
        b = [berth, "--root", broot, "--runroot", os.path.join(base, "berth-run")]
        subprocess.run(b + ["import", tar, "localhost/bench:latest"], check=True, stdout=subprocess.DEVNULL)
        tables_before = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.splitlines()
        pairs = [{
            "berth --network none": b + ["run", "--rm", "--network", "none", "localhost/bench", "true"],
            "berth --network bridge": b + ["run", "--rm", "--network", "bridge", "localhost/bench", "true"],
        }]
        if not a.no_podman:
            subprocess.run(p + ["import", tar, "localhost/bench:latest"], check=True, stdout=subprocess.DEVNULL)
            pairs.append({
                "podman --network none": p + ["run", "--rm"] + podman_run_opts(base, "none") + ["localhost/bench", "true"],
                "podman --network bridge": p + ["run", "--rm"] + podman_run_opts(base, "bridge") + ["localhost/bench", "true"],
            })
        rows = {}
        for cmds in pairs:
            for k in cmds:
                rows[k] = []
            for i in range(a.runs + 1):
                for k, c in cmds.items():
                    dt = timed(c)
                    if i > 0:  # the first round warms caches up
                        rows[k].append(dt)
        cold = "berth --network bridge, cold"
        rows[cold] = []
        for i in range(a.cold_runs):
            time.sleep(2.5)  # past the bridge's idle second and the reaper's work
            rows[cold].append(timed(pairs[0]["berth --network bridge"]))
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(f"`run --rm IMG true`, {a.runs} runs each, none and bridge alternating; cold: {a.cold_runs} runs 2.5 s apart")
        print(f"{'command':<26}{'median ms':>10}{'p90 ms':>9}")
        for k, v in rows.items():
            print(f"{k:<26}{med[k]:>10.2f}{sorted(v)[int(len(v) * 0.9) - 1]:>9.2f}")
        print(f"berth network setup+teardown (bridge - none, medians): {med['berth --network bridge'] - med['berth --network none']:.2f} ms")
        print(f"berth cold network (bridge and table created; bridge cold - none, medians): {med[cold] - med['berth --network none']:.2f} ms")
        if not a.no_podman:
            print(f"podman network setup+teardown (bridge - none, medians): {med['podman --network bridge'] - med['podman --network none']:.2f} ms")
    finally:
        # Containers, mounts and the benchmark's own cgroup parent (podman's default,
        # libpod_parent, would stay and pin hugetlb in the v2 tree).
        podman_cleanup(base)
        # netavark leaves its (empty) iptables-nft skeleton: remove the tables it created.
        if not a.no_podman:
            after = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.splitlines()
            for t in after:
                if t not in tables_before and t.split()[1:3] in (["ip", "nat"], ["ip", "filter"], ["ip6", "nat"], ["ip6", "filter"]):
                    listing = subprocess.run(["nft", "list", "table"] + t.split()[1:3], capture_output=True, text=True).stdout
                    if "NETAVARK" in listing and not re.search(r"ip6? [sd]addr [0-9a-f]", listing):  # the empty skeleton only
                        subprocess.run(["nft", "delete", "table"] + t.split()[1:3])
        subprocess.run(["umount", "-R", os.path.join(base, "podman")], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)

if __name__ == "__main__":
    main()
