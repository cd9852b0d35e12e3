# followup-sync images. The last stage is the daemon (what `docker build .` gives):
#   docker build -t followup-sync .
#   docker run --rm -v $PWD/config/followup-sync.compose.toml:/etc/followup-sync/config.toml:ro \
#       followup-sync daemon
# docker-compose.yml also builds the "radicale" stage: a CalDAV server to try it against.

# --- the wheel, built from the source tree as `pip install followup-sync` would get it ---
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY mappings ./mappings
COPY sync ./sync
# sync/examples links to these two files: the wheel ships them.
COPY examples ./examples
COPY config/followup-sync.example.toml ./config/
RUN pip install --no-cache-dir build && python -m build --wheel --outdir /dist .

# --- a CalDAV server for trying things out: installed here, once, not at every start ---
FROM python:3.11-slim AS radicale
RUN pip install --no-cache-dir radicale==3.9.0 \
    && useradd --system --create-home radicale \
    && install -d -o radicale /data
USER radicale
EXPOSE 5232
# Users (htpasswd, plain) come from the compose secret "radicale_users".
ENTRYPOINT ["radicale", "--server-hosts", "0.0.0.0:5232", \
            "--storage-filesystem-folder", "/data/collections", \
            "--auth-type", "htpasswd", "--auth-htpasswd-filename", "/run/secrets/radicale_users", \
            "--auth-htpasswd-encryption", "plain", "--rights-type", "owner_only"]

# --- the daemon: the wheel with its HTTP side (health, metrics, API) and PostgreSQL ---
FROM python:3.11-slim

# No .pyc files in the image layer, logs straight to the container log.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

COPY --from=build /dist /dist
RUN wheel="$(ls /dist/followup_sync-*.whl)" \
    && pip install --no-cache-dir "${wheel}[api,postgresql]" \
    && rm -rf /dist \
    && useradd --system --home-dir /var/lib/followup-sync --create-home followup-sync

# The SQLite quick start writes here; with PostgreSQL nothing is written locally.
WORKDIR /var/lib/followup-sync
USER followup-sync
# The default [daemon] http_port; the health check reads the port from the config.
EXPOSE 8484
# `followup-sync health` asks /healthz at the config's [daemon] http_host:http_port (and
# its FOLLOWUP_SYNC_DAEMON__* overrides): no port repeated here. The config is found at
# /etc/followup-sync/config.toml or $FOLLOWUP_SYNC_CONFIG.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s \
    CMD ["followup-sync", "health"]
ENTRYPOINT ["followup-sync"]
CMD ["daemon", "--config", "/etc/followup-sync/config.toml"]
