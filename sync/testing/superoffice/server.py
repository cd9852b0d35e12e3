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
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sync.testing.superoffice import carriers
from sync.testing.superoffice.auth import SignIn
from sync.testing.superoffice.recurrence import RecurrenceError, expand, parse_time
from sync.testing.superoffice.tenant import (
    STATUS_NUMBERS,
    TYPE_NUMBERS,
    NotFound,
    PreconditionFailed,
    Row,
    Tenant,
)
from sync.testing.superoffice.webhooks import Webhook, WebhookDispatcher

LOGIN_PATH = "/Login/api/PartnerSystemUser/Authenticate"
CRM_USER = 7  # the associate whose edits the connector did not make ("behind its back")


class Reply(Exception):
    """Answer the current request with this status and JSON body (an error, or a bare status)."""

    def __init__(self, status: int, body: Any = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class Clock:
    """UTC now, plus an offset tests move forward (ticket lifetimes, stamps)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def naive(self) -> datetime:
        return self.now().replace(tzinfo=None, microsecond=0)


def _http_date(value: str | None) -> datetime | None:
    """An If-(Un)Modified-Since value: an HTTP date (or, leniently, ISO 8601) as naive UTC."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.replace(tzinfo=None)


class SuperOfficeStandIn:
    """One tenant, its sign-in, its webhooks, and the HTTP server in front of them."""

    def __init__(
        self,
        context_identifier: str = "Cust12345",
        validate: bool = True,
        retry_delay_scale: float = 0.01,
    ) -> None:
        self.clock = Clock()
        self.tenant = Tenant(clock=self.clock.naive)
        self.sign_in = SignIn(clock=self.clock.now, context_identifier=context_identifier)
        self.webhooks = WebhookDispatcher(context_identifier, retry_delay_scale=retry_delay_scale)
        self.tenant.listeners.append(self._publish_row_event)
        self.validate = validate
        self.violations: list[str] = []  # responses off the contract: stand-in bugs
        self.refused_requests: list[str] = []  # requests off the contract, answered 400
        self.unchecked_responses: list[str] = []
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.RLock()
        self._actor = threading.local()
        self._webhook_ids = iter(range(1, 1_000_000))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

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
    ) -> tuple[int, Any, dict[str, str]]:
        """Route one request; returns (status, JSON body or None, extra headers)."""
        if method == "POST" and path == LOGIN_PATH:
            return 200, self.sign_in.authenticate_system_user(body or {}), {}
        associate = self.sign_in.associate_for(
            headers.get("authorization"), headers.get("so-apptoken")
        )
        if associate is None:
            raise Reply(401, {"Error": "Unauthorized", "Message": "Invalid or expired credentials"})
        with self.lock, self.acting_as(associate):
            for route_method, pattern, action in self._routes():
                match = re.fullmatch(pattern, path)
                if match and route_method == method:
                    return action(associate, query, headers, body, *match.groups())
        raise Reply(404, {"Error": "NotFound", "Message": f"{method} {path}"})

    def _routes(self) -> list[tuple[str, str, Callable[..., tuple[int, Any, dict[str, str]]]]]:
        agent = "/api/v1/Agents/Appointment/"
        return [
            ("GET", r"/api/v1/Appointment", self._list),
            ("POST", r"/api/v1/Appointment", self._post_entity),
            ("GET", r"/api/v1/Appointment/(\d+)", self._get_entity),
            ("PUT", r"/api/v1/Appointment/(\d+)", self._put_entity),
            ("DELETE", r"/api/v1/Appointment/(\d+)", self._delete_entity),
            ("POST", agent + "GetAppointmentEntity", self._agent_get),
            ("POST", agent + "GetAppointmentRecords", self._agent_records),
            ("POST", agent + "CalculateDays", self._agent_calculate_days),
            ("POST", agent + "Save", self._agent_save),
            ("POST", agent + "Delete", self._agent_delete),
            ("POST", agent + "Move", self._agent_move),
            ("POST", agent + "UpdateAppointmentWithMode", self._agent_update_with_mode),
            ("GET", r"/api/v1/Webhook", self._webhook_list),
            ("POST", r"/api/v1/Webhook", self._webhook_create),
            ("POST", r"/api/v1/Webhook/Test", self._webhook_test),
            ("GET", r"/api/v1/Webhook/(\d+)", self._webhook_get),
            ("PUT", r"/api/v1/Webhook/(\d+)", self._webhook_put),
            ("DELETE", r"/api/v1/Webhook/(\d+)", self._webhook_delete),
        ]

    def _row(self, appointment_id: int) -> Row:
        try:
            return self.tenant.row(int(appointment_id))
        except NotFound:
            raise Reply(
                404, {"Error": "NotFound", "Message": f"appointment {appointment_id}"}
            ) from None

    def _unmodified_since(self, row: Row, headers: dict[str, str]) -> None:
        try:
            self.tenant.check_unmodified_since(row, _http_date(headers.get("if-unmodified-since")))
        except PreconditionFailed:
            raise Reply(412, {"Error": "PreconditionFailed", "Message": "changed since"}) from None

    def _entity(self, row: Row) -> tuple[int, Any, dict[str, str]]:
        return 200, carriers.appointment_entity(self.tenant, row), self._last_modified(row)

    @staticmethod
    def _last_modified(row: Row) -> dict[str, str]:
        return {
            "Last-Modified": row.updated.replace(tzinfo=UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
        }

    # entity API

    def _list(self, _who: int, query: dict[str, str], *_: Any) -> tuple[int, Any, dict[str, str]]:
        try:
            listing = carriers.archive_list(self.tenant, query)
        except (carriers.FilterError, ValueError) as error:
            raise Reply(400, {"Error": "BadRequest", "Message": str(error)}) from None
        listing["odata.metadata"] = f"{self.base_url}/api/v1/$metadata"
        if "odata.nextLink" in listing:
            listing["odata.nextLink"] = (
                f"{self.base_url}/api/v1/Appointment?{listing['odata.nextLink']}"
            )
        return 200, listing, {}

    def _post_entity(
        self, who: int, _q: Any, _h: Any, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        try:
            return self._entity(self.tenant.create(body or {}, who))
        except RecurrenceError as error:
            raise Reply(400, {"Error": "BadRequest", "Message": str(error)}) from None

    def _get_entity(self, _w: int, _q: Any, headers: dict[str, str], _b: Any, row_id: str) -> Any:
        row = self._row(int(row_id))
        since = _http_date(headers.get("if-modified-since"))
        if since is not None and row.updated <= since:
            return 304, None, self._last_modified(row)
        return self._entity(row)

    def _put_entity(self, _w: int, _q: Any, headers: dict[str, str], body: Any, row_id: str) -> Any:
        row = self._row(int(row_id))
        self._unmodified_since(row, headers)
        if not body:
            raise Reply(400, {"Error": "BadRequest", "Message": "no entity in the body"})
        return self._entity(self.tenant.save_with_mode(row, body, "OnlyThis"))

    def _delete_entity(
        self, _w: int, _q: Any, headers: dict[str, str], _b: Any, row_id: str
    ) -> Any:
        row = self._row(int(row_id))
        self._unmodified_since(row, headers)
        self.tenant.delete_row(row)
        return 204, None, {}

    # Agents API (If-Unmodified-Since honoured here too: *inferred*, see the docs page)

    def _agent_get(self, _w: int, query: dict[str, str], *_: Any) -> Any:
        return self._entity(self._row(int(query.get("appointmentEntityId", 0))))

    def _agent_records(self, _w: int, _q: Any, _h: Any, body: Any) -> Any:
        rule_id = int((body or {}).get("RecurrenceRuleId") or 0)
        mother_id = int((body or {}).get("MotherId") or 0)
        rows = self.tenant.series_rows(rule_id) if rule_id else []
        if not rule_id and mother_id in self.tenant.rows:
            rows = [self.tenant.rows[mother_id]]
        return 200, [carriers.appointment_slim(self.tenant, row) for row in rows], {}

    def _agent_calculate_days(self, _w: int, _q: Any, _h: Any, body: Any) -> Any:
        entity = (body or {}).get("AppointmentEntity") or {}
        info = dict(entity.get("Recurrence") or {})
        info.setdefault("StartDate", entity.get("StartDate"))
        try:
            days = expand(info)
        except (RecurrenceError, KeyError, TypeError) as error:
            raise Reply(400, {"Error": "BadRequest", "Message": str(error)}) from None
        start_time = parse_time(str(entity.get("StartDate") or info["StartDate"])).time()
        info["Dates"] = [
            {"Date": carriers.stamp(datetime.combine(day, start_time)), "IsConflict": False}
            for day in days
        ]
        return 200, info, {}

    def _agent_save(self, who: int, _q: Any, headers: dict[str, str], body: Any) -> Any:
        entity = (body or {}).get("AppointmentEntity") or {}
        mode = (body or {}).get("UpdateMode") or "Unknown"
        try:
            if not entity.get("AppointmentId"):
                return self._entity(self.tenant.create(entity, who))
            row = self._row(int(entity["AppointmentId"]))
            self._unmodified_since(row, headers)
            return self._entity(self.tenant.save_with_mode(row, entity, mode))
        except RecurrenceError as error:
            raise Reply(400, {"Error": "BadRequest", "Message": str(error)}) from None

    def _agent_delete(self, _w: int, _q: Any, headers: dict[str, str], body: Any) -> Any:
        row = self._row(int((body or {}).get("AppointmentId") or 0))
        self._unmodified_since(row, headers)
        self.tenant.delete_with_mode(row, (body or {}).get("UpdateMode") or "OnlyThis")
        return 204, None, {}

    def _agent_move(self, _w: int, _q: Any, headers: dict[str, str], body: Any) -> Any:
        row = self._row(int((body or {}).get("AppointmentId") or 0))
        self._unmodified_since(row, headers)
        new_start = parse_time(str(body["NewStartTime"]))
        moved = self.tenant.move_with_mode(row, new_start, body.get("UpdateMode") or "OnlyThis")
        return self._entity(moved)

    def _agent_update_with_mode(self, _w: int, _q: Any, headers: dict[str, str], body: Any) -> Any:
        row = self._row(int((body or {}).get("Id") or 0))
        self._unmodified_since(row, headers)
        entity: dict[str, Any] = {}
        if body.get("StartTime"):
            entity["StartDate"] = body["StartTime"]
        if body.get("EndTime"):
            entity["EndDate"] = body["EndTime"]
        if body.get("Status") in STATUS_NUMBERS:
            entity["Completed"] = body["Status"]
        if body.get("Type") in TYPE_NUMBERS:
            entity["Type"] = body["Type"]
        mode = body.get("UpdateMode") or "OnlyThis"
        saved = self.tenant.save_with_mode(row, entity, mode)
        if body.get("AssociateId"):
            self.tenant.update_row(saved, associate_id=int(body["AssociateId"]))
        return 200, carriers.appointment_slim(self.tenant, saved), {}

    # webhooks

    def _hook(self, webhook_id: str) -> Webhook:
        hook = self.webhooks.hooks.get(int(webhook_id))
        if hook is None:
            raise Reply(404, {"Error": "NotFound", "Message": f"webhook {webhook_id}"})
        return hook

    def _hook_from(self, body: Any, webhook_id: int) -> Webhook:
        target = str((body or {}).get("TargetUrl") or "")
        parts = urlsplit(target)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise Reply(400, {"Error": "BadRequest", "Message": "TargetUrl must be HTTPS"})
        return Webhook(
            webhook_id=webhook_id,
            name=str(body.get("Name") or ""),
            events=list(body.get("Events") or []),
            target_url=target,
            secret=str(body.get("Secret") or ""),
            state=str(body.get("State") or "Active"),
            type=str(body.get("Type") or "webhook"),
        )

    def _webhook_list(self, *_: Any) -> Any:
        return 200, [hook.carrier() for hook in self.webhooks.hooks.values()], {}

    def _webhook_create(self, who: int, _q: Any, _h: Any, body: Any) -> Any:
        hook = self._hook_from(body, next(self._webhook_ids))
        ok, message = self.webhooks.test_call(hook, who)
        if not ok:
            raise Reply(400, {"Error": "WebhookTestFailed", "Message": message})
        self.webhooks.hooks[hook.webhook_id] = hook
        return 200, hook.carrier(), {}

    def _webhook_test(self, who: int, _q: Any, _h: Any, body: Any) -> Any:
        ok, message = self.webhooks.test_call(self._hook_from(body, 0), who)
        return 200, {"Success": ok, "Message": message}, {}

    def _webhook_get(self, _w: int, _q: Any, _h: Any, _b: Any, webhook_id: str) -> Any:
        return 200, self._hook(webhook_id).carrier(), {}

    def _webhook_put(self, _w: int, _q: Any, _h: Any, body: Any, webhook_id: str) -> Any:
        old = self._hook(webhook_id)
        hook = self._hook_from(body, old.webhook_id)
        if hook.state == "Active":
            hook.consecutive_failures = 0
        self.webhooks.hooks[old.webhook_id] = hook
        return 200, hook.carrier(), {}

    def _webhook_delete(self, _w: int, _q: Any, _h: Any, _b: Any, webhook_id: str) -> Any:
        del self.webhooks.hooks[self._hook(webhook_id).webhook_id]
        return 204, None, {}


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
