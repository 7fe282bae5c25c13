#!/bin/sh
# issue #24 target 6: berthd's resident memory fresh, right after a burst of work (N=300
# create/start/wait/rm cycles through the API, 8 at a time), after 11 s idle (it has returned freed
# heap to the kernel) and after 65 s idle (it has dropped its code from its resident set too), then
# the time of the first and second `run --rm` after that idle minute (what dropping the code costs).
# Against a private release berthd.
set -eu
cd "$(dirname "$0")/.."
N=${N:-300}
. bench/berthd.sh
"$BIN/berth" import target/debug/e2e-busybox.tar busybox >/dev/null 2>&1 || scripts/mk-busybox-tar.sh | "$BIN/berth" import - busybox >/dev/null
# RSS, and its parts: anonymous memory (heap, stacks) and file-backed pages (berthd's own code).
rss() { awk '/VmRSS|RssAnon|RssFile/ {printf "%s %.1f MB  ", $1, $2/1024}' /proc/$PID/status; }
echo "fresh:        $(rss)"
cycle() {
  id=$(curl -s --unix-socket "$SOCK" -H 'Content-Type: application/json' -d '{"Image":"busybox","Cmd":["true"]}' \
    http://x/containers/create | sed 's/.*"Id":"\([0-9a-f]*\)".*/\1/')
  curl -s -o /dev/null -X POST --unix-socket "$SOCK" "http://x/containers/$id/start"
  curl -s -o /dev/null -X POST --unix-socket "$SOCK" "http://x/containers/$id/wait"
  curl -s -o /dev/null -X DELETE --unix-socket "$SOCK" "http://x/containers/$id"
}
i=0
while [ "$i" -lt "$N" ]; do
  # (wait for these eight only: a bare `wait` would wait for berthd too)
  pids=""
  for _ in 1 2 3 4 5 6 7 8; do cycle & pids="$pids $!"; done
  wait $pids
  i=$((i + 8))
done
echo "after $N runs: $(rss)"
sleep 11
echo "idle 11 s:    $(rss)"
sleep 54
echo "idle 65 s:    $(rss)"
ms() { s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo "$(( (e - s) / 1000000 )) ms"; }
echo "first run --rm after the idle minute: $(ms "$BIN/berth" run --rm --network none busybox true), the next: $(ms "$BIN/berth" run --rm --network none busybox true)"
