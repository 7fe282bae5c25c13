# Sourced by the benchmarks: builds release binaries and starts a private berthd on a temp root
# (own socket, cgroup parent and bridge), stopped and removed when the script exits.
# Sets BIN, ROOT, SOCK, PID and DOCKER_HOST.
# BIN=<dir> runs other binaries as they are (a previous commit's, for interleaved comparisons).
if [ -z "${BIN:-}" ]; then
  cargo build --release --bins -q
  BIN=$PWD/target/release
fi
# FAVOR=1 (default): berthd runs with --cgroup-favordynmods (container starts and execs skip the
# kernel's RCU grace period in the cgroup attach; a host-wide kernel setting, see the README), when
# the binary has the flag. FAVOR=0 measures without it — on a kernel that has not had it on since boot.
FAVOR_ARG=
if [ "${FAVOR:-1}" = 1 ] && "$BIN/berthd" --help 2>/dev/null | grep -q cgroup-favordynmods; then
  FAVOR_ARG=--cgroup-favordynmods
fi
ROOT=$(mktemp -d /tmp/berth-bench-XXXXXX)
SOCK=$ROOT/b.sock
export DOCKER_HOST=unix://$SOCK
"$BIN/berthd" --data-root "$ROOT/data" --exec-root "$ROOT/run" -H "unix://$SOCK" \
  --cgroup-parent "/berth-bench-$$" --bridge "bb$$" --config-file /nonexistent --log-level ${BERTHD_LOG:-warn} $FAVOR_ARG ${BERTHD_ARGS:-} 2>"$ROOT/berthd.log" &
PID=$!
cleanup() {
  # Containers first: their shims outlive berthd by design and would keep mounts and cgroups.
  ids=$("$BIN/berth" -H "unix://$SOCK" ps -aq 2>/dev/null || true)
  [ -n "$ids" ] && "$BIN/berth" -H "unix://$SOCK" rm -f $ids >/dev/null 2>&1
  kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; nft delete table ip "berth_bb$$" 2>/dev/null || true
  for d in /sys/fs/cgroup/*/berth-bench-$$ /sys/fs/cgroup/berth-bench-$$; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -rf "$ROOT"; }
trap cleanup EXIT
until "$BIN/berth" -H "unix://$SOCK" version >/dev/null 2>&1; do
  kill -0 "$PID" 2>/dev/null || { echo "berthd exited:" >&2; cat "$ROOT/berthd.log" >&2; exit 1; }
  sleep 0.05
done
