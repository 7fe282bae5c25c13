#!/bin/sh
# issue #24 target 7: listing many containers. Creates N (200) containers, then the median of 30
# `docker ps -a` and `berth ps -a`, and of 30 API `GET /containers/json?all=1` (curl, time to the
# last byte); then grows to M (1000) and measures the API again. Against a private release berthd.
set -eu
cd "$(dirname "$0")/.."
N=${N:-200}
M=${M:-1000}
. bench/berthd.sh
"$BIN/berth" import "$(ls target/debug/e2e-busybox.tar 2>/dev/null || echo /dev/null)" busybox >/dev/null 2>&1 \
  || scripts/mk-busybox-tar.sh | "$BIN/berth" import - busybox >/dev/null
make() {
  i=$1
  while [ "$i" -lt "$2" ]; do
    curl -s -o /dev/null --unix-socket "$SOCK" -H 'Content-Type: application/json' \
      -d '{"Image":"busybox","Cmd":["true"],"Labels":{"bench":"ps"}}' "http://x/containers/create?name=ps$i"
    i=$((i + 1))
  done
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { # median milliseconds of 30 runs of "$@"
  for _ in $(seq 30); do
    s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000 ))
  done | median | awk '{printf "%.2f ms\n", $1/1000}'
}
api() { curl -s -o /dev/null --unix-socket "$SOCK" "http://x/containers/json?all=1"; }
make 0 "$N"
echo "containers: $N"
echo "docker ps -a: $(ms docker ps -a)"
echo "berth ps -a:  $(ms "$BIN/berth" ps -a)"
echo "API list:     $(ms api)"
make "$N" "$M"
echo "containers: $M"
echo "API list:     $(ms api)"
echo "docker ps -a: $(ms docker ps -a)"
echo "berthd RSS:   $(awk '/VmRSS/ {print $2/1024 " MB"}' /proc/$PID/status)"
