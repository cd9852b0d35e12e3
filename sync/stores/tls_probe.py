"""Did the server ask for a client certificate? One fresh TLS handshake tells.

With TLS 1.3 the client's side of the handshake is over before the server looks at the
client's (empty) certificate, so a front that demands one refuses only after the request
has been sent: with an alert ("certificate required") when that alert is read in time,
otherwise the connection is simply gone ("Remote end closed connection without
response", a reset) and the error itself says nothing about certificates. Which of the
two a user sees depends on timing, so the wording cannot rest on the error alone.

To tell a front that wants a certificate from any other hang-up, we handshake once more
and watch for the server's CertificateRequest. Python's ssl module reports handshake
messages only through ``SSLContext._msg_callback`` (private, present since Python 3.8);
no well-kept library exposes OpenSSL's message callback either, hence this module.
Without that hook the answer is "no": we would rather say nothing than guess.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

__all__ = ["server_requests_client_certificate"]

_CERTIFICATE_REQUEST = 13  # the TLS HandshakeType number (RFC 8446, section 4)


def server_requests_client_certificate(url: str, timeout: float = 5.0) -> bool:
    """True when the TLS server at ``url`` sends CertificateRequest in its handshake.

    The probe sends no application data, so it verifies nothing: it only watches which
    handshake messages arrive, then closes.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return False
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if not hasattr(context, "_msg_callback"):
        return False
    requested: list[bool] = []

    def watch(_conn: Any, direction: str, _ver: Any, _type: Any, msg_type: Any, _data: Any) -> None:
        if direction == "read" and msg_type == _CERTIFICATE_REQUEST:
            requested.append(True)

    context._msg_callback = watch
    try:
        with (
            socket.create_connection((parts.hostname, parts.port or 443), timeout) as raw,
            context.wrap_socket(raw, server_hostname=parts.hostname),
        ):
            pass
    except (OSError, ValueError):
        pass  # the handshake may fail after CertificateRequest was seen; that is the point
    return bool(requested)
