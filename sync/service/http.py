"""The daemon's HTTP side: health, readiness, Prometheus metrics, and the follow-up API.

One uvicorn server in a background thread; the main thread keeps the signals. Routes:

``/healthz``  200 while the process runs (a liveness probe: restart me if this fails)
``/readyz``   200 when the database answers, its schema is current and the scheduler
              runs; 503 with the failing checks otherwise (a readiness probe)
``/metrics``  Prometheus text format (sync.service.metrics)
``/crm/superoffice/ACCOUNT``  SuperOffice ``activity.*`` webhooks (signature checked; a
              hint that queues the account's pass: sync.crm.superoffice.webhooks)

The follow-up REST API (``sync.api.app.create_app``) is mounted on the same server, under
its own paths, when a token is configured (``[daemon] api_token_env``); without one the
API stays off and a log line says so: an API without authentication is never served.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from sync.api.limits import server_config
from sync.config import DEFAULT_READ_TIMEOUT
from sync.crm.superoffice.webhooks import check_delivery
from sync.service.daemon import Daemon

log = logging.getLogger(__name__)


def create_service_app(daemon: Daemon) -> FastAPI:
    app = FastAPI(title="followup-sync daemon", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "worker": daemon.worker}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        ok, checks = daemon.ready()
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(daemon.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/crm/superoffice/{account}")
    async def superoffice_webhook(account: str, request: Request) -> Response:
        # A hint only: answered at once; the pass it queues reads the CRM itself.
        settings = daemon.accounts.get(account)
        secret = (
            settings.crm.webhook_secret(f"account {account!r}")
            if settings is not None and settings.crm is not None
            else None
        )
        if secret is None:
            return Response(status_code=404)
        delivery = check_delivery(secret, await request.body(), request.headers)
        if delivery is None:
            return Response(status_code=401)
        if not delivery.test:
            log.info("%s: SuperOffice %s; reconciling it soon", account, delivery.event)
            daemon.request(account, reason="crm")
        return Response(status_code=200)

    mount_followup_api(app, daemon)
    return app


def mount_followup_api(app: FastAPI, daemon: Daemon) -> bool:
    """Serve ``sync.api.app`` on this server when it is installed and a token is set."""
    token_env = daemon.daemon_settings.api_token_env
    token = os.environ.get(token_env, "")
    if not token:
        log.info("follow-up API off: $%s is not set", token_env)
        return False
    try:
        from sync.api.app import create_app  # optional extra: api (fastapi, swagger-ui-bundle)
    except ImportError as exc:  # an install without the API module still runs the daemon
        log.warning("follow-up API not available: %s", exc)
        return False
    # Mounted last, at the root: the routes above win, everything else goes to the API.
    api = create_app(
        daemon.db,
        token=token,
        settings=daemon.settings,
        max_body_bytes=daemon.daemon_settings.api_max_body_bytes,
    )
    app.mount("/", api)
    log.info("follow-up API served with the daemon (token from $%s)", token_env)
    return True


class HttpServer:
    """uvicorn in a thread; ``stop`` asks it to exit and waits."""

    def __init__(
        self, app: FastAPI, host: str, port: int, *, read_timeout: float = DEFAULT_READ_TIMEOUT
    ) -> None:
        config = server_config(
            app,
            host=host,
            port=port,
            read_timeout=read_timeout,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the HTTP server did not start (port in use?)")
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start in time")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
