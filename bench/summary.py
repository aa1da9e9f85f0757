#!/usr/bin/env python3
"""The one table of bench/report: a row per benchmark with berth's median, the best peer's,
their ratio and both peak RSS. The benchmarks append their rows as JSON lines to the file that
$BENCH_SUMMARY names (`record`); `bench/summary.py FILE` prints the table.

Row: {"row": str, "unit": "ms"|"s", "berth": [value, rss_kib] or null (skipped, with "why"),
      "peers": {name: [value, rss_kib]}}
"""
import json, os, sys


def record(row, unit, berth, peers, why=None):
    """Append a row to $BENCH_SUMMARY (no-op when unset). berth/peers values: (median, peak RSS KiB)."""
    path = os.environ.get("BENCH_SUMMARY")
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"row": row, "unit": unit, "berth": berth, "peers": peers, "why": why}) + "\n")


def fmt(value, unit):
    return f"{value:.2f} {unit}"


def rss(kib):
    return f"{kib / 1024:.1f} MiB" if kib else "-"


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    print(f"{'benchmark':<44}{'berth':>12}{'best peer':>30}{'berth/best':>12}{'RSS berth':>12}{'RSS best peer':>15}")
    notes = []
    for r in rows:
        unit, peers = r["unit"], {k: v for k, v in r["peers"].items() if v}
        best = min(peers, key=lambda k: peers[k][0]) if peers else None
        peer = f"{best} {fmt(peers[best][0], unit)}" if best else "-"
        peer_rss = rss(peers[best][1]) if best else "-"
        if r["berth"] is None:
            print(f"{r['row']:<44}{'skipped':>12}{peer:>30}{'-':>12}{'-':>12}{peer_rss:>15}")
            if r.get("why"):
                notes.append(f"berth skipped: {r['why']}")
            continue
        b, b_rss = r["berth"]
        ratio = f"{b / peers[best][0]:.2f}x" if best else "-"
        print(f"{r['row']:<44}{fmt(b, unit):>12}{peer:>30}{ratio:>12}{rss(b_rss):>12}{peer_rss:>15}")
    for n in dict.fromkeys(notes):
        print("note:", n)


if __name__ == "__main__":
    main()
