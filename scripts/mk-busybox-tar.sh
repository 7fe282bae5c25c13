#!/bin/sh
# Writes a minimal busybox root filesystem as a tar to $1 (or stdout), from Debian's busybox-static.
# No network: the image is made locally, as every Berth test image is.
set -eu
BB=${BUSYBOX:-/bin/busybox}
[ -x "$BB" ] || { echo "busybox-static is not installed ($BB missing)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/etc" "$work/root" "$work/tmp" "$work/proc" "$work/sys" "$work/dev" "$work/usr/bin" "$work/var/www"
cp "$BB" "$work/bin/busybox"
for app in $("$BB" --list); do
  [ "$app" = busybox ] || ln -s busybox "$work/bin/$app"
done
chmod 1777 "$work/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nwww:x:33:33:www:/var/www:/bin/sh\n' > "$work/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\nwww:x:33:\nstaff:x:50:www\n' > "$work/etc/group"
if [ $# -ge 1 ]; then
  tar --numeric-owner -C "$work" -cf "$1" .
else
  tar --numeric-owner -C "$work" -cf - .
fi
