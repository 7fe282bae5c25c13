#!/bin/sh
# Installs the system packages Berth needs to build and test, only those not yet present.
# Sourced by setup.sh and test.sh; safe to run again.
set -eu
PKGS="binutils libseccomp-dev pkg-config nftables tini busybox-static skopeo docker-registry curl openssl python3-pip systemd"
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
# moto's server mode: the local S3-compatible endpoint the registry's S3 driver is tested against.
if ! command -v moto_server >/dev/null 2>&1; then
  echo "berth: installing moto[server] (pip)" >&2
  python3 -m pip install --quiet 'moto[server]==5.2.1' 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages 'moto[server]==5.2.1'
fi
# docker-py and testcontainers: client libraries the e2e tests drive berthd through, unchanged.
if ! python3 -c 'import docker, testcontainers' >/dev/null 2>&1; then
  echo "berth: installing docker-py and testcontainers (pip)" >&2
  python3 -m pip install --quiet 'docker==7.1.0' 'testcontainers==4.15.0' 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages 'docker==7.1.0' 'testcontainers==4.15.0'
fi
command -v cargo >/dev/null 2>&1 || { echo "berth: cargo is required (rustup toolchain)" >&2; exit 1; }
command -v docker >/dev/null 2>&1 || echo "berth: note: the docker CLI is not installed; the e2e tests need it" >&2
