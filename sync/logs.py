"""Structured logging for the daemon: text or one JSON object per line, with context.

Every line logged while a pass runs carries ``account`` (set by the daemon around the
pass) and ``item`` (set by the Applier around each action), whichever thread or module
logs it: they live in context variables, and ``ContextFilter`` copies them onto each
record. Modules keep using plain ``logging.getLogger(__name__)``; nothing has to pass
the account around just to log it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

current_account: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "account", default=None
)
current_item: contextvars.ContextVar[str | None] = contextvars.ContextVar("item", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(account)s %(item)s] %(message)s"


@contextlib.contextmanager
def log_context(*, account: str | None = None, item: str | None = None) -> Iterator[None]:
    """Set the account and/or item for every log line inside the block (this thread only)."""
    tokens = []
    if account is not None:
        tokens.append((current_account, current_account.set(account)))
    if item is not None:
        tokens.append((current_item, current_item.set(item)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Adds ``account`` and ``item`` ("-" when unset) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "account"):
            record.account = current_account.get() or "-"
        if not hasattr(record, "item"):
            record.item = current_item.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers (Loki, Elasticsearch) index without parsing."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "account": getattr(record, "account", "-"),
            "item": getattr(record, "item", "-"),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(fmt: str = "text", level: str | int = "INFO") -> None:
    """Replace the root handlers with one stderr handler in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Per-request access lines would drown the sync log; errors still come through.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(
        logging.WARNING if root.level <= logging.INFO else root.level
    )
