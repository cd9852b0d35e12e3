"""The options every command group shares, and opening what they name.

``--config`` (found by ``sync.config.find_config`` when not given), ``--database`` (or
``$FOLLOWUP_SYNC_DATABASE``) and ``--account``, declared once here so each command
shows the same flag with the same help; ``open_settings`` and ``open_database`` turn
them into the settings and the state database the same way in every command.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from sync.config import (
    APP_NAME,
    CONFIG_ENV,
    CONFIG_NAME,
    SYSTEM_CONFIG,
    Settings,
    find_config,
    load_settings,
)
from sync.state.db import Database

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def database_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--database",
        "database",
        metavar="URL|PATH",
        envvar="FOLLOWUP_SYNC_DATABASE",
        help="State database: a SQLite file path or a SQLAlchemy URL "
        "(postgresql+psycopg://…). Default: followup-sync.sqlite, or the config's 'database'.",
    )(func)


def _found_config(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    found = find_config(value)
    return str(found) if found is not None else None


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        callback=_found_config,
        help=(
            "TOML config file with [accounts.NAME] tables. Default: the first that exists "
            f"of ${CONFIG_ENV}, {CONFIG_NAME} in the user's config directory "
            f"(~/.config/{APP_NAME}/ on Linux, or $XDG_CONFIG_HOME/{APP_NAME}/), {SYSTEM_CONFIG}."
        ),
    )(func)


def account_option(help: str) -> Decorator:
    """``--account NAME`` (into ``account_name``); ``help`` says what leaving it out means."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        return click.option("--account", "account_name", metavar="NAME", help=help)(func)

    return decorate


def open_settings(config_path: str | None) -> Settings | None:
    """The config file's settings; None without a file (the command runs on its flags)."""
    return load_settings(config_path) if config_path else None


def settings_or_defaults(config_path: str | None) -> Settings:
    """The config file's settings, or the defaults (no account) when there is no file."""
    return load_settings(config_path) if config_path else Settings()


def open_database(
    settings: Settings | None, database: str | None, *, create: bool = True
) -> Database:
    """The state database, never migrated (``db upgrade`` does that).

    ``create=False`` for commands that only read: a missing or empty database is an
    error (exit 2) instead of a new empty file and an empty answer.
    """
    location = settings.database_location(database) if settings else database
    return Database.open(location, create=create)
