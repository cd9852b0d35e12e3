"""The HTTP API served for real in a test: uvicorn in a thread of this process, on loopback.

Shared by the API suites (and ``tests/test_inputs_and_limits.py``), which speak to the app
only over HTTP, as a CRM integration would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import schemathesis
import uvicorn

from tests.servers import HOST, free_port

#: How long uvicorn may take to listen before the test fails.
START_TIMEOUT = 10.0


@contextmanager
def serve(
    app: Any, *, config: Callable[..., uvicorn.Config] = uvicorn.Config, **options: Any
) -> Iterator[str]:
    """Serve ``app`` on a free loopback port until the block ends; yields its base URL.

    ``config`` builds the uvicorn configuration (``sync.api.limits.server_config`` for the
    set-up the daemon uses) from the app, host, port, log level and ``options``.
    """
    port = free_port()
    server = uvicorn.Server(config(app, host=HOST, port=port, log_level="warning", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def send_case(
    client: httpx.Client,
    case: schemathesis.Case,  # type: ignore[type-arg]
    base_url: str,
    headers: dict[str, str],
) -> httpx.Response:
    """Send one generated case with httpx.

    Not with schemathesis' own transport (requests): it trips over the urllib3-future that
    caldav's niquests installs in this environment.
    """
    kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
    return client.request(
        kwargs["method"],
        kwargs["url"],
        headers=kwargs.get("headers"),
        params=kwargs.get("params"),
        content=kwargs.get("data"),
        json=kwargs.get("json"),
    )
