#!/bin/sh
# Image store benchmark (numbers, not pass/fail): `docker load` of a ~300 MB gzip image of 3 layers
# and `docker save` of it, in MB/s, next to this machine's raw gunzip+sha256 speed over the same file.
# Runs a private release berthd on a temp root; removes everything afterwards.
set -eu
cd "$(dirname "$0")/.."
MB=${MB:-100}   # per layer
. bench/berthd.sh
sh scripts/mk-busybox-tar.sh | docker import - busybox >/dev/null
# Three layers of incompressible data: the base rootfs + 2 committed layers, then one more on top.
docker run --name l1 busybox sh -c "head -c ${MB}m /dev/urandom > /l1" >/dev/null
docker commit l1 big:1 >/dev/null
docker run --name l2 big:1 sh -c "head -c ${MB}m /dev/urandom > /l2" >/dev/null
docker commit l2 big:2 >/dev/null
docker run --name l3 big:2 sh -c "head -c ${MB}m /dev/urandom > /l3" >/dev/null
docker commit l3 big:3 >/dev/null
docker rm l1 l2 l3 >/dev/null
docker save big:3 | gzip -1 > "$ROOT/big.tar.gz"
docker rmi big:3 big:2 big:1 >/dev/null
docker image prune -f >/dev/null
SIZE=$(stat -c %s "$ROOT/big.tar.gz")
RAW=$(gzip -dc "$ROOT/big.tar.gz" | wc -c)
python3 - "$ROOT/big.tar.gz" "$SIZE" "$RAW" <<'PY'
import subprocess, sys, time, hashlib, gzip
path, size, raw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mb = raw / 1e6
t = time.perf_counter()
h = hashlib.sha256()
with gzip.open(path, 'rb') as f:
    while chunk := f.read(1 << 20):
        h.update(chunk)
floor = time.perf_counter() - t
print(f"archive: {size/1e6:.0f} MB gzip, {mb:.0f} MB uncompressed, 3 layers")
print(f"floor (python gunzip+sha256, single pass): {mb/floor:.0f} MB/s")
t = time.perf_counter()
subprocess.run(["docker", "load", "-q", "-i", path], check=True, stdout=subprocess.DEVNULL)
load = time.perf_counter() - t
print(f"docker load:  {load:.2f} s = {mb/load:.0f} MB/s (uncompressed MB)")
t = time.perf_counter()
subprocess.run(["sh", "-c", "docker save big:3 > /dev/null"], check=True)
save = time.perf_counter() - t
print(f"docker save:  {save:.2f} s = {mb/save:.0f} MB/s")
PY
