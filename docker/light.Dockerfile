# The light image: gateway and Celery workers. No torch, no model libraries: it starts fast and stays small.
# BASE_IMAGE: a Python 3.11 image; pin it by digest where a registry is used (python:3.11-slim@sha256:...), or
# build one from Debian's packages with docker/base-image.sh where none is reachable.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# an optional package mirror for the build (docker/build-images.sh passes the host's, if it has one)
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_NO_INDEX
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
WORKDIR /src
# the dependencies first, in a layer of their own
COPY pyproject.toml ./
RUN python3 -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(d['dependencies'] + d['optional-dependencies']['hf']))" > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt
COPY README.md ./
COPY spotdiff ./spotdiff
COPY httpkit ./httpkit
COPY gateway ./gateway
COPY workers ./workers
RUN /opt/venv/bin/pip install --no-deps .

FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    HOME=/tmp/home XDG_CACHE_HOME=/tmp/cache
# the store volume starts owned by the user the processes run as
RUN mkdir -p /data/store && chown 10001:10001 /data/store
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# the gateway's liveness; a worker's container replaces it with a Celery ping (docker-compose.yml)
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["spotdiff", "serve-gateway", "--host", "0.0.0.0", "--port", "8000"]
