"""The SuperOffice stand-in as a real HTTP server on 127.0.0.1 (a random port), for tests and demos.

    with SuperOfficeStandIn() as crm:
        crm.add_basic_user("sync", "secret", associate_id=5)
        ... point the connector at crm.base_url ...
        crm.edit_behind(row_id, title="changed in the CRM")   # a user's edit, with its webhook
        crm.drop_next_webhooks(1)                                # lose the next event
        crm.expire_tickets()                                     # every SOTicket is now refused

Every request and response is checked against the vendored API descriptions (contract.py); a
request that does not fit is answered 400 (kept in `refused_requests`), as SuperOffice's own model
binding would; a response that does not fit is a bug in the stand-in, answered 500 and kept in
`violations`. Statuses the description does not list (401, 412 on the Agents...) are noted in
`unchecked_responses`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sync.testing.superoffice import carriers
from sync.testing.superoffice.auth import SignIn
from sync.testing.superoffice.routes import Reply, Result, Routes
from sync.testing.superoffice.tenant import (
    STATUS_NUMBERS,
    TYPE_NUMBERS,
    Row,
    Tenant,
)
from sync.testing.superoffice.webhooks import WebhookDispatcher

LOGIN_PATH = "/Login/api/PartnerSystemUser/Authenticate"
CRM_USER = 7  # the associate whose edits the connector did not make ("behind its back")


class Clock:
    """UTC now, plus an offset tests move forward (ticket lifetimes, stamps)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def naive(self) -> datetime:
        return self.now().replace(tzinfo=None, microsecond=0)


class SuperOfficeStandIn:
    """One tenant, its sign-in, its webhooks, and the HTTP server in front of them."""

    def __init__(
        self,
        context_identifier: str = "Cust12345",
        validate: bool = True,
        retry_delay_scale: float = 0.01,
        port: int = 0,
    ) -> None:
        """`retry_delay_scale` shortens the documented 1 s / 4 s webhook retries (1.0 keeps them);
        `port` 0 takes a free one."""
        self.clock = Clock()
        self.tenant = Tenant(clock=self.clock.naive)
        self.sign_in = SignIn(clock=self.clock.now, context_identifier=context_identifier)
        self.webhooks = WebhookDispatcher(context_identifier, retry_delay_scale=retry_delay_scale)
        self.tenant.listeners.append(self._publish_row_event)
        self.routes = Routes(self.tenant, self.webhooks, lambda: self.base_url)
        self.validate = validate
        self.violations: list[str] = []  # responses off the contract: stand-in bugs
        self.refused_requests: list[str] = []  # requests off the contract, answered 400
        self.unchecked_responses: list[str] = []
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.RLock()
        self._actor = threading.local()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # --- life cycle --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SuperOfficeStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.webhooks.close()

    def __enter__(self) -> SuperOfficeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- set-up and faults -------------------------------------------------------------

    def add_basic_user(self, user: str, password: str, associate_id: int) -> None:
        self.sign_in.basic_users[user] = (password, associate_id)

    @contextmanager
    def acting_as(self, associate_id: int) -> Iterator[None]:
        previous = getattr(self._actor, "id", CRM_USER)
        self._actor.id = associate_id
        try:
            yield
        finally:
            self._actor.id = previous

    def create(self, entity: dict[str, Any], associate_id: int = CRM_USER) -> Row:
        """Book an appointment as a CRM user would (webhooks fire)."""
        with self.lock, self.acting_as(associate_id):
            return self.tenant.create(entity, associate_id)

    def edit_behind(self, appointment_id: int, **changes: Any) -> Row:
        """Fault: a CRM user changes a row behind the connector's back (stamp and webhook)."""
        with self.lock, self.acting_as(CRM_USER):
            return self.tenant.update_row(self.tenant.row(appointment_id), **changes)

    def drop_next_webhooks(self, count: int = 1) -> None:
        """Fault: the next `count` events are lost (never POSTed)."""
        self.webhooks.drop_next += count

    def expire_tickets(self) -> None:
        """Fault: every SOTicket handed out so far is refused from now on (401)."""
        self.sign_in.expire_tickets()

    def advance_clock(self, delta: timedelta) -> None:
        self.clock.offset += delta

    # --- webhooks from row changes -----------------------------------------------------

    def _publish_row_event(self, event: str, row: Row, changes: list[str]) -> None:
        values: dict[str, Any] = {
            "activeDate": carriers.stamp(row.start),
            "associate_id": row.associate_id,
            "contact_id": 0,
            "do_by": carriers.stamp(row.start),
            "endDate": carriers.stamp(row.end),
            "mother_id": 0,
            "person_id": 0,
            "project_id": 0,
            "sale_id": 0,
            "status": STATUS_NUMBERS.get(row.completed, 0),
            "type": TYPE_NUMBERS.get(row.type, 0),
            "updated": carriers.stamp(row.updated),
        }
        if event.endswith(".deleted"):
            values = {"appointment_id": row.appointment_id} | {
                key: values[key] for key in ("associate_id", "contact_id", "person_id")
            }
        actor = getattr(self._actor, "id", CRM_USER)
        payload = self.webhooks.payload(event, row.appointment_id, changes, values, actor)
        self.webhooks.publish(payload)

    # --- the API -----------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Result:
        """Sign the caller in, then route one request (see routes.py)."""
        if method == "POST" and path == LOGIN_PATH:
            return 200, self.sign_in.authenticate_system_user(body or {}), {}
        associate = self.sign_in.associate_for(
            headers.get("authorization"), headers.get("so-apptoken")
        )
        if associate is None:
            raise Reply(401, {"Error": "Unauthorized", "Message": "Invalid or expired credentials"})
        with self.lock, self.acting_as(associate):
            return self.routes.dispatch(method, path, associate, query, headers, body)


def _handler_for(standin: SuperOfficeStandIn) -> type[BaseHTTPRequestHandler]:
    """A request handler bound to one stand-in (http.server builds one handler per request)."""
    contract: ModuleType | None = None
    if standin.validate:
        from sync.testing.superoffice import contract as checker  # optional extra: openapi-core

        contract = checker

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests`
            pass

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            recorded = None
            if contract is not None and url.path != LOGIN_PATH:
                recorded = contract.RecordedRequest(
                    standin.base_url,
                    url.path,
                    self.command,
                    url.query,
                    dict(self.headers.items()),
                    raw or None,
                    self.headers.get("Content-Type", "application/json").split(";")[0],
                )
            try:
                if recorded is not None and contract is not None:
                    try:
                        contract.check_request(recorded)
                    except contract.ContractViolation as violation:
                        standin.refused_requests.append(str(violation))
                        raise Reply(
                            400, {"Error": "BadRequest", "Message": str(violation)}
                        ) from None
                body = json.loads(raw) if raw else None
                query = dict(parse_qsl(url.query, keep_blank_values=True))
                status, payload, extra = standin.handle(
                    self.command, url.path, query, headers, body
                )
            except Reply as reply:
                status, payload, extra = reply.status, reply.body, {}
            except (ValueError, KeyError, TypeError) as error:
                status, payload, extra = 400, {"Error": "BadRequest", "Message": repr(error)}, {}
            except Exception as error:  # a bug in the stand-in: loud, and kept for the test
                standin.violations.append(f"{self.command} {url.path} crashed: {error!r}")
                status, payload, extra = 500, {"Error": "StandInBug", "Message": repr(error)}, {}
            data = json.dumps(payload).encode("utf-8") if payload is not None else b""
            if recorded is not None and contract is not None:
                response = contract.RecordedResponse(
                    status, data, {"Content-Type": "application/json"}
                )
                try:
                    if not contract.check_response(recorded, response):
                        standin.unchecked_responses.append(f"{self.command} {url.path} {status}")
                except contract.ContractViolation as violation:
                    standin.violations.append(str(violation))
                    status, data = 500, json.dumps({"Error": "StandInBug"}).encode()
            standin.requests.append((self.command, url.path, status))
            self.send_response(status)
            for key, value in extra.items():
                self.send_header(key, value)
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler
