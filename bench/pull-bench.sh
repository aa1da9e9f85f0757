#!/usr/bin/env bash
# Pull benchmark: berth pull vs podman pull vs skopeo copy + umoci unpack, from a loopback
# docker-registry, with fresh stores, alternately; medians, peak RSS, ratios.
#
#   bench/pull-bench.sh [--runs N] [--berth PATH] [--podman-driver overlay|vfs]
#
# The image (built once, offline but for the Debian mirror apt uses, cached in $BENCH_DIR,
# default /var/tmp/berth-pull-bench): layer 1 a debootstrap --variant=minbase bookworm, layer 2
# what `apt-get install python3` adds in a chroot, layer 3 ~20k small files and a whiteout of
# /usr/share/doc — about 170 MB gzipped / 400 MB unpacked. Without debootstrap or the mirror,
# generated layers of the same sizes are used instead (the output says so).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
runs=5
berth=/usr/local/bin/berth
podman_driver=overlay
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --berth) berth=$2; shift 2 ;;
    --podman-driver) podman_driver=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--berth PATH] [--podman-driver overlay|vfs]" >&2; exit 2 ;;
  esac
done
for tool in docker-registry podman skopeo umoci gcc python3 "$berth"; do
  command -v "$tool" >/dev/null || { echo "pull-bench: $tool is missing (./scripts/setup --bench installs it)" >&2; exit 1; }
done
cache=${BENCH_DIR:-/var/tmp/berth-pull-bench}
mkdir -p "$cache"
work=$(mktemp -d /var/tmp/berth-pull-bench-run.XXXXXX)
registry_pid=
cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true; fi
  # podman may leave overlay mounts in its private root.
  { grep -o " $work/[^ ]*" /proc/self/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap "exit 143" TERM INT
mirror=$(sed -n 's/^URIs: *//p; s/^deb \(\[[^]]*\] \)\?\(http[^ ]*\) .*/\2/p' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 || true)
mirror=${mirror:-http://deb.debian.org/debian}

# ---- the image: an OCI layout in $cache/oci (built once) ------------------------------------
build_layers_debian() {
  local rootfs=$cache/rootfs
  if [ ! -f "$cache/rootfs.done" ]; then
    command -v debootstrap >/dev/null || return 1
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 || return 1
    touch "$cache/rootfs.done"
  fi
  if [ ! -f "$cache/layer2.tar" ]; then
    (cd "$rootfs" && tar --numeric-owner --xattrs -cf "$cache/layer1.tar" .)
    touch "$cache/before-python"
    sleep 1
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true
    mount -t proc proc "$rootfs/proc"
    local ok=0
    chroot "$rootfs" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 && apt-get clean' \
      >"$cache/apt.log" 2>&1 || ok=$?
    umount "$rootfs/proc"
    [ "$ok" = 0 ] || return 1
    # What the install created or changed (dpkg keeps package mtimes, so by ctime).
    (cd "$rootfs" && find . -cnewer "$cache/before-python" ! -path './proc/*' ! -path './var/lib/apt/lists/*' -print0 |
      tar --numeric-owner --xattrs --no-recursion --null -T - -cf "$cache/layer2.tar")
  fi
  echo "layers 1-2: debootstrap --variant=minbase bookworm from $mirror, then apt-get install python3"
}
build_layers_generated() {
  python3 - "$cache" <<'EOF'
import io, os, random, sys, tarfile
cache = sys.argv[1]
rnd = random.Random(1)
def gen(path, files):
    with tarfile.open(path, "w") as t:
        for name, size in files:
            data = rnd.randbytes(size // 2) + bytes(size - size // 2)
            info = tarfile.TarInfo(name); info.size = len(data); info.mtime = 1_700_000_000
            t.addfile(info, io.BytesIO(data))
gen(f"{cache}/layer1.tar", [(f"usr/share/doc/p{i // 50}/f{i}", rnd.randint(5_000, 35_000)) for i in range(6_000)])
gen(f"{cache}/layer2.tar", [(f"usr/lib/python3.11/m{i // 40}/f{i}.py", rnd.randint(3_000, 20_000)) for i in range(2_500)])
EOF
  echo "layers 1-2: GENERATED (no debootstrap or no mirror): ~120 MB + ~30 MB of half-random files"
}
build_layer3() {
  python3 - "$cache" <<'EOF'
import io, random, sys, tarfile
cache = sys.argv[1]
rnd = random.Random(3)
with tarfile.open(f"{cache}/layer3.tar", "w") as t:
    wh = tarfile.TarInfo("usr/share/.wh.doc"); wh.mtime = 1_700_000_000
    t.addfile(wh, io.BytesIO(b""))
    for i in range(20_000):
        size = rnd.randint(1_000, 13_500)
        data = rnd.randbytes(size * 2 // 5) + b"berth " * ((size - size * 2 // 5) // 6)
        info = tarfile.TarInfo(f"srv/data/d{i // 200}/f{i}"); info.size = len(data); info.mtime = 1_700_000_000
        t.addfile(info, io.BytesIO(data))
EOF
}
if [ ! -f "$cache/oci/index.json" ]; then
  [ -f "$cache/layers.txt" ] || build_layers_debian >"$cache/layers.txt" || build_layers_generated >"$cache/layers.txt"
  [ -f "$cache/layer3.tar" ] || build_layer3
  python3 - "$cache" <<'EOF'
import hashlib, json, os, subprocess, sys
cache = sys.argv[1]
oci = f"{cache}/oci"
os.makedirs(f"{oci}/blobs/sha256", exist_ok=True)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{oci}/blobs/sha256/{d}", "wb").write(data)
    return {"digest": f"sha256:{d}", "size": len(data)}
layers, diff_ids = [], []
for n in (1, 2, 3):
    tar = f"{cache}/layer{n}.tar"
    diff_ids.append("sha256:" + hashlib.file_digest(open(tar, "rb"), "sha256").hexdigest())
    gz = subprocess.run(["gzip", "-6", "-n", "-c", tar], check=True, stdout=subprocess.PIPE).stdout
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(gz)})
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
config = {"architecture": arch, "os": "linux", "config": {"Cmd": ["/bin/bash"]},
          "rootfs": {"type": "layers", "diff_ids": diff_ids},
          "history": [{"created_by": s} for s in ("debootstrap minbase", "apt-get install python3", "20k files, rm -rf /usr/share/doc")]}
cfg = {"mediaType": "application/vnd.oci.image.config.v1+json", **put(json.dumps(config).encode())}
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cfg, "layers": layers}
m = put(json.dumps(manifest).encode())
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **m,
           "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, open(f"{oci}/index.json", "w"))
open(f"{oci}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
EOF
fi
sizes=$(python3 - "$cache" <<'EOF'
import json, os, sys
c = sys.argv[1]
m = json.load(open(f"{c}/oci/index.json"))["manifests"][0]["digest"].split(":")[1]
layers = json.load(open(f"{c}/oci/blobs/sha256/{m}"))["layers"]
gz = sum(l["size"] for l in layers)
tar = sum(os.path.getsize(f"{c}/layer{n}.tar") for n in (1, 2, 3))
print(f"{len(layers)} layers, {gz / 1e6:.0f} MB gzipped, {tar / 1e6:.0f} MB of tar")
EOF
)

# ---- registry, launcher --------------------------------------------------------------------
gcc -static -O2 -o "$work/peak-rss" "$here/peak-rss.c"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/registry"
cat >"$work/registry.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port, secret: bench}
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
image=127.0.0.1:$port/bench/debian:v1
skopeo copy -q --dest-tls-verify=false "oci:$cache/oci:v1" "docker://$image"
echo 'insecure-registries = ["127.0.0.1"]' >"$work/registries.toml"

# ---- timed runs ----------------------------------------------------------------------------
# run_timed NAME CMD…: appends "seconds peak_kib" to $work/NAME.times (peak: max of the steps).
run_timed() {
  local name=$1; shift
  local t0 t1 rss
  t0=$(date +%s.%N)
  "$work/peak-rss" "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; echo "pull-bench: $name failed" >&2; exit 1; }
  t1=$(date +%s.%N)
  rss=$(sed -n 's/^peak-rss-kib //p' "$work/last.err" | tail -1)
  echo "$t0 $t1 $rss" >>"$work/$name.steps"
}
finish_run() {
  local name=$1
  awk 'NR==1{s=$1} {e=$2; if ($3>r) r=$3} END{printf "%.3f %d\n", e-s, r}' "$work/$name.steps" >>"$work/$name.times"
  rm -f "$work/$name.steps"
}
# A new store directory per run; old ones are removed only at the end: ext4 skips inodes
# freed in the last ~30 s when allocating, so creating 40k files right after an `rm -rf` of
# another 40k spends most of its time in __ext4_new_inode (measured: 80% of berth's time).
store_n=0
fresh() { store_n=$((store_n + 1)); mkdir -p "$work/stores/$store_n"; ln -sfn "stores/$store_n" "$work/store"; sync; }
podman_store_cleanup() {
  { grep -o " $work/stores/[^ ]*" /proc/self/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
# Round 0 is an untimed warm-up (registry files in the page cache, ext4 past the deletions of
# an earlier run); its times are dropped.
for i in $(seq 0 "$runs"); do
  fresh
  run_timed berth "$berth" --root "$work/store/berth" --registries-conf "$work/registries.toml" pull -q "$image"
  finish_run berth
  fresh
  run_timed podman podman --root "$work/store/root" --runroot "$work/store/run" --storage-driver "$podman_driver" \
    --cgroup-manager cgroupfs --events-backend none pull -q --tls-verify=false "$image"
  finish_run podman
  fresh
  run_timed skopeo-umoci skopeo copy -q --src-tls-verify=false "docker://$image" "oci:$work/store/oci:v1"
  run_timed skopeo-umoci umoci unpack --image "$work/store/oci:v1" "$work/store/bundle"
  finish_run skopeo-umoci
  if [ "$i" = 0 ]; then rm -f "$work"/*.times; continue; fi
  echo "run $i/$runs: berth $(tail -1 "$work/berth.times" | cut -d' ' -f1) s, podman $(tail -1 "$work/podman.times" | cut -d' ' -f1) s, skopeo+umoci $(tail -1 "$work/skopeo-umoci.times" | cut -d' ' -f1) s" >&2
done
podman_store_cleanup

python3 - "$work" "$sizes" "$(cat "$cache/layers.txt")" "$runs" "$podman_driver" "$here" <<'EOF'
import statistics, sys
work, sizes, how, runs, driver, here = sys.argv[1:]
sys.path.insert(0, here)
from summary import record
med, rss_med = {}, {}
print(f"image: {sizes}; {how}")
print(f"{runs} runs each, alternating, fresh stores; podman storage driver: {driver}")
print(f"{'tool':<24}{'median s':>10}{'min s':>8}{'max s':>8}{'peak RSS MB':>13}")
for name, label in (("berth", "berth pull"), ("podman", "podman pull"), ("skopeo-umoci", "skopeo copy + umoci")):
    rows = [tuple(map(float, l.split())) for l in open(f"{work}/{name}.times")]
    t = [r[0] for r in rows]; rss = [r[1] / 1024 for r in rows]
    med[name] = statistics.median(t)
    rss_med[name] = statistics.median(r[1] for r in rows)
    print(f"{label:<24}{med[name]:>10.2f}{min(t):>8.2f}{max(t):>8.2f}{statistics.median(rss):>13.0f}")
print(f"berth / podman:        {med['berth'] / med['podman']:.2f}x  (target <= 0.35x)")
print(f"berth / (skopeo+umoci): {med['berth'] / med['skopeo-umoci']:.2f}x")
record("pull, " + ", ".join(sizes.split(", ")[:2]), "s", (med["berth"], rss_med["berth"]), {"podman": (med["podman"], rss_med["podman"])})
EOF
