#!/usr/bin/env bash
# Put Compose v2 beside Debian bookworm's Compose 1.29 without replacing it, and print the v2 binary's path.
#
#   docker/compose-v2.sh [DIR]          # default .cache/compose-v2
#
# Bookworm ships only Compose 1.29 and no registry or GitHub release is in reach here; Debian trixie packages
# Compose v2 (docker-compose 2.26.x). apt fetches that package from the mirror (SPOTDIFF_DEBIAN_MIRROR) with its
# own lists and cache under DIR, so the download is checked against Debian's archive key and the host's apt state
# is untouched; the package is unpacked into DIR, not installed. The binary is the Docker CLI plugin, which also
# runs standalone (`DIR/docker-compose up ...`); copied into ~/.docker/cli-plugins it is `docker compose`.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=${1:-.cache/compose-v2}
mirror=${SPOTDIFF_DEBIAN_MIRROR:-http://deb.debian.org/debian}
binary=$dest/docker-compose
if [ -x "$binary" ]; then
    echo "$binary"
    exit 0
fi
command -v apt-get >/dev/null || { echo "no apt-get: install Compose v2 from docs.docker.com instead" >&2; exit 3; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$dest"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$work/sources.list"
apt=(apt-get -q -o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
"${apt[@]}" update >&2
(cd "$work" && "${apt[@]}" download docker-compose >&2)
dpkg-deb -x "$work"/docker-compose_*.deb "$work/root"
install -m 0755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" "$binary"
"$binary" version >&2
echo "$binary"
