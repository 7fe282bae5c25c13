#!/bin/sh
# Build benchmark (numbers, not pass/fail), as issue #9 specifies: a Dockerfile with 5 RUN steps and
# a 50 MB COPY context, built cold (median of COLD=3), then rebuilt fully cached, then rebuilt after one source file
# changed (COPY and the RUNs after it run again). `docker build` with DOCKER_BUILDKIT=0 (the classic
# builder protocol) against a private release berthd on a temp root; with BUILDX=<path of docker-buildx>,
# the same again through buildx's docker driver (BuildKit's /grpc + /session), from a cold cache.
set -eu
cd "$(dirname "$0")/.."
MB=${MB:-50}
RUNS=${RUNS:-5}
. bench/berthd.sh
sh scripts/mk-busybox-tar.sh "$ROOT/bb.tar" >/dev/null
docker import "$ROOT/bb.tar" busybox >/dev/null
CTX=$ROOT/ctx
mkdir -p "$CTX/data"
# 50 files of 1 MB of incompressible data.
i=0
while [ $i -lt "$MB" ]; do
  head -c 1048576 /dev/urandom > "$CTX/data/f$i"
  i=$((i + 1))
done
cat > "$CTX/Dockerfile" <<EOF
FROM busybox
RUN echo one > /one
RUN echo two > /two
COPY data /data
RUN du -s /data > /du
RUN ls /data | wc -l > /count
RUN echo done > /done
EOF
now() { date +%s.%N; }
measure() { # $1: label; the docker build command is "$@" after it
  label=$1; shift
  # Cold: the median of COLD builds from an empty cache, each after the page cache is written
  # back (so the context this script just wrote is not flushed during the build being timed).
  colds=""
  i=0
  while [ $i -lt "${COLD:-3}" ]; do
    docker image rm -f bench:build >/dev/null 2>&1 || true
    docker builder prune -af >/dev/null 2>&1 || true
    sync
    t0=$(now); "$@" -q -t bench:build "$CTX" >/dev/null 2>&1; t1=$(now)
    colds="$colds $(echo "$t1 - $t0" | bc -l)"
    i=$((i + 1))
  done
  cold=$(echo "$colds" | tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  best=999
  i=0
  while [ $i -lt "$RUNS" ]; do
    a=$(now); "$@" -q -t bench:build "$CTX" >/dev/null 2>&1; b=$(now)
    best=$(echo "$b - $a" | bc -l | awk -v m="$best" '{ print ($1 < m) ? $1 : m }')
    i=$((i + 1))
  done
  head -c 1048576 /dev/urandom > "$CTX/data/f0"
  t2=$(now); "$@" -q -t bench:build "$CTX" >/dev/null 2>&1; t3=$(now)
  printf '%s\n' "$label"
  printf '  cold build       %.2f s (median of %s)\n' "$cold" "${COLD:-3}"
  printf '  cached rebuild   %.3f s (best of %s)\n' "$best" "$RUNS"
  printf '  one file changed %.2f s\n' "$(echo "$t3 - $t2" | bc -l)"
}
printf 'context %s MB in %s files, 5 RUN steps\n' "$MB" "$MB"
measure "classic (DOCKER_BUILDKIT=0)" env DOCKER_BUILDKIT=0 docker build
if [ -n "${BUILDX:-}" ]; then
  CFG=$ROOT/docker-config
  mkdir -p "$CFG/cli-plugins"
  ln -s "$BUILDX" "$CFG/cli-plugins/docker-buildx"
  measure "buildx $("$BUILDX" version | awk '{print $2}') (BuildKit API)" env -u DOCKER_BUILDKIT DOCKER_CONFIG="$CFG" docker build
fi
