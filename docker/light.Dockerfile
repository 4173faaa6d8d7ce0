# The light image: gateway and Celery workers. No torch, no model libraries: it starts fast and stays small.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    HOME=/tmp/home XDG_CACHE_HOME=/tmp/cache
WORKDIR /app
COPY pyproject.toml README.md ./
COPY spotdiff ./spotdiff
COPY httpkit ./httpkit
COPY gateway ./gateway
COPY workers ./workers
RUN pip install --no-cache-dir ".[hf]"
USER 1000
EXPOSE 8000
CMD ["spotdiff", "serve-gateway", "--host", "0.0.0.0", "--port", "8000"]
