"""Where the config file is found when ``--config`` is not given.

As tools like vdirsyncer and khal do: ``$FOLLOWUP_SYNC_CONFIG``, then ``config.toml`` in
the user's config directory (``$XDG_CONFIG_HOME/followup-sync`` on Linux, by
``platformdirs`` elsewhere), then ``/etc/followup-sync/config.toml``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from platformdirs import user_config_path

CONFIG_ENV = "FOLLOWUP_SYNC_CONFIG"
APP_NAME = "followup-sync"
CONFIG_NAME = "config.toml"
#: The system-wide file, looked at last.
SYSTEM_CONFIG = Path("/etc") / APP_NAME / CONFIG_NAME


def user_config() -> Path:
    """``config.toml`` in the user's config directory (XDG on Linux)."""
    return user_config_path(APP_NAME) / CONFIG_NAME


def config_search_path(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where a config file is looked for, in order (``$FOLLOWUP_SYNC_CONFIG`` first)."""
    environ = os.environ if environ is None else environ
    places = [Path(environ[CONFIG_ENV]).expanduser()] if environ.get(CONFIG_ENV) else []
    return [*places, user_config(), SYSTEM_CONFIG]


def find_config(
    explicit: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The config file to read: ``explicit`` (``--config``), else the first that exists.

    ``$FOLLOWUP_SYNC_CONFIG`` names a file that must exist: a typo there is an error,
    not a silent fall-through to another file.
    """
    if explicit is not None:
        return Path(explicit)
    environ = os.environ if environ is None else environ
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).expanduser()
    return next((path for path in (user_config(), SYSTEM_CONFIG) if path.is_file()), None)
