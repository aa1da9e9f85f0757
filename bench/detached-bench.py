#!/usr/bin/env python3
"""Detached containers benchmark: N (default 50) `run -d --name bK IMG sleep 1000`, one after
the other, then one `rm -f` of all of them; berth vs podman (`--network none`), on the same
busybox image imported offline into both, alternating engine by engine for R rounds. Prints
the median wall time of start-all and remove-all (both engines with `--network none`), the peak RSS of the `run -d` and `rm -f`
commands, and ratios.

berth's row needs `berth run -d` (the engine's monitor): where this build's berth refuses it,
the row is skipped with a note saying why.

Usage: bench/detached-bench.py [--containers N] [--rounds R] [--berth-dir DIR]   (root)
"""
import argparse, os, re, shutil, statistics, subprocess, tempfile, time

from enginelib import (IMAGE, berth_cmd, busybox_rootfs_tar, kill_processes_mentioning, peak_rss,
                       peak_rss_launcher, podman_cleanup, podman_cmd, podman_run_opts, ratio_line, unmount_under)
from summary import record


def run_ok(cmd, what):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"`{what}` failed ({p.returncode}): {p.stderr.strip()}")


class Engine:
    def __init__(self, name, base_cmd, run_opts, rm_opts):
        self.name, self.base_cmd, self.run_opts, self.rm_opts = name, base_cmd, run_opts, rm_opts

    def run_cmd(self, cname):
        return self.base_cmd + ["run", "-d", "--name", cname] + self.run_opts + [IMAGE, "sleep", "1000"]

    def rm_cmd(self, names):
        return self.base_cmd + ["rm", "-f"] + self.rm_opts + names

    def round(self, n, tag, base):
        """Start n containers, then remove them all: (start-all s, remove-all s, the RSS in KiB
        of each idle container's monitor: berth's `__monitor`, podman's conmon)."""
        names = [f"b{tag}-{k}" for k in range(n)]
        t0 = time.perf_counter()
        for cname in names:
            run_ok(self.run_cmd(cname), f"{self.name} run -d")
        t1 = time.perf_counter()
        monitors = monitor_rss(self.name, base)
        t1b = time.perf_counter()
        run_ok(self.rm_cmd(names), f"{self.name} rm -f")
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1b, monitors

    def peak_rss(self, launcher, tag):
        """Peak RSS (KiB) of one `run -d` and of one `rm -f`."""
        cname = f"rss-{tag}"
        return peak_rss(launcher, self.run_cmd(cname)), peak_rss(launcher, self.rm_cmd([cname]))


def monitor_rss(engine, base):
    """VmRSS (KiB) of every monitor process of this benchmark's containers."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        mine = any(base.encode() in a for a in argv)
        is_monitor = (b"__monitor" in argv) if engine == "berth" else argv[0].endswith(b"conmon")
        m = re.search(r"VmRSS:\s+(\d+)", status)
        if mine and is_monitor and m:
            out.append(int(m.group(1)))
    return out


def berth_detached_works(engine):
    """None if `berth run -d` starts and `rm -f` removes a container, else why not."""
    try:
        run_ok(engine.run_cmd("probe"), "berth run -d")
    except RuntimeError as e:
        return str(e).splitlines()[0]
    try:
        run_ok(engine.rm_cmd(["probe"]), "berth rm -f")
    except RuntimeError as e:
        return str(e)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--berth-dir", default="/usr/local/bin", help="where berth is (scripts/build-release)")
    a = ap.parse_args()
    berth = os.path.join(a.berth_dir, "berth")
    base = tempfile.mkdtemp(prefix="berth-detached-bench-")
    notes = []
    engines = []
    try:
        _, tar = busybox_rootfs_tar(base)
        launcher = peak_rss_launcher(base)
        b = Engine("berth", berth_cmd(berth, base), ["--network", "none"], [])
        run_ok(b.base_cmd + ["import", tar, IMAGE], "berth import")
        why = berth_detached_works(b)
        if why is None:
            engines.append(b)
        else:
            notes.append(f"berth's row skipped: detached containers do not work in this build: {why}")
        p = Engine("podman", podman_cmd(base), podman_run_opts(base), ["-t", "0"])
        run_ok(p.base_cmd + ["import", "--quiet", tar, IMAGE], "podman import")
        engines.append(p)

        start = {e.name: [] for e in engines}
        remove = {e.name: [] for e in engines}
        monitors = {e.name: [] for e in engines}
        for r in range(a.rounds + 1):
            for e in engines:
                s, rm, mon = e.round(a.containers, r, base)
                if r > 0:  # round 0 is the warm-up
                    start[e.name].append(s)
                    remove[e.name].append(rm)
                    monitors[e.name].extend(mon)
        rss = {e.name: [e.peak_rss(launcher, i) for i in range(3)] for e in engines}

        ms = {n: statistics.median(v) for n, v in start.items()}
        mr = {n: statistics.median(v) for n, v in remove.items()}
        ref = "berth" if "berth" in ms else None
        print(f"{a.containers} detached containers: `run -d --name bK IMG sleep 1000` each, then one `rm -f` of all;"
              f" {a.rounds} rounds, medians")
        print(f"{'engine':<10}{'start-all s':>13}{'per ctr ms':>12}{'remove-all s':>14}{'peak RSS run -d KiB':>21}"
              f"{'peak RSS rm -f KiB':>20}{'berth/this start':>18}{'berth/this rm':>15}")
        for e in engines:
            n = e.name
            run_rss = statistics.median(x[0] for x in rss[n])
            rm_rss = statistics.median(x[1] for x in rss[n])
            rs = f"{ms[ref] / ms[n]:.2f}" if ref else "-"
            rr = f"{mr[ref] / mr[n]:.2f}" if ref else "-"
            print(f"{n:<10}{ms[n]:>13.2f}{ms[n] * 1000 / a.containers:>12.1f}{mr[n]:>14.2f}{run_rss:>21.0f}{rm_rss:>20.0f}{rs:>18}{rr:>15}")
        for what, med in (("start-all", ms), ("remove-all", mr)):
            line = ratio_line(med, "berth", ["podman"])
            if line:
                print(f"{what}: {line}")
        mon = {n: statistics.median(v) for n, v in monitors.items() if v}
        if mon:
            print("idle monitor RSS per container (median VmRSS): "
                  + ", ".join(f"{n} {kib:.0f} KiB ({'berth __monitor' if n == 'berth' else 'conmon'})" for n, kib in mon.items()))
            record("monitor RSS of an idle detached container", "MiB",
                   [mon["berth"] / 1024, mon["berth"]] if "berth" in mon else None,
                   {"podman (conmon)": [mon["podman"] / 1024, mon["podman"]]} if "podman" in mon else {}, why)
        for n in notes:
            print("note:", n)
        for what, med, k in (("started", ms, 0), ("removed", mr, 1)):
            cell = lambda n: (med[n], statistics.median(x[k] for x in rss[n]))
            record(f"{a.containers} detached containers {what}", "s", cell("berth") if "berth" in med else None,
                   {"podman": cell("podman")}, why)
    finally:
        # What a failed round left: berth's containers (and their monitors), podman's.
        if os.path.isdir(os.path.join(base, "berth")):
            ls = subprocess.run(berth_cmd(berth, base) + ["ps", "-a", "-q"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True).stdout.split()
            if ls:
                subprocess.run(berth_cmd(berth, base) + ["rm", "-f", *ls], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        podman_cleanup(base)
        kill_processes_mentioning(base)
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
