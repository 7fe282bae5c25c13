#!/bin/sh
# Benchmarks for issue #2 (numbers, not pass/fail):
#  - median and min-max wall time of N `docker run --rm busybox true` against berthd (default N=20)
#  - berthd's RSS when idle (after the runs, and on a fresh daemon)
# Runs a private berthd on a temp root; stops it and removes everything afterwards.
set -eu
cd "$(dirname "$0")/.."
N=${N:-20}
. bench/berthd.sh
sleep 0.5
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
echo "berthd idle RSS (fresh):        $(rss) KiB"
sh scripts/mk-busybox-tar.sh | docker import - busybox >/dev/null
docker run --rm busybox true # warm-up
python3 - "$N" "$BIN/berth" "$SOCK" <<'PY'
import subprocess, sys, time, statistics, json
n = int(sys.argv[1])
# Through the docker CLI and through berth; with the default bridge and with --network none.
for cli in ("docker", sys.argv[2]):
    for net in ([], ["--network", "none"]):
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            subprocess.run([cli, "run", "--rm"] + net + ["busybox", "true"], check=True)
            ts.append((time.perf_counter() - t) * 1000)
        print(f"{cli.split('/')[-1]} run --rm {' '.join(net) + ' ' if net else ''}busybox true x{n}: median {statistics.median(ts):.1f} ms, min {min(ts):.1f} ms, max {max(ts):.1f} ms")
# Issue #24 target 1's second half: the API alone, create + start + wait + delete (one connection).
sys.path.insert(0, "bench")
from api import Unix
c = Unix(sys.argv[3])
call = c.call
for mode in ("bridge", "none"):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        cid = json.loads(call("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": mode}}))["Id"]
        call("POST", f"/containers/{cid}/start")
        call("POST", f"/containers/{cid}/wait")
        call("DELETE", f"/containers/{cid}")
        ts.append((time.perf_counter() - t) * 1000)
    print(f"API create+start+wait+rm ({mode}) x{n}: median {statistics.median(ts):.1f} ms, min {min(ts):.1f} ms, max {max(ts):.1f} ms")
PY
sleep 2
echo "berthd idle RSS (after runs):   $(rss) KiB"
