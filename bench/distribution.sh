#!/bin/sh
# Pull/push benchmark (numbers, not pass/fail): push and pull of a ~300 MB 3-layer image to and from
# Debian's docker-registry on loopback, a second push of it to another registry (the file the first push kept), in MB/s of uncompressed layer data, with the pull split into
# download (the same blobs fetched with curl, 3 at a time) and the rest (decompress, verify, apply),
# next to this machine's raw floors (gzip -dc | sha256sum, gzip -1 | sha256sum).
# Runs a private release berthd and registry on temp roots; removes everything afterwards.
set -eu
cd "$(dirname "$0")/.."
MB=${MB:-100}   # per layer
command -v docker-registry >/dev/null || sh scripts/deps.sh
. bench/berthd.sh
# registry <dir>: starts Debian's registry on a free loopback port; sets PORT, adds to RPIDS.
RPIDS=""
registry() {
  mkdir -p "$1"
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s/data}, delete: {enabled: true}}\nhttp: {addr: 127.0.0.1:%s, secret: bench}\n' "$1" "$PORT" > "$1/config.yml"
  docker-registry serve "$1/config.yml" 2>"$1/log" &
  RPIDS="$RPIDS $!"
  until curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null; do sleep 0.05; done
}
trap 'for p in $RPIDS; do kill $p 2>/dev/null || true; wait $p 2>/dev/null || true; done; cleanup' EXIT
registry "$ROOT/registry2"
PORT2=$PORT
REG=$ROOT/registry
registry "$REG"

. bench/big-image.sh
IMG=127.0.0.1:$PORT/bench/big:3
docker tag big:3 "$IMG"
docker rmi big:3 big:2 big:1 >/dev/null
RAW=$(docker image inspect -f '{{.Size}}' "$IMG")

t0=$(date +%s.%N)
docker push "$IMG" >/dev/null
t1=$(date +%s.%N)
IMG2=127.0.0.1:$PORT2/bench/big:3
docker tag "$IMG" "$IMG2"
ta=$(date +%s.%N)
docker push "$IMG2" >/dev/null
tb=$(date +%s.%N)
docker rmi "$IMG2" >/dev/null
docker rmi "$IMG" busybox >/dev/null
docker image prune -af >/dev/null
t2=$(date +%s.%N)
docker pull -q "$IMG" >/dev/null
t3=$(date +%s.%N)

# The same blobs, downloaded only.
MAN=$(curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$PORT/v2/bench/big/manifests/3")
BLOBS=$(echo "$MAN" | python3 -c 'import json,sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))')
GZ=$(echo "$MAN" | python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
t4=$(date +%s.%N)
CURLS=""
for b in $BLOBS; do curl -sf -o "$REG/$b" "http://127.0.0.1:$PORT/v2/bench/big/blobs/$b" & CURLS="$CURLS $!"; done
for p in $CURLS; do wait "$p"; done
t5=$(date +%s.%N)
FILES=""
for b in $BLOBS; do FILES="$FILES $REG/$b"; done
# Floors in one pass on one core, through the system zlib (python's gzip/zlib modules).
FLOOR=$(python3 - $FILES <<'PY'
import gzip, hashlib, sys, time, zlib
if any(open(p, 'rb').read(2) != b'\x1f\x8b' for p in sys.argv[1:]):
    print(0, 0)  # zstd layers (push-compression): the gzip floors do not apply
    sys.exit()
t = time.perf_counter()
for p in sys.argv[1:]:
    h = hashlib.sha256()
    with gzip.open(p, 'rb') as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
d = time.perf_counter() - t
t = time.perf_counter()
for p in sys.argv[1:]:
    h = hashlib.sha256()
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    with gzip.open(p, 'rb') as f:
        while chunk := f.read(1 << 20):
            h.update(c.compress(chunk))
    h.update(c.flush())
print(d, time.perf_counter() - t)
PY
)
t6=0; t7=${FLOOR% *}; t8=0; t9=${FLOOR#* }

python3 - "$RAW" "$GZ" "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" "$t6" "$t7" "$t8" "$t9" "$ta" "$tb" <<'PY'
import sys
raw, gz = int(sys.argv[1]) / 1e6, int(sys.argv[2]) / 1e6
t = [float(x) for x in sys.argv[3:]]
push, pull, dl, floor, cfloor, again = t[1]-t[0], t[3]-t[2], t[5]-t[4], t[7], t[9], t[11]-t[10]
print(f"image: 3 layers, {raw:.0f} MB uncompressed, {gz:.0f} MB compressed in the registry")
print(f"docker push: {push:.2f} s = {raw/push:.0f} MB/s")
print(f"docker push of it to a second registry (the kept file): {again:.2f} s")
print(f"docker pull: {pull:.2f} s = {raw/pull:.0f} MB/s  (download alone {dl:.2f} s, "
      f"decompress+verify+apply beyond it {max(pull-dl,0):.2f} s)")
if floor:
    print(f"floor gunzip+sha256 (system zlib, one core): {floor:.2f} s = {raw/floor:.0f} MB/s")
    print(f"floor gunzip + gzip -1 + sha256 (system zlib, one core): {cfloor:.2f} s = {raw/cfloor:.0f} MB/s")
PY
