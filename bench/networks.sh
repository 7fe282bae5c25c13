#!/bin/sh
# Network benchmark for issue #5 (numbers, not pass/fail):
#  - added latency of `docker run --rm --network <user-net> busybox true` over `--network none`
#    (median of N each; target <= 10 ms): bridge, veth, address, embedded DNS and nft rules
#  - time to create and remove 50 networks (with their nftables table rewrites)
# Runs a private release berthd on a temp root; removes everything afterwards.
set -eu
cd "$(dirname "$0")/.."
N=${N:-20}
# 50 networks need more than the default pools (31 networks, as with Docker).
BERTHD_ARGS="--default-address-pool base=10.240.0.0/16,size=24"
. bench/berthd.sh
sh scripts/mk-busybox-tar.sh | docker import - busybox >/dev/null
docker network create benchnet >/dev/null
docker run --rm --network benchnet busybox true
python3 - "$N" <<'PY'
import subprocess, sys, time, statistics
n = int(sys.argv[1])
def median(args):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", *args, "busybox", "true"], check=True)
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)
none = median(["--network", "none"])
user = median(["--network", "benchnet"])
print(f"docker run --rm x{n}: --network none {none:.1f} ms, user network {user:.1f} ms, added {user - none:.1f} ms")
t = time.perf_counter()
for i in range(50):
    subprocess.run(["docker", "network", "create", f"bn{i}"], check=True, stdout=subprocess.DEVNULL)
c = time.perf_counter() - t
t = time.perf_counter()
subprocess.run(["docker", "network", "rm", *[f"bn{i}" for i in range(50)]], check=True, stdout=subprocess.DEVNULL)
r = time.perf_counter() - t
print(f"50 networks: create {c * 1000:.0f} ms ({c * 20:.1f} ms each), remove {r * 1000:.0f} ms")
PY
docker network rm benchnet >/dev/null
