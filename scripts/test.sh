#!/bin/sh
# The whole test suite: lints, unit tests, and the end-to-end suites against real berthd daemons
# (each test starts its own on a temp root). Needs root. CI runs exactly this.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test.sh must run as root (the e2e suites create namespaces, mounts, cgroups)" >&2; exit 1; }
sh scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The e2e suites run the built binaries (berthd, berth-shim, berth), so build them first.
cargo build --workspace --bins --locked
# --include-ignored: the tests marked `needs root` run too (this script runs as root).
cargo test --workspace --locked --no-fail-fast -- --include-ignored --test-threads="${BERTH_TEST_THREADS:-4}"
