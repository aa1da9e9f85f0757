#!/usr/bin/env python3
"""Engine start benchmark: `berth run --rm IMG true` vs `podman run --rm --network none IMG
true` vs `docker run --rm --network none IMG true` (a private dockerd, Debian's docker.io, with
runc) on the same busybox image (imported offline into each), alternating, N runs each; and
`berth-runtime run` of a prepared bundle as the floor. Prints medians, the peak RSS of the
command (the client; daemons are listed apart) and ratios.

Usage: bench/engine-bench.py [--runs N] [--berth-dir DIR]   (run as root; podman installed)
"""
import argparse, json, os, shutil, statistics, subprocess, tempfile

from enginelib import (IMAGE, Dockerd, berth_cmd, busybox_rootfs_tar, peak_rss, peak_rss_launcher,
                       podman_cleanup, podman_cmd, podman_run_opts, ratio_line, timed, unmount_under)
from summary import record

RSS_RUNS = 5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--berth-dir", default="/usr/local/bin", help="where berth and berth-runtime are (scripts/build-release)")
    a = ap.parse_args()
    berth = os.path.join(a.berth_dir, "berth")
    runtime = os.path.join(a.berth_dir, "berth-runtime")
    base = tempfile.mkdtemp(prefix="berth-engine-bench-")
    dockerd = None
    notes = []
    try:
        rootfs, tar = busybox_rootfs_tar(base)
        launcher = peak_rss_launcher(base)
        b = berth_cmd(berth, base)
        subprocess.run(b + ["import", tar, IMAGE], check=True, stdout=subprocess.DEVNULL)
        p = podman_cmd(base)
        subprocess.run(p + ["import", "--quiet", tar, IMAGE], check=True, stdout=subprocess.DEVNULL)
        if shutil.which("dockerd"):
            dockerd = Dockerd(base)
            subprocess.run(dockerd.cmd() + ["import", tar, IMAGE], check=True, stdout=subprocess.DEVNULL)
            notes.append(f"docker {dockerd.version()} (runc), vfs storage, cgroupfs")
        else:
            notes.append("docker: dockerd not installed (package docker.io): row skipped")
        # The bare runtime on a prepared bundle, as the floor.
        bundle = os.path.join(base, "bundle")
        os.makedirs(bundle)
        subprocess.run(["cp", "-a", rootfs, os.path.join(bundle, "rootfs")], check=True)
        subprocess.run([runtime, "spec", "--bundle", bundle], check=True)
        cfg = json.load(open(os.path.join(bundle, "config.json")))
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = ["true"]
        json.dump(cfg, open(os.path.join(bundle, "config.json"), "w"))
        rt_root = os.path.join(base, "rt")

        commands = {
            # --network none on every side (berth's default is bridge; bench/net-bench.py measures that).
            "berth run --rm": lambda i: b + ["run", "--rm", "--network", "none", IMAGE, "true"],
            "podman run --rm": lambda i: p + ["run", "--rm"] + podman_run_opts(base) + [IMAGE, "true"],
        }
        if dockerd:
            commands["docker run --rm"] = lambda i: dockerd.cmd() + ["run", "--rm", "--network", "none", IMAGE, "true"]
        commands["berth-runtime run"] = lambda i: [runtime, "--root", rt_root, "run", "--bundle", bundle, f"r{i}"]
        rows = {k: [] for k in commands}
        for i in range(a.runs + 1):
            for k, cmd in commands.items():
                ms = timed(cmd(i))
                if i > 0:  # run 0 is the warm-up
                    rows[k].append(ms)
        rss = {k: [] for k in commands}
        for i in range(RSS_RUNS):
            for k, cmd in commands.items():
                rss[k].append(peak_rss(launcher, cmd(f"rss{i}")))
        if dockerd:
            notes.append(f"docker's daemons (dockerd + its containerd), not in the RSS column: {dockerd.daemons_peak_rss_kib() // 1024} MiB peak")

        med = {k: statistics.median(v) for k, v in rows.items()}
        print(f"engine `run --rm IMG true`, {a.runs} alternating runs each; peak RSS: the command's own process")
        print(f"{'command':<22}{'median ms':>10}{'p90 ms':>9}{'peak RSS KiB':>14}{'berth/this':>12}")
        for k in rows:
            v = sorted(rows[k])
            p90 = v[min(len(v) - 1, int(len(v) * 0.9))]
            print(f"{k:<22}{med[k]:>10.2f}{p90:>9.2f}{statistics.median(rss[k]):>14.0f}{med['berth run --rm'] / med[k]:>12.2f}")
        line = ratio_line(med, "berth run --rm", ["podman run --rm", "docker run --rm"])
        if line:
            print(line)
        print(f"engine overhead over the bare runtime: {med['berth run --rm'] - med['berth-runtime run']:.2f} ms")
        for n in notes:
            print("note:", n)
        both = lambda k: (med[k], statistics.median(rss[k]))
        record("engine `run --rm IMG true`", "ms", both("berth run --rm"),
               {k.split()[0]: both(k) for k in ("podman run --rm", "docker run --rm") if k in med})
    finally:
        if dockerd:
            dockerd.stop()
        podman_cleanup(base)
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
