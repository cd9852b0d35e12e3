# followup-sync: the daemon image (docker-compose.yml builds it as service "daemon").
#   docker build -t followup-sync .
#   docker run --rm -v $PWD/config/followup-sync.compose.toml:/etc/followup-sync/config.toml:ro \
#       followup-sync daemon --config /etc/followup-sync/config.toml
FROM python:3.11-slim

# No .pyc files in the image layer, logs straight to the container log.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY mappings ./mappings
COPY sync ./sync
RUN pip install --no-cache-dir . \
    && useradd --system --home-dir /var/lib/followup-sync --create-home followup-sync

# The SQLite quick start writes here; with PostgreSQL nothing is written locally.
WORKDIR /var/lib/followup-sync
USER followup-sync
EXPOSE 8484
HEALTHCHECK --interval=30s --timeout=5s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8484/healthz', timeout=4)"
ENTRYPOINT ["followup-sync"]
CMD ["daemon", "--config", "/etc/followup-sync/config.toml"]
