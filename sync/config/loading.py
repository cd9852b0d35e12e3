"""Reading the settings: the TOML file, then ``FOLLOWUP_SYNC_…`` environment overrides.

Environment overrides follow the file's structure with ``__`` between levels, so a
container can be configured without editing the mounted file::

    FOLLOWUP_SYNC_DATABASE=postgresql+psycopg://…
    FOLLOWUP_SYNC_DAEMON__HTTP_PORT=9000
    FOLLOWUP_SYNC_ACCOUNTS__ALICE__URL=https://dav2.example.com/

A value is read as a TOML value when it parses as one (``30``, ``true``, ``["a","b"]``)
and as a plain string otherwise. Account names match case-insensitively, since
environment variable names are conventionally upper case. Relative paths in a file (the
SQLite ``database``, ``password_file``) are relative to the file's directory. Every
problem is reported at once, each naming the key and, where the file has it, the line
(or the environment variable that set it).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sync.config.settings import Settings
from sync.errors import ConfigError

ENV_PREFIX = "FOLLOWUP_SYNC_"
#: Separates levels in an override's name: FOLLOWUP_SYNC_ACCOUNTS__ALICE__URL.
ENV_NESTING = "__"
#: FOLLOWUP_SYNC_* variables that are not settings (the CLI reads them itself).
ENV_NOT_SETTINGS = frozenset({"CONFIG", "API_TOKEN"})


def load_settings(path: str | Path | None, *, environ: dict[str, str] | None = None) -> Settings:
    """Read the file, apply ``FOLLOWUP_SYNC_…`` overrides, validate; every problem at once.

    Relative paths the file gives are made relative to the file's directory; those an
    environment variable gives stay relative to the current directory, like any path
    given on a command line.
    """
    environ = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    text = ""
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
            raw = tomllib.loads(text)
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if isinstance(path, Path):
        _anchor_paths(raw, path.parent)
    origins = apply_env_overrides(raw, environ)
    accounts = raw.get("accounts")
    if isinstance(accounts, dict):
        for name, values in accounts.items():
            if isinstance(values, dict):
                values.setdefault("name", name)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(str(part) for part in error["loc"])
            key = ".".join(loc)
            env_name = next(
                (origins[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in origins), None
            )
            if env_name:
                where = f"${env_name}: "
            else:
                line = _line_of(text, list(loc))
                where = f"{path}:{line}: " if line and path else (f"{path}: " if path else "")
            problems.append(f"{where}{key}: {error['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None


def _anchor_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the file's relative ``database`` and ``password_file`` paths relative to ``base``."""

    def anchored(value: str) -> str:
        path = Path(value).expanduser()
        return value if "://" in value or path.is_absolute() else str(base / path)

    for key in ("database", "database_password_file"):
        if isinstance(raw.get(key), str):
            raw[key] = anchored(raw[key])
    accounts = raw.get("accounts")
    tables = list(accounts.values()) if isinstance(accounts, dict) else []
    for table in tables:
        if isinstance(table, dict) and isinstance(table.get("password_file"), str):
            table["password_file"] = anchored(table["password_file"])


def apply_env_overrides(raw: dict[str, Any], environ: dict[str, str]) -> dict[tuple[str, ...], str]:
    """Merge ``FOLLOWUP_SYNC_A__B__C=value`` into ``raw`` as ``raw[a][b][c]``.

    Returns which variable set each key, so a validation error can name the variable
    instead of a file line that does not hold the value. Variables whose first part is
    not a settings key are left alone: other tools (and the CLI's own
    ``FOLLOWUP_SYNC_CONFIG``) share the prefix.
    """
    origins: dict[tuple[str, ...], str] = {}
    top_level = set(Settings.model_fields)
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :]
        if not rest or rest in ENV_NOT_SETTINGS:
            continue
        parts = [p for p in rest.split(ENV_NESTING)]
        if any(not p for p in parts) or parts[0].lower() not in top_level:
            continue
        node = raw
        path: list[str] = []
        for index, part in enumerate(parts):
            key = _match_key(node, part, keep_case=index == 1 and parts[0].lower() == "accounts")
            path.append(key)
            if index == len(parts) - 1:
                node[key] = _env_value(environ[name])
            else:
                child = node.get(key)
                if not isinstance(child, dict):
                    child = {}
                    node[key] = child
                node = child
        origins[tuple(path)] = name
    return origins


def _match_key(node: dict[str, Any], part: str, *, keep_case: bool) -> str:
    """The existing key that ``part`` names (case-insensitive), else its lower-case form."""
    for key in node:
        if key.lower() == part.lower():
            return key
    return part.lower() if not keep_case or part.isupper() else part


def _env_value(value: str) -> Any:
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _line_of(text: str, loc: list[str]) -> int | None:
    """Best effort: the line of the last key named in ``loc`` inside its table."""
    if not text:
        return None
    lines = text.splitlines()
    table_line = 0
    if len(loc) >= 2 and loc[0] == "accounts":
        header = rf"^\s*\[accounts\.\"?{re.escape(loc[1])}\"?\]"
    elif len(loc) >= 2:
        header = rf"^\s*\[{re.escape(loc[0])}\]"
    else:
        header = None
    if header is not None:
        for number, line in enumerate(lines, 1):
            if re.match(header, line):
                table_line = number
                break
    key = loc[-1]
    end = len(lines)
    if table_line:
        # Stay inside the table: the same key in the next table is not this one.
        for number in range(table_line, len(lines)):
            if re.match(r"^\s*\[", lines[number]):
                end = number
                break
    elif header is None:
        # A top-level key lives before the first table.
        end = next((n for n, line in enumerate(lines) if re.match(r"^\s*\[", line)), len(lines))
    for number in range(table_line, end):
        if re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", lines[number]):
            return number + 1
    return table_line or None
