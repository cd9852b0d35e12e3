"""SuperOffice webhooks as documented: registration, payload, signature, retries.

Sources (SuperOfficeDocs/docs): en/automation/webhook/dev/{register,notification,security}.md,
reference/{activity-events,test-event}.md. Appointments fire `activity.created|changed|deleted`,
one per row touched. The body is signed with HMAC-SHA256 over the raw bytes, keyed by the
webhook's secret, base64 in `X-SuperOffice-Signature`. Delivery is fire-and-forget: three tries
per event (then 1 s, then 4 s apart); a failed event is dropped; after nine failed tries in a row
the webhook's state becomes TooManyErrors and nothing more is sent until it is made Active again.

Tests shorten the waits with `retry_delay_scale`, and lose events on purpose with `drop_next`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RETRY_DELAYS = (1.0, 4.0)  # seconds before the second and the third try
MAX_CONSECUTIVE_FAILURES = 9
USER_AGENT = "NetServer-Webhook/10.0 (followup-sync stand-in)"


def signature(secret: str, body: bytes) -> str:
    """`X-SuperOffice-Signature`: base64(HMAC-SHA256(secret, raw body))."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass
class Webhook:
    """A registered webhook (the `Webhook` carrier's fields the stand-in acts on)."""

    webhook_id: int
    name: str
    events: list[str]
    target_url: str
    secret: str
    state: str = "Active"
    type: str = "webhook"
    registered: datetime = field(default_factory=lambda: datetime.now(UTC))
    consecutive_failures: int = 0
    last_error: str = ""

    def carrier(self) -> dict[str, Any]:
        stamp = self.registered.replace(tzinfo=None, microsecond=0).isoformat()
        return {
            "WebhookId": self.webhook_id,
            "Name": self.name,
            "Events": self.events,
            "TargetUrl": self.target_url,
            "Secret": self.secret,
            "State": self.state,
            "Type": self.type,
            "Registered": stamp,
            "Updated": stamp,
        }


@dataclass
class Delivery:
    """One POST the stand-in made (kept for tests: what was sent, and what came back)."""

    webhook_id: int
    event: str
    event_id: str
    retry: int
    body: bytes
    status: int | None


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 5.0) -> int | None:
    """POST and return the status, or None when the receiver could not be reached."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, TimeoutError):
        return None


class WebhookDispatcher:
    """Queues events and delivers them from one background thread, as NetServer's queue does."""

    def __init__(
        self,
        context_identifier: str,
        retry_delay_scale: float = 1.0,
        sender: Callable[[str, bytes, dict[str, str]], int | None] = post,
    ) -> None:
        self.context_identifier = context_identifier
        self.retry_delay_scale = retry_delay_scale
        self.hooks: dict[int, Webhook] = {}
        self.deliveries: list[Delivery] = []
        self.dropped: list[dict[str, Any]] = []
        self.drop_next = 0
        self._send = sender
        self._queue: queue.Queue[tuple[Webhook, dict[str, Any]] | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="superoffice-webhooks", daemon=True)
        self._thread.start()

    def payload(
        self, event: str, primary_key: int, changes: list[str], values: dict[str, Any], by: int
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "EventId": str(uuid.uuid4()),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "Changes": changes,
            "Event": event,
            "PrimaryKey": primary_key,
            "Entity": event.split(".", 1)[0],
            "ContextIdentifier": self.context_identifier,
            "ChangedByAssociateId": by,
        }
        if event.endswith(".deleted"):
            payload["Values"] = values
        else:
            payload["FieldValues"] = values
        return payload

    def publish(self, payload: dict[str, Any]) -> None:
        """Hand an event to every active webhook subscribed to it (a dropped one goes nowhere)."""
        for hook in list(self.hooks.values()):
            if hook.state != "Active" or payload["Event"] not in hook.events:
                continue
            if self.drop_next > 0:
                self.drop_next -= 1
                self.dropped.append(payload)
                continue
            with self._idle:
                self._pending += 1
            self._queue.put((hook, dict(payload, WebhookName=hook.name)))

    def test_call(self, hook: Webhook, by: int) -> tuple[bool, str]:
        """The `test` event POSTed on registration; the webhook is saved only on a 200."""
        body_obj = self.payload("test", 0, [], {}, by)
        body_obj.pop("FieldValues")
        body_obj["WebhookName"] = hook.name
        body = json.dumps(body_obj).encode("utf-8")
        headers = self._headers(hook, "test", body_obj["EventId"], 0, body)
        headers["X-Hook-Test"] = "true"
        status = self._send(hook.target_url, body, headers)
        self.deliveries.append(
            Delivery(hook.webhook_id, "test", body_obj["EventId"], 0, body, status)
        )
        return status == 200, f"HTTP {status}" if status is not None else "unreachable"

    def _headers(
        self, hook: Webhook, event: str, event_id: str, retry: int, body: bytes
    ) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "X-SuperOffice-Event": event,
            "X-SuperOffice-EventId": event_id,
            "X-SuperOffice-Retry": str(retry),
        }
        if hook.secret:
            headers["X-SuperOffice-Signature"] = signature(hook.secret, body)
        return headers

    def _deliver(self, hook: Webhook, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        for retry in range(len(RETRY_DELAYS) + 1):
            if hook.state != "Active":
                return
            if retry:
                threading.Event().wait(RETRY_DELAYS[retry - 1] * self.retry_delay_scale)
            headers = self._headers(hook, payload["Event"], payload["EventId"], retry, body)
            status = self._send(hook.target_url, body, headers)
            self.deliveries.append(
                Delivery(hook.webhook_id, payload["Event"], payload["EventId"], retry, body, status)
            )
            if status == 200:
                hook.consecutive_failures = 0
                return
            hook.consecutive_failures += 1
            hook.last_error = f"HTTP {status}" if status is not None else "unreachable"
            if hook.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                hook.state = "TooManyErrors"
                return

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._deliver(*item)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued event was delivered or given up (tests call this)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
