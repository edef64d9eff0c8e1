#!/bin/sh
# install.sh importer|transformer — installs one daemon of this barge release: its binary in
# /usr/local/bin, its systemd unit, and the README as its documentation. Run as root from the
# extracted release (cloud-init's user data does), then `systemctl enable --now barge-<role>`.
# DESTDIR=/some/root installs under that root instead and skips systemctl (for checks).
set -eu

role=${1:-}
case "$role" in
  importer | transformer) ;;
  *)
    echo "usage: $0 importer|transformer" >&2
    exit 2
    ;;
esac
release=$(cd "$(dirname "$0")" && pwd)
root=${DESTDIR:-}

install -D -m 0755 "$release/bin/$role" "$root/usr/local/bin/$role"
install -D -m 0644 "$release/systemd/barge-$role.service" "$root/etc/systemd/system/barge-$role.service"
install -D -m 0644 "$release/README.md" "$root/usr/local/share/doc/barge/README.md"
install -d -m 0755 "$root/etc/barge"
if [ -z "$root" ]; then
  systemctl daemon-reload
fi
echo "installed barge $role from $release"
