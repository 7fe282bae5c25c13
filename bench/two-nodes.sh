#!/bin/sh
# Two hosts on one machine: two berthd (own roots, sockets, bridges, subnets) stand for two nodes,
# one berth-registry over an S3 bucket (moto) for both, and a scheduler in a few lines: it places
# N containers across the nodes through the Engine API (the least loaded node first), builds an
# image on node A, pushes it through the registry and runs it on node B. Prints timings.
#
#   sh bench/two-nodes.sh            # N=20 containers by default
set -eu
cd "$(dirname "$0")/.."
N=${N:-20}
cargo build --release --bins -q
BIN=$PWD/target/release
ROOT=$(mktemp -d /tmp/berth-2nodes-XXXXXX)
PIDS=""
cleanup() {
    for n in a b; do
        ids=$("$BIN/berth" -H "unix://$ROOT/$n.sock" ps -aq 2>/dev/null || true)
        [ -n "$ids" ] && "$BIN/berth" -H "unix://$ROOT/$n.sock" rm -f $ids >/dev/null 2>&1 || true
    done
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $PIDS; do wait "$p" 2>/dev/null || true; done
    for n in a b; do
        nft delete table ip "berth_b2n$n$$" 2>/dev/null || true
        ip link del "b2n$n$$" 2>/dev/null || true
        for d in /sys/fs/cgroup/*/berth-2n-$n-$$; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
    done
    rm -rf "$ROOT"
}
trap cleanup EXIT INT TERM
ms() { date +%s%3N; }

S3_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$S3_PORT" >"$ROOT/moto.log" 2>&1 &
PIDS="$PIDS $!"
until curl -sf -X PUT "http://127.0.0.1:$S3_PORT/berth" >/dev/null; do sleep 0.1; done
BERTH_REGISTRY_STORAGE_DRIVER=s3 BERTH_REGISTRY_STORAGE_S3_BUCKET=berth \
BERTH_REGISTRY_STORAGE_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" BERTH_REGISTRY_STORAGE_S3_ACCESS_KEY=test \
BERTH_REGISTRY_STORAGE_S3_SECRET_KEY=test BERTH_REGISTRY_STORAGE_S3_ALLOW_HTTP=true \
    "$BIN/berth-registry" --listen "127.0.0.1:$REG_PORT" >"$ROOT/registry.log" 2>&1 &
PIDS="$PIDS $!"
REG=127.0.0.1:$REG_PORT
i=0
for n in a b; do
    i=$((i + 1))
    "$BIN/berthd" --data-root "$ROOT/$n/data" --exec-root "$ROOT/$n/run" -H "unix://$ROOT/$n.sock" \
        --cgroup-parent "/berth-2n-$n-$$" --bridge "b2n$n$$" --bip "10.213.24$i.1/24" \
        --default-address-pool "base=10.214.24$i.0/24,size=28" --config-file /nonexistent --log-level warn \
        2>"$ROOT/$n.log" &
    PIDS="$PIDS $!"
done
for n in a b; do until "$BIN/berth" -H "unix://$ROOT/$n.sock" version >/dev/null 2>&1; do sleep 0.05; done; done
until curl -sf "http://$REG/v2/" >/dev/null; do sleep 0.1; done
sh scripts/mk-busybox-tar.sh | "$BIN/berth" -H "unix://$ROOT/a.sock" import - busybox >/dev/null
sh scripts/mk-busybox-tar.sh | "$BIN/berth" -H "unix://$ROOT/b.sock" import - busybox >/dev/null

# The scheduler: each container to the node running fewer, through the API.
t0=$(ms)
python3 - "$ROOT" "$N" <<'PY'
import http.client, json, socket, sys
root, n = sys.argv[1], int(sys.argv[2])
class Conn(http.client.HTTPConnection):
    def __init__(self, sock):
        super().__init__("localhost", timeout=120)
        self.path = sock
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(120)
        self.sock.connect(self.path)
def call(node, method, path, body=None):
    c = Conn(f"{root}/{node}.sock")
    data = json.dumps(body).encode() if body is not None else None
    c.request(method, "/v1.44" + path, body=data, headers={"Content-Type": "application/json"} if data else {})
    r = c.getresponse(); out = r.read(); c.close()
    if r.status >= 300:
        raise SystemExit(f"{node} {method} {path}: {r.status} {out[:200]!r}")
    return json.loads(out) if out.strip() else None
placed = {"a": 0, "b": 0}
for i in range(n):
    load = {k: len(call(k, "GET", "/containers/json")) for k in placed}
    node = min(load, key=load.get)
    c = call(node, "POST", f"/containers/create?name=task-{i}", {"Image": "busybox", "Cmd": ["sleep", "600"]})
    call(node, "POST", f"/containers/{c['Id']}/start")
    placed[node] += 1
print(f"placed {n} containers: node a {placed['a']}, node b {placed['b']}")
PY
t1=$(ms)
echo "placement: $((t1 - t0)) ms for $N containers ($(( (t1 - t0) / N )) ms each)"

# Build on A, push through the registry, run on B.
mkdir -p "$ROOT/ctx" && printf 'FROM busybox\nRUN echo "built on node a" > /origin\nCMD ["cat", "/origin"]\n' >"$ROOT/ctx/Dockerfile"
t0=$(ms)
DOCKER_BUILDKIT=0 DOCKER_HOST="unix://$ROOT/a.sock" docker build -q -t "$REG/demo/app:1" "$ROOT/ctx" >/dev/null 2>&1
t1=$(ms)
"$BIN/berth" -H "unix://$ROOT/a.sock" push "$REG/demo/app:1" >/dev/null
t2=$(ms)
out=$("$BIN/berth" -H "unix://$ROOT/b.sock" run --rm "$REG/demo/app:1")
t3=$(ms)
[ "$out" = "built on node a" ] || { echo "node b ran: $out"; exit 1; }
echo "build on a: $((t1 - t0)) ms; push a -> registry (S3): $((t2 - t1)) ms; pull + run on b: $((t3 - t2)) ms"
echo "node b says: $out"
