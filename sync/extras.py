"""What to install for an optional part, said when that part is used without it.

The mapper and a one-shot sync need only the core dependencies; PostgreSQL, the system
keyring, the HTTP API (and the daemon's HTTP side) and the demo are extras
(``pip install 'followup-sync[api]'``). The modules of those parts import their
libraries at the top as usual; the command or setting that reaches one imports it
where the user asked for it, and turns a missing library into this error instead of a
traceback.
"""

from __future__ import annotations

from sync.errors import ConfigError

PACKAGE = "followup-sync"


class MissingExtra(ConfigError):
    """An optional part was used but its extra is not installed."""

    def __init__(self, extra: str, what: str, exc: ImportError) -> None:
        self.extra = extra
        module = exc.name or str(exc)
        super().__init__(
            f"{what} needs the Python package {module!r}, which is not installed: "
            f"pip install '{PACKAGE}[{extra}]'"
        )
