#!/bin/sh
# issue #24 target 8: many running containers. For each N (100, then 1000): start N sleeping busybox
# containers (NET=none by default, NET=bridge for the default bridge; P=10 at a time), then berthd's
# RSS, the median of 10 API `GET /containers/json?all=1` and of 10 `GET /containers/{id}/json`
# while they run, and the time of one `rm -f` of all of them. Against a private release berthd.
set -eu
cd "$(dirname "$0")/.."
NET=${NET:-none}
P=${P:-10}
. bench/berthd.sh
"$BIN/berth" import "$(ls target/debug/e2e-busybox.tar 2>/dev/null || echo /dev/null)" busybox >/dev/null 2>&1 \
  || scripts/mk-busybox-tar.sh | "$BIN/berth" import - busybox >/dev/null
now() { date +%s.%N; }
median_ms() { # command... : the median wall time of 10 runs, in ms
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    s=$(now); "$@" >/dev/null; e=$(now); echo "$s $e"
  done | awk '{print ($2 - $1) * 1000}' | sort -n | awk '{a[NR]=$1} END {printf "%.1f", (a[5] + a[6]) / 2}'
}
for N in ${SIZES:-100 1000}; do
  s=$(now)
  seq "$N" | xargs -P "$P" -n 1 sh -c "\"$BIN/berth\" -H unix://$SOCK run -d --network $NET busybox sleep 3600 >/dev/null"
  e=$(now)
  running=$("$BIN/berth" -H "unix://$SOCK" ps -q | wc -l)
  one=$("$BIN/berth" -H "unix://$SOCK" ps -q | head -1)
  rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/$PID/status)
  list=$(median_ms curl -s --unix-socket "$SOCK" http://x/containers/json?all=1)
  insp=$(median_ms curl -s --unix-socket "$SOCK" "http://x/containers/$one/json")
  s2=$(now)
  "$BIN/berth" -H "unix://$SOCK" rm -f $("$BIN/berth" -H "unix://$SOCK" ps -aq) >/dev/null
  e2=$(now)
  left=$("$BIN/berth" -H "unix://$SOCK" ps -aq | wc -l)
  echo "N=$N ($NET): started $running in $(echo "$e - $s" | bc) s; berthd RSS $rss MB; API list $list ms, inspect $insp ms; rm -f all $(echo "$e2 - $s2" | bc) s ($left left)"
done
