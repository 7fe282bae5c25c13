#!/bin/sh
# Registry benchmark (numbers, not pass/fail): berth-registry against Debian's docker-registry (the
# reference distribution server, 2.8) on the same machine, same client (a private release berthd
# driven by the docker CLI), interleaved rounds on fresh registries: push and pull of a ~300 MB
# 3-layer image in MB/s, then 50 concurrent pulls of a small image (manifest, config and layer over
# keep-alive HTTP), and each server's peak RSS. Everything runs on temp roots and is removed after.
set -eu
cd "$(dirname "$0")/.."
MB=${MB:-100}      # per layer
ROUNDS=${ROUNDS:-2}
command -v docker-registry >/dev/null || sh scripts/deps.sh
. bench/berthd.sh
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DPID=""; RPID=""
# Fresh registries every round (new roots, new ports), so every push uploads everything.
start_registries() {
  RP=$(free_port); DP=$(free_port)
  rm -rf "$ROOT/dr" "$ROOT/br"; mkdir -p "$ROOT/dr"
  printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}\nhttp: {addr: 127.0.0.1:%s, secret: bench}\n' \
    "$ROOT/dr/data" "$DP" > "$ROOT/dr/config.yml"
  docker-registry serve "$ROOT/dr/config.yml" 2>"$ROOT/dr.log" &
  DPID=$!
  BERTH_REGISTRY_GC_INTERVAL_SECS=0 "$BIN/berth-registry" --listen "127.0.0.1:$RP" --root "$ROOT/br" --log-level warn 2>"$ROOT/br.log" &
  RPID=$!
  until curl -sf "http://127.0.0.1:$RP/v2/" >/dev/null && curl -sf "http://127.0.0.1:$DP/v2/" >/dev/null; do sleep 0.05; done
}
stop_registries() {
  echo "berth rss $(awk '/VmHWM/ {print $2}' "/proc/$RPID/status")" >> "$ROOT/results"
  echo "reference rss $(awk '/VmHWM/ {print $2}' "/proc/$DPID/status")" >> "$ROOT/results"
  kill "$DPID" "$RPID" 2>/dev/null || true
  wait "$DPID" "$RPID" 2>/dev/null || true
  DPID=""; RPID=""
}
trap '[ -z "$RPID" ] || stop_registries; cleanup' EXIT

. bench/big-image.sh
docker rmi big:2 big:1 >/dev/null
RAW=$(docker image inspect -f '{{.Size}}' big:3)
now() { date +%s.%N; }
: > "$ROOT/results"
for round in $(seq "$ROUNDS"); do
  start_registries
  for name in berth:$RP reference:$DP; do
    who=${name%%:*}; port=${name#*:}
    img=127.0.0.1:$port/bench/big:$round
    docker tag big:3 "$img"
    t0=$(now); docker push "$img" >/dev/null; t1=$(now)
    docker rmi "$img" >/dev/null
    # Pull into a store without the layers; the image comes back from a local archive afterwards.
    docker save big:3 > "$ROOT/keep.tar"; docker rmi big:3 >/dev/null; docker image prune -af >/dev/null
    t2=$(now); docker pull -q "$img" >/dev/null; t3=$(now)
    docker rmi "$img" >/dev/null; docker load -q -i "$ROOT/keep.tar" >/dev/null; rm "$ROOT/keep.tar"
    echo "$who push $t0 $t1" >> "$ROOT/results"
    echo "$who pull $t2 $t3" >> "$ROOT/results"
  done
  [ "$round" = "$ROUNDS" ] || stop_registries
done
# The small image for the concurrency test: busybox itself.
docker image inspect busybox >/dev/null 2>&1 || sh scripts/mk-busybox-tar.sh | docker import - busybox >/dev/null
for p in $RP $DP; do docker tag busybox "127.0.0.1:$p/small/bb:1"; docker push "127.0.0.1:$p/small/bb:1" >/dev/null; done
python3 - "$RP" "$DP" "$RAW" "$ROOT/results" "$RPID" "$DPID" <<'PY'
import http.client, json, sys, threading, time
rp, dp, raw, results, rpid, dpid = sys.argv[1], sys.argv[2], int(sys.argv[3]) / 1e6, sys.argv[4], sys.argv[5], sys.argv[6]
def pull(port):
    c = http.client.HTTPConnection("127.0.0.1", int(port))
    c.request("GET", "/v2/small/bb/manifests/1", headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    m = json.loads(c.getresponse().read())
    for d in [m["config"]] + m["layers"]:
        c.request("GET", f"/v2/small/bb/blobs/{d['digest']}")
        r = c.getresponse(); r.read()
        assert r.status == 200
def concurrent(port, n=50):
    ts = [threading.Thread(target=pull, args=(port,)) for _ in range(n)]
    t = time.perf_counter()
    for x in ts: x.start()
    for x in ts: x.join()
    return time.perf_counter() - t
conc = {"berth": [], "reference": []}
for _ in range(5):
    conc["berth"].append(concurrent(rp)); conc["reference"].append(concurrent(dp))
# The servers alone: three 100 MB blobs uploaded (POST, then one PUT with the body) and downloaded, 3 at a time.
import hashlib, os
blobs = [os.urandom(100 << 20) for _ in range(3)]
digests = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
def up(port, repo, data, d):
    c = http.client.HTTPConnection("127.0.0.1", int(port))
    c.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    r = c.getresponse(); r.read(); assert r.status == 202, r.status
    loc = r.getheader("Location").split("://", 1)[-1]
    loc = loc[loc.index("/"):] if not loc.startswith("/") else loc
    sep = "&" if "?" in loc else "?"
    c.request("PUT", f"{loc}{sep}digest={d}", body=data, headers={"Content-Length": str(len(data))})
    r = c.getresponse(); r.read(); assert r.status == 201, r.status
def down(port, repo, d):
    c = http.client.HTTPConnection("127.0.0.1", int(port))
    c.request("GET", f"/v2/{repo}/blobs/{d}")
    r = c.getresponse()
    while r.read(1 << 20): pass
def timed(fn, args):
    ts = [threading.Thread(target=fn, args=a) for a in args]
    t = time.perf_counter()
    for x in ts: x.start()
    for x in ts: x.join()
    return time.perf_counter() - t
raw_io = {}
for i in range(2):
    for who, port in [("berth", rp), ("reference", dp)]:
        repo = f"raw/r{i}"
        u = timed(up, [(port, repo, b, d) for b, d in zip(blobs, digests)])
        g = timed(down, [(port, repo, d) for d in digests])
        raw_io.setdefault(who, []).append((u, g))
rows, rss = {}, {"berth": [], "reference": []}
for line in open(results):
    parts = line.split()
    if parts[1] == "rss":
        rss[parts[0]].append(int(parts[2]) / 1024)
        continue
    who, op, a, b = parts
    rows.setdefault((who, op), []).append(float(b) - float(a))
def hwm(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmHWM"):
            return int(l.split()[1]) / 1024
rss["berth"].append(hwm(rpid)); rss["reference"].append(hwm(dpid))
print(f"image: 3 layers, {raw:.0f} MB uncompressed; {len(rows[('berth', 'push')])} interleaved rounds, best shown")
for op in ["push", "pull"]:
    b, r = min(rows[("berth", op)]), min(rows[("reference", op)])
    print(f"docker {op}: berth-registry {raw/b:.0f} MB/s, docker-registry {raw/r:.0f} MB/s  ({r/b:.2f}x)")
b, r = min(conc["berth"]), min(conc["reference"])
print(f"50 concurrent pulls of busybox (best of 5): berth-registry {b*1000:.0f} ms, docker-registry {r*1000:.0f} ms  ({r/b:.2f}x)")
for k, name in [(0, "upload"), (1, "download")]:
    b, r = min(x[k] for x in raw_io["berth"]), min(x[k] for x in raw_io["reference"])
    print(f"server alone, 3x100 MB blob {name} (3 at a time): berth-registry {300*1.048576/b:.0f} MB/s, docker-registry {300*1.048576/r:.0f} MB/s  ({r/b:.2f}x)")
print(f"peak RSS (max over rounds): berth-registry {max(rss['berth']):.1f} MB, docker-registry {max(rss['reference']):.1f} MB")
PY
