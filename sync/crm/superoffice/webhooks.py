"""SuperOffice's ``activity.*`` webhooks: checking one, and registering ours.

SuperOffice signs each POST with ``X-SuperOffice-Signature`` = base64(HMAC-SHA256(secret,
raw body)) (SuperOfficeDocs en/automation/webhook/dev/security.md). A delivery is only a
hint that the account should reconcile soon: it is answered 200 at once, a lost or
out-of-order one is healed by the next scheduled reconcile, and a ``test`` event (the one
SuperOffice sends when a webhook is registered, ``X-Hook-Test: true``) triggers nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from sync.crm.base import CrmError

EVENTS = ("activity.created", "activity.changed", "activity.deleted")
#: Where the daemon's HTTP server takes deliveries for an account (``sync.service.http``).
RECEIVER_PATH = "/crm/superoffice/{account}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a checked delivery says: whether it is the registration's test, and the event."""

    test: bool
    event: str


def signature_ok(secret: str, body: bytes, signature: str | None) -> bool:
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return signature is not None and hmac.compare_digest(expected, signature.strip().encode())


def check_delivery(secret: str, body: bytes, headers: Mapping[str, str]) -> Delivery | None:
    """The delivery if its signature is right (None: answer 401, do nothing)."""
    if not signature_ok(secret, body, headers.get("x-superoffice-signature")):
        return None
    try:
        payload: Any = json.loads(body or b"{}")
    except ValueError:
        payload = {}
    event = str(payload.get("Event") or headers.get("x-superoffice-event") or "")
    test = headers.get("x-hook-test", "").lower() == "true" or event == "test"
    return Delivery(test=test, event=event)


def register(
    client: httpx.Client, *, name: str, target_url: str, secret: str | None = None
) -> dict[str, Any]:
    """Register (``POST /api/v1/Webhook``) the receiver for ``activity.*``; SuperOffice calls it
    once with a test event and saves the webhook only if that call is answered 200."""
    body = {
        "Name": name,
        "Events": list(EVENTS),
        "TargetUrl": target_url,
        "Secret": secret or secrets.token_urlsafe(32),
        "State": "Active",
        "Type": "webhook",
    }
    response = client.post("/api/v1/Webhook", json=body)
    if response.status_code != 200:
        raise CrmError(
            f"SuperOffice refused the webhook: HTTP {response.status_code} {response.text[:200]}"
        )
    saved: dict[str, Any] = response.json()
    return saved
