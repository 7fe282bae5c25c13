#!/bin/sh
# Installs the system packages Berth needs to build and test, only those not yet present.
# Sourced by setup.sh and test.sh; safe to run again.
set -eu
PKGS="libseccomp-dev pkg-config busybox-static skopeo docker-registry"
missing=""
for p in $PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "berth: installing$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $missing >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "berth: cargo is required (rustup toolchain)" >&2; exit 1; }
command -v docker >/dev/null 2>&1 || echo "berth: note: the docker CLI is not installed; the e2e tests need it" >&2
