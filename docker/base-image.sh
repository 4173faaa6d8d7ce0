#!/usr/bin/env bash
# Print the name of a Python 3.11 base image that the Dockerfiles can start FROM, making one if need be.
#
# Where the registry's python:3.11-slim is present or can be pulled, that is the base. Where no registry is
# reachable, a Debian bookworm root filesystem (Python 3.11 from Debian's packages) is made with debootstrap
# and imported as spotdiff-base:bookworm; it needs root, debootstrap and a Debian mirror (SPOTDIFF_DEBIAN_MIRROR).
set -euo pipefail

registry_image=${SPOTDIFF_BASE_IMAGE:-python:3.11-slim}
local_image=spotdiff-base:bookworm
mirror=${SPOTDIFF_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$registry_image" >/dev/null 2>&1 ||
    timeout 60 docker pull --quiet "$registry_image" >/dev/null 2>&1; then
    echo "$registry_image"
    exit 0
fi
if docker image inspect "$local_image" >/dev/null 2>&1; then
    echo "$local_image"
    exit 0
fi
command -v debootstrap >/dev/null || {
    echo "no registry image $registry_image and no debootstrap to make $local_image (apt-get install debootstrap)" >&2
    exit 3
}
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
echo "making $local_image from $mirror (no registry image $registry_image)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" >&2
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$local_image" >/dev/null
echo "$local_image"
