#!/bin/sh
# Container benchmarks for issue #4 (numbers, not pass/fail):
#  - `docker exec <c> true` latency (median of N; target <= 15 ms), and over the API: exec create +
#    start until the exec's stream ends (issue #24 target 2: <= 8 ms)
#  - 50 containers started with parallelism 10 (`docker run -d`), wall time
#  - RSS of one idle berth-shim (target <= 2 MB)
# Runs a private release berthd on a temp root; removes everything afterwards.
set -eu
cd "$(dirname "$0")/.."
N=${N:-20}
. bench/berthd.sh
sh scripts/mk-busybox-tar.sh | docker import - busybox >/dev/null
docker run -d --name idle --network none busybox sleep 600 >/dev/null
docker exec idle true
python3 - "$N" "$BIN/berth" "$SOCK" <<'PY'
import subprocess, sys, time, statistics, json
from concurrent.futures import ThreadPoolExecutor
n = int(sys.argv[1])
# The same exec through the docker CLI and through berth (whose own start-up is ~3 ms, docker's 12-20 ms).
for cli in ("docker", sys.argv[2]):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([cli, "exec", "idle", "true"], check=True)
        ts.append((time.perf_counter() - t) * 1000)
    print(f"{cli.split('/')[-1]} exec idle true x{n}: median {statistics.median(ts):.1f} ms, min {min(ts):.1f} ms")
sys.path.insert(0, "bench")
from api import Unix
def post(path, body):
    # A new connection each time: an exec start's answer is its stream, which berthd ends with it.
    c = Unix(sys.argv[3])
    data = c.call("POST", path, body)
    c.close()
    return data
ts = []
for _ in range(n):
    t = time.perf_counter()
    eid = json.loads(post("/containers/idle/exec", {"Cmd": ["true"], "AttachStdout": True}))["Id"]
    post(f"/exec/{eid}/start", {"Detach": False, "Tty": False})
    ts.append((time.perf_counter() - t) * 1000)
print(f"API exec create + start (true) x{n}: median {statistics.median(ts):.1f} ms, min {min(ts):.1f} ms")
t = time.perf_counter()
with ThreadPoolExecutor(10) as ex:
    list(ex.map(lambda i: subprocess.run(["docker", "run", "-d", "--network", "none", "--name", f"p{i}", "busybox", "sleep", "600"], check=True, stdout=subprocess.DEVNULL), range(50)))
print(f"50 containers, parallelism 10: {time.perf_counter() - t:.2f} s")
PY
ID=$(docker inspect -f '{{.Id}}' idle)
SHIM=$(pgrep -f "berth-shim.*$ID" | head -1)
# A shim sheds its setup memory after a second without activity.
sleep 2.5
echo "idle berth-shim RSS: $(awk '/VmRSS/ {print $2}' /proc/$SHIM/status) KiB, PSS $(awk '/^Pss:/ {print $2}' /proc/$SHIM/smaps_rollup) KiB (pid $SHIM)"
docker rm -f idle $(seq -f 'p%g' 0 49) >/dev/null
