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
from hypothesis import HealthCheck, given, settings

from tests.servers import HOST, free_port

#: How long uvicorn may take to listen before the test fails.
START_TIMEOUT = 10.0

#: What a fuzz check says of one answer: what is wrong with it, or None.
Judge = Callable[[schemathesis.Case, httpx.Response], str | None]  # type: ignore[type-arg]


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


def fuzz(
    operations: list[Any],
    base_url: str,
    headers: dict[str, str],
    *,
    max_examples: int,
    judge: Judge,
) -> list[str]:
    """Send up to ``max_examples`` generated cases of each operation and return what
    ``judge`` found wrong with the answers.

    Driven by hand (not ``schema.parametrize``) because schemathesis' pytest plugin does
    not support the pytest this project uses; the generated cases are the same, and
    derandomized, so a run replays.
    """
    failures: list[str] = []
    with httpx.Client(timeout=10) as client:
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=max_examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
                wrong = judge(case, send_case(client, case, base_url, headers))
                if wrong is not None:
                    failures.append(wrong)

            check()
    return failures
