"""Where a secret comes from: an environment variable, a file, the system keyring, or a command.

The config file names the source, never the secret, so it can be committed and shown. A
secret is read when a connection is made and handed straight to the HTTP layer; it is
never stored on a settings object, logged, or put into an error message. Errors name the
account, the key and the source (the variable, the path, the keyring entry, the command's
program), which is what a user needs to fix it.

``command`` runs a program and takes the first line of its output, as vdirsyncer's
``fetch = ["command", …]`` does, so ``pass``, ``secret-tool``, ``op`` or ``vault`` keep
the secret. The command is a list (no shell), run with a timeout.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from sync.errors import ConfigError
from sync.extras import MissingExtra

__all__ = ["COMMAND_TIMEOUT_SECONDS", "read_secret"]

#: A password manager waiting for a passphrase on a terminal nobody sees must not hang a pass.
COMMAND_TIMEOUT_SECONDS = 30.0


def read_secret(
    owner: str,
    key: str,
    *,
    env: str | None = None,
    file: str | None = None,
    keyring: str | None = None,
    command: Sequence[str] | None = None,
    keyring_user: str | None = None,
) -> str | None:
    """The secret from the one source given, or None when no source is configured.

    ``owner`` and ``key`` name the setting in errors ("account 'alice'", "password").
    ``keyring`` is ``"service:user"``, or ``"service"`` with ``keyring_user`` as the user.
    """
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{owner}: environment variable {env} ({key}) is not set")
        return value
    if file:
        return _from_file(owner, key, Path(file).expanduser())
    if keyring:
        return _from_keyring(owner, key, keyring, keyring_user)
    if command:
        return _from_command(owner, key, list(command))
    return None


def _from_file(owner: str, key: str, path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{owner}: cannot read {key} file {path}: {exc.strerror}") from None


def _from_keyring(owner: str, key: str, reference: str, default_user: str | None) -> str:
    service, _, user = reference.partition(":")
    user = user or (default_user or "")
    try:  # optional extra: keyring
        import keyring
        from keyring.errors import KeyringError
    except ImportError as exc:  # the keyring extra
        raise MissingExtra("keyring", f"{owner}: {key} from the keyring", exc) from None
    try:
        value = keyring.get_password(service, user)
    except KeyringError as exc:
        raise ConfigError(
            f"{owner}: keyring lookup {service}:{user} ({key}) failed: {exc}"
        ) from None
    if value is None:
        raise ConfigError(f"{owner}: no {key} for {service}:{user} in the keyring")
    return value


def _from_command(owner: str, key: str, command: list[str]) -> str:
    """The first line the command prints; its exit status and error text explain a failure."""
    program = command[0]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise ConfigError(f"{owner}: {key} command {program!r} not found") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"{owner}: {key} command {program!r} did not finish in {COMMAND_TIMEOUT_SECONDS:g} s"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{owner}: cannot run {key} command {program!r}: {exc.strerror}"
        ) from None
    if done.returncode != 0:
        # stderr explains the failure ("foo is not in the password store"); stdout, which
        # might hold part of a secret, is never shown.
        reason = done.stderr.strip().splitlines()[-1][:200] if done.stderr.strip() else ""
        raise ConfigError(
            f"{owner}: {key} command {program!r} exited with status {done.returncode}"
            + (f": {reason}" if reason else "")
        )
    lines = done.stdout.splitlines()
    if not lines or not lines[0].strip():
        raise ConfigError(f"{owner}: {key} command {program!r} printed nothing")
    return lines[0].strip()
