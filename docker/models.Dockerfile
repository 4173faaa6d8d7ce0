# The model image: one of the model services per container (SERVICE=generation|similarity|regions|captioning).
# BASE_IMAGE: as in light.Dockerfile.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_NO_INDEX
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
WORKDIR /src
# the heavy, rarely changing dependencies first, in a layer of their own
COPY pyproject.toml ./
RUN python3 -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(d['dependencies'] + d['optional-dependencies']['models']))" > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt
COPY README.md ./
COPY spotdiff ./spotdiff
COPY httpkit ./httpkit
COPY services ./services
RUN /opt/venv/bin/pip install --no-deps .

FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    HOME=/tmp/home XDG_CACHE_HOME=/tmp/cache SERVICE=similarity PORT=8100
# the models volume starts owned by the user the processes run as (the fetch job writes it)
RUN mkdir -p /models && chown 10001:10001 /models
WORKDIR /app
USER 10001:10001
EXPOSE 8100
# ready, not only alive: a service is healthy once its model is loaded and warmed up
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
    CMD ["sh", "-c", "python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT}/readyz', timeout=4)\""]
CMD ["sh", "-c", "exec spotdiff serve-service \"$SERVICE\" --host 0.0.0.0 --port \"$PORT\""]
