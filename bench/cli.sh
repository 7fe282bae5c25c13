#!/bin/sh
# Client start-up benchmark for issue #10 (numbers, not pass/fail): wall time of `berth` and of the
# docker CLI for the same commands against one private release berthd (median of N runs).
#  - `--version` (no daemon: pure process start-up; target <= 3 ms for berth)
#  - `version` and `ps` (one round trip, plus API negotiation)
set -eu
cd "$(dirname "$0")/.."
N=${N:-50}
. bench/berthd.sh
sh scripts/mk-busybox-tar.sh | docker import - busybox >/dev/null
docker create --name c1 busybox true >/dev/null
python3 - "$N" "$BIN/berth" <<'PY'
import os, subprocess, sys, time, statistics
n, berth = int(sys.argv[1]), sys.argv[2]
def bench(argv):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts), min(ts)
t = bench(["/bin/true"])
print(f"baseline: /bin/true median {t[0]:.2f} ms (the cost of spawning any process from this script)")
for args in (["--version"], ["version"], ["ps", "-a"], ["images"]):
    b = bench([berth] + args)
    d = bench(["docker"] + args)
    print(f"{' '.join(args):10} berth median {b[0]:6.2f} ms (min {b[1]:5.2f})   docker median {d[0]:6.2f} ms (min {d[1]:5.2f})")
PY
echo "berth binary: $(du -k "$BIN/berth" | cut -f1) KiB"
