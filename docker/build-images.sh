#!/usr/bin/env bash
# Build spotdiff's images (light: gateway and workers; models: the model services) on a Python 3.11 base.
#
#   docker/build-images.sh                 # base from docker/base-image.sh (registry image, else a local one)
#   BASE_IMAGE=python:3.11-slim@sha256:... docker/build-images.sh
#
# PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_TRUSTED_HOST and PIP_NO_INDEX, when set, reach the build (a package
# mirror); the build runs on the host's network so that a mirror on the host's loopback is reachable. Where no
# registry serves redis:7.4.2 either, a Redis image is built from Debian's packages and its name printed as
# SPOTDIFF_REDIS_IMAGE=... for Compose.
set -euo pipefail
cd "$(dirname "$0")/.."

base=${BASE_IMAGE:-$(docker/base-image.sh)}
version=$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
args=(--network host --build-arg "BASE_IMAGE=$base")
for name in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_TRUSTED_HOST PIP_NO_INDEX; do
    if [ -n "${!name:-}" ]; then args+=(--build-arg "$name=${!name}"); fi
done

echo "base image: $base" >&2
docker build "${args[@]}" -f docker/light.Dockerfile -t "spotdiff-light:$version" . >&2
docker build "${args[@]}" -f docker/models.Dockerfile -t "spotdiff-models:$version" . >&2

redis=${SPOTDIFF_REDIS_IMAGE:-redis:7.4.2}
if ! docker image inspect "$redis" >/dev/null 2>&1 && ! timeout 60 docker pull --quiet "$redis" >/dev/null 2>&1; then
    redis=spotdiff-redis:debian
    docker build --network host --build-arg "BASE_IMAGE=$base" -f docker/redis.Dockerfile -t "$redis" . >&2
fi
echo "SPOTDIFF_REDIS_IMAGE=$redis"
