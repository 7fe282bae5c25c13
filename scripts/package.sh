#!/bin/sh
# Builds the Debian package dist/berth_<version>_<arch>.deb: berthd, berth, berth-shim,
# berth-registry, the systemd units, /etc/berth/{daemon.json,registry.toml} as conffiles, shell
# completions (bash, zsh, fish) and man pages generated from the clap definitions, and the
# maintainer scripts (the `berth` group; the socket enabled where systemd runs; the data root
# kept unless purged). Depends on tini (tini-static for --init), nftables, libseccomp2.
#
#   sh scripts/package.sh                  release build, then the package in dist/
#   BERTH_BIN_DIR=target/debug OUT=/tmp/x DEB_COMPRESSION=none sh scripts/package.sh
#                                          package binaries already built, uncompressed
set -eu
cd "$(dirname "$0")/.."
command -v dpkg-deb >/dev/null || { echo "package.sh needs dpkg-deb (Debian)" >&2; exit 1; }
if [ -z "${BERTH_BIN_DIR:-}" ]; then
    cargo build --release --locked --bins
    BERTH_BIN_DIR=target/release
fi
BIN=$BERTH_BIN_DIR
OUT=${OUT:-dist}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d)
chmod 0755 "$STAGE"
trap 'rm -rf "$STAGE"' EXIT

for b in berthd berth berth-shim berth-registry; do
    install -D -m 0755 "$BIN/$b" "$STAGE/usr/bin/$b"
    # As dh_strip does: debug sections do not belong in the package (a debug build's are
    # hundreds of MB).
    strip --strip-unneeded "$STAGE/usr/bin/$b"
done
for u in berth.service berth.socket berth-registry.service; do
    install -D -m 0644 "packaging/systemd/$u" "$STAGE/lib/systemd/system/$u"
done
install -D -m 0644 packaging/daemon.json "$STAGE/etc/berth/daemon.json"
install -D -m 0644 packaging/registry.toml "$STAGE/etc/berth/registry.toml"

mkdir -p "$STAGE/usr/share/bash-completion/completions" "$STAGE/usr/share/zsh/vendor-completions" \
    "$STAGE/usr/share/fish/vendor_completions.d" "$STAGE/usr/share/man/man1" "$STAGE/usr/share/man/man8" \
    "$STAGE/usr/share/doc/berth"
"$BIN/berth" completion bash > "$STAGE/usr/share/bash-completion/completions/berth"
"$BIN/berth" completion zsh > "$STAGE/usr/share/zsh/vendor-completions/_berth"
"$BIN/berth" completion fish > "$STAGE/usr/share/fish/vendor_completions.d/berth.fish"
"$BIN/berth" --print-manpage | gzip -9n > "$STAGE/usr/share/man/man1/berth.1.gz"
"$BIN/berthd" --print-manpage | gzip -9n > "$STAGE/usr/share/man/man8/berthd.8.gz"
"$BIN/berth-registry" --print-manpage | gzip -9n > "$STAGE/usr/share/man/man8/berth-registry.8.gz"
gzip -9n < README.md > "$STAGE/usr/share/doc/berth/README.md.gz"

mkdir -p "$STAGE/DEBIAN"
for s in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$s" "$STAGE/DEBIAN/$s"
done
printf '/etc/berth/daemon.json\n/etc/berth/registry.toml\n' > "$STAGE/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: berth
Version: $VERSION
Architecture: $ARCH
Maintainer: Berth developers <berth@localhost>
Installed-Size: $SIZE
Depends: tini, nftables, iproute2, libseccomp2, adduser
Recommends: systemd
Section: admin
Priority: optional
Homepage: https://github.com/berth/berth
Description: container engine that speaks the Docker Engine API
 berthd serves the Docker Engine API on /run/berth/berth.sock (members of the
 berth group may use it: that is root on this host), runs each container under
 its own berth-shim, and pulls, pushes and builds images. berth is a
 docker-compatible client; berth-registry an OCI distribution server.
CONTROL
mkdir -p "$OUT"
DEB="$OUT/berth_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
