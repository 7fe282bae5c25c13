#!/bin/sh
# issue #24 target 6, second half: the engine's own memory with N (50) idle containers — the PSS
# (proportional set size: shared pages split among the processes that map them) of berthd plus
# every berth-shim, and of the containers' processes apart, right after starting them and once
# idle (65 s: berthd and the shims have shed heap and code). Against a private release berthd.
set -eu
cd "$(dirname "$0")/.."
N=${N:-50}
. bench/berthd.sh
"$BIN/berth" import target/debug/e2e-busybox.tar busybox >/dev/null 2>&1 || scripts/mk-busybox-tar.sh | "$BIN/berth" import - busybox >/dev/null
seq "$N" | xargs -P 10 -n 1 sh -c "\"$BIN/berth\" -H unix://$SOCK run -d --network none busybox sleep 3600 >/dev/null"
pss() { awk '/^Pss:/ {s += $2} END {printf "%.1f", s / 1024}' "$@" 2>/dev/null; }
report() {
  shims=$(pgrep -f "berth-shim $ROOT" || true)
  inits=$(for s in $shims; do cat /proc/$s/task/*/children 2>/dev/null; done)
  files=$(for p in $PID $shims; do echo /proc/$p/smaps_rollup; done)
  cfiles=$(for p in $inits; do echo /proc/$p/smaps_rollup; done)
  echo "$1: berthd + $(echo $shims | wc -w) shims PSS $(pss $files) MB (berthd $(pss /proc/$PID/smaps_rollup) MB); the containers' own processes $(pss $cfiles) MB"
}
report "started"
sleep 65
report "idle 65 s"
