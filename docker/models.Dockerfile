# The model image: one of the four services per container (SERVICE=generation|similarity|regions|captioning).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    HOME=/tmp/home XDG_CACHE_HOME=/tmp/cache SERVICE=similarity PORT=8100
WORKDIR /app
COPY pyproject.toml README.md ./
COPY spotdiff ./spotdiff
COPY httpkit ./httpkit
COPY services ./services
RUN pip install --no-cache-dir ".[models]"
USER 1000
EXPOSE 8100
CMD ["sh", "-c", "exec spotdiff serve-service \"$SERVICE\" --host 0.0.0.0 --port \"$PORT\""]
