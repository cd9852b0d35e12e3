"""Sign-in and transport flags of ``followup-sync sync``: the account keys of the same names.

With ``--url`` they describe the one-off account; with ``--config`` they replace the chosen
account's keys for this run (a different proxy, a CA bundle while testing). Secrets are
named (a variable, a file, a command), never given on the command line, where ``ps`` and
shell history would show them.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

import click
from pydantic import ValidationError

from sync.config import Account
from sync.errors import ConfigError

__all__ = ["SIGN_IN_FLAGS", "apply_sign_in", "sign_in_options"]

_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--password-command",), {"metavar": "COMMAND",
        "help": "Program printing the password, e.g. 'pass show dav/alice' (no shell)."}),
    (("--auth",), {"type": click.Choice(["basic", "digest", "bearer", "oauth2"]),
        "help": "Sign-in scheme (default basic; bearer takes the token as the password)."}),
    (("--ca-bundle",), {"metavar": "PEM", "help": "Trust these CAs instead of the system's."}),
    (("--client-cert",), {"metavar": "PEM", "help": "TLS client certificate."}),
    (("--client-key",), {"metavar": "PEM", "help": "Key of the client certificate."}),
    (("--pin-sha256",), {"metavar": "HEX", "help": "Accept only this server certificate."}),
    (("--proxy",), {"metavar": "URL", "help": "HTTP(S) proxy (default: HTTPS_PROXY etc.)."}),
    (("--oauth-token-url",), {"metavar": "URL", "help": "OAuth 2.0 token endpoint."}),
    (("--oauth-client-id",), {"metavar": "ID", "help": "OAuth 2.0 client id."}),
    (("--oauth-client-secret-env",), {"metavar": "VAR",
        "help": "Environment variable holding the OAuth client secret."}),
    (("--oauth-refresh-token-env",), {"metavar": "VAR",
        "help": "Environment variable holding the OAuth refresh token."}),
    (("--oauth-refresh-token-file",), {"metavar": "PATH",
        "help": "File holding the OAuth refresh token."}),
]  # fmt: skip

#: The keyword names click passes for these flags.
SIGN_IN_FLAGS = tuple(names[0].lstrip("-").replace("-", "_") for names, _ in _OPTIONS)


def sign_in_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for names, settings in reversed(_OPTIONS):
        func = click.option(*names, **settings)(func)
    return func


def apply_sign_in(account: Account, flags: dict[str, Any]) -> Account:
    """The account with the given flags' keys replaced, validated as the config file is."""
    given = {k: v for k, v in flags.items() if k in SIGN_IN_FLAGS and v is not None}
    if not given:
        return account
    values = account.model_dump(exclude_unset=True)
    if "password_command" in given:
        for key in ("password_env", "password_file", "password_keyring"):
            values.pop(key, None)
        values["password_command"] = shlex.split(given.pop("password_command"))
    oauth = {
        "token_url": given.pop("oauth_token_url", None),
        "client_id": given.pop("oauth_client_id", None),
        "client_secret": _env(given.pop("oauth_client_secret_env", None)),
        "refresh_token": _env(given.pop("oauth_refresh_token_env", None))
        or ({"file": f} if (f := given.pop("oauth_refresh_token_file", None)) else None),
    }
    if any(oauth.values()):
        values["oauth2"] = {**(values.get("oauth2") or {}), **{k: v for k, v in oauth.items() if v}}
        values.setdefault("auth", "oauth2")
    values.update(given)
    try:
        return Account.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'account'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"account {account.name!r}: {problems}") from None


def _env(name: str | None) -> dict[str, str] | None:
    return {"env": name} if name else None
