"""Loopback stand-ins for what sits between a user and a CalDAV server, run as subprocesses.

* ``front``: a reverse proxy (uvicorn serving a small ASGI app, httpx to the upstream) in
  front of a real Radicale. It terminates TLS with a certificate from the test's CA
  (optionally demanding a client certificate) and checks sign-in itself, as a gateway does:
  ``--check pass`` forwards the Authorization header untouched, ``--check bearer`` accepts
  only access tokens that its own OAuth 2.0 token endpoint (``POST /oauth/token``,
  refresh-token grant, RFC 6749 section 6) issued and that have not expired, and
  ``--check digest`` accepts only HTTP Digest (RFC 7616, MD5, qop=auth). Accepted requests
  go upstream with Radicale's Basic login. ``POST /_test/revoke`` drops every access token
  (a server revoking tokens early); ``GET /_test/stats`` counts grants and refusals.
* ``forward``: an HTTP forward proxy (CONNECT tunnels and absolute-form requests), logging
  each request line to ``--log``.

Written for the tests because no PyPI package is a TLS-terminating, token-checking gateway
with its own token endpoint; the pieces that matter (TLS, HTTP parsing, serving) are
uvicorn's, httpx's and the ssl module's. Nothing here imports the project.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import secrets
import ssl
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    "authorization",
}
REALM = "followup-test"


class Gateway:
    """The ASGI app: token endpoint, sign-in check, forwarding."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.upstream = args.upstream.rstrip("/")
        login = f"{args.upstream_user}:{args.upstream_password}".encode()
        self.upstream_auth = "Basic " + base64.b64encode(login).decode()
        self.tokens: dict[str, float] = {}  # access token -> expiry (monotonic)
        self.refresh_tokens = {args.refresh_token} if args.refresh_token else set()
        self.nonces: set[str] = set()
        self.stats = {"grants": 0, "refused_grants": 0, "refused_requests": 0, "forwarded": 0}
        self.client: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        if path == "/oauth/token" and scope["method"] == "POST":
            return await self.token_endpoint(headers, body, send)
        if path == "/_test/revoke":
            self.tokens.clear()
            return await reply(send, 200, b"revoked")
        if path == "/_test/stats":
            return await reply(send, 200, json.dumps(self.stats).encode(), "application/json")
        refusal = self.check(scope["method"], scope, headers)
        if refusal is not None:
            self.stats["refused_requests"] += 1
            return await reply(send, 401, b"sign in", extra=[(b"www-authenticate", refusal)])
        await self.forward(scope, headers, body, send)

    # --- OAuth 2.0 token endpoint (refresh-token grant only) ----------------------------

    async def token_endpoint(self, headers: dict[str, str], body: bytes, send: Any) -> None:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if headers.get("authorization", "").startswith("Basic "):
            raw = base64.b64decode(headers["authorization"][6:]).decode()
            user, _, password = raw.partition(":")
            client_id, client_secret = urllib.parse.unquote(user), urllib.parse.unquote(password)
        if (client_id, client_secret) != (self.args.client_id, self.args.client_secret):
            self.stats["refused_grants"] += 1
            return await oauth_error(send, 401, "invalid_client")
        if form.get("grant_type") != "refresh_token":
            self.stats["refused_grants"] += 1
            return await oauth_error(send, 400, "unsupported_grant_type")
        if form.get("refresh_token") not in self.refresh_tokens:
            self.stats["refused_grants"] += 1
            return await oauth_error(send, 400, "invalid_grant", "unknown or revoked refresh token")
        access = "at-" + secrets.token_urlsafe(24)
        self.tokens[access] = time.monotonic() + self.args.token_lifetime
        self.stats["grants"] += 1
        answer = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.args.token_lifetime,
        }
        await reply(send, 200, json.dumps(answer).encode(), "application/json")

    # --- sign-in checks -----------------------------------------------------------------

    def check(self, method: str, scope: dict[str, Any], headers: dict[str, str]) -> bytes | None:
        """None when the request may pass, else the WWW-Authenticate challenge."""
        given = headers.get("authorization", "")
        if self.args.check == "bearer":
            token = given[7:] if given.startswith("Bearer ") else ""
            expiry = self.tokens.get(token)
            if expiry is not None and expiry > time.monotonic():
                return None
            return f'Bearer realm="{REALM}", error="invalid_token"'.encode()
        if self.args.check == "digest":
            if given.startswith("Digest ") and self.digest_ok(method, given[7:]):
                return None
            nonce = secrets.token_hex(16)
            self.nonces.add(nonce)
            return f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5'.encode()
        return None

    def digest_ok(self, method: str, header: str) -> bool:
        fields = urllib.request.parse_keqv_list(urllib.request.parse_http_list(header))
        if fields.get("nonce") not in self.nonces or fields.get("username") != self.args.user:
            return False

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{self.args.user}:{REALM}:{self.args.password}")
        ha2 = md5(f"{method}:{fields.get('uri', '')}")
        if fields.get("qop") == "auth":
            nc, cnonce = fields.get("nc", ""), fields.get("cnonce", "")
            expected = md5(f"{ha1}:{fields['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        else:
            expected = md5(f"{ha1}:{fields['nonce']}:{ha2}")
        return secrets.compare_digest(expected, fields.get("response", ""))

    # --- forwarding -----------------------------------------------------------------------

    async def forward(
        self, scope: dict[str, Any], headers: dict[str, str], body: bytes, send: Any
    ) -> None:
        import httpx

        if self.client is None:
            self.client = httpx.AsyncClient(timeout=30)
        out = {k: v for k, v in headers.items() if k not in HOP_BY_HOP}
        if self.args.check == "pass":
            if "authorization" in headers:
                out["authorization"] = headers["authorization"]
        else:
            out["authorization"] = self.upstream_auth
        query = scope.get("query_string", b"").decode()
        url = self.upstream + scope["raw_path"].decode() + (f"?{query}" if query else "")
        resp = await self.client.request(scope["method"], url, headers=out, content=body)
        self.stats["forwarded"] += 1
        extra = [
            (k.encode(), v.encode())
            for k, v in resp.headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"
        ]
        await reply(send, resp.status_code, resp.content, None, extra)


async def reply(
    send: Any,
    status: int,
    body: bytes,
    content_type: str | None = "text/plain",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type:
        headers.append((b"content-type", content_type.encode()))
    headers += [(k, v) for k, v in extra or [] if k.lower() != b"content-length"]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def oauth_error(send: Any, status: int, error: str, description: str = "") -> None:
    payload = {"error": error, **({"error_description": description} if description else {})}
    await reply(send, status, json.dumps(payload).encode(), "application/json")


def run_front(args: argparse.Namespace) -> None:
    import uvicorn

    options: dict[str, Any] = {}
    if args.certfile:
        options.update(ssl_certfile=args.certfile, ssl_keyfile=args.keyfile)
    if args.client_ca:
        options.update(ssl_ca_certs=args.client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    uvicorn.run(
        Gateway(args),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        **options,
    )


# --- the forward proxy ---------------------------------------------------------------------


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def handle_proxy_client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log_path: str
) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, _, rest = head.partition(b"\r\n")
    method, target, version = request_line.decode().split(" ", 2)
    with open(log_path, "a") as log:
        log.write(f"{method} {target}\n")
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
    else:
        parts = urllib.parse.urlsplit(target)
        up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        kept = [
            line
            for line in rest.split(b"\r\n")
            if line and not line.lower().startswith((b"proxy-", b"connection:"))
        ]
        # One request per connection: the next one may be for another host.
        up_writer.write(
            f"{method} {path} {version}\r\n".encode()
            + b"\r\n".join([*kept, b"Connection: close"])
            + b"\r\n\r\n"
        )
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def run_forward(args: argparse.Namespace) -> None:
    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: handle_proxy_client(r, w, args.log), "127.0.0.1", args.port
        )
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    front = sub.add_parser("front")
    front.add_argument("--port", type=int, required=True)
    front.add_argument("--upstream", required=True)
    front.add_argument("--upstream-user", default="alice")
    front.add_argument("--upstream-password", default="secret")
    front.add_argument("--check", choices=["pass", "bearer", "digest"], default="pass")
    front.add_argument("--certfile")
    front.add_argument("--keyfile")
    front.add_argument("--client-ca", help="demand a client certificate signed by this CA")
    front.add_argument("--client-id", default="")
    front.add_argument("--client-secret", default="")
    front.add_argument("--refresh-token", default="")
    front.add_argument("--token-lifetime", type=float, default=3600)
    front.add_argument("--user", default="", help="digest user")
    front.add_argument("--password", default="", help="digest password")
    forward = sub.add_parser("forward")
    forward.add_argument("--port", type=int, required=True)
    forward.add_argument("--log", required=True)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    (run_front if arguments.role == "front" else run_forward)(arguments)
