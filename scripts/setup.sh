#!/bin/sh
# One command from a fresh machine to a running berthd and a first container:
# installs packages, builds (release), starts berthd on /run/berth/berth.sock, imports a local
# busybox image (no network) and runs `docker run --rm busybox echo hello` against it.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "setup.sh must run as root (containers need namespaces, mounts, cgroups)" >&2; exit 1; }
sh scripts/deps.sh
cargo build --release --bins
BIN=$PWD/target/release
SOCK=/run/berth/berth.sock
export DOCKER_HOST=unix://$SOCK
if [ -S "$SOCK" ] && "$BIN/berth" version >/dev/null 2>&1; then
  echo "berthd is already running on $SOCK"
else
  mkdir -p /run/berth /var/log
  nohup "$BIN/berthd" --pidfile /run/berth/berthd.pid >/var/log/berthd.log 2>&1 &
  i=0
  until "$BIN/berth" version >/dev/null 2>&1; do
    i=$((i+1)); [ $i -lt 100 ] || { echo "berthd did not start; see /var/log/berthd.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "berthd started (pid $(cat /run/berth/berthd.pid), log /var/log/berthd.log)"
fi
if ! "$BIN/berth" images -q | grep -q .; then
  sh scripts/mk-busybox-tar.sh | "$BIN/berth" import - busybox
fi
if command -v docker >/dev/null 2>&1; then
  docker run --rm busybox echo hello
else
  "$BIN/berth" run --rm busybox echo hello
fi
echo
echo "Ready. Use it with:  export DOCKER_HOST=unix://$SOCK   (docker, docker-py, compose)"
echo "               or:   $BIN/berth ps -a"
echo "Stop berthd with:    kill \$(cat /run/berth/berthd.pid)"
