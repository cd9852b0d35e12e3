"""The CalDAV side of the sync worker: one calendar collection, spoken to with explicit requests.

python-caldav provides the HTTP session, authentication and discovery; the requests the
sync path depends on (sync-collection, PROPFIND getetag, calendar-multiget, conditional
PUT/DELETE, calendar-query by UID) are built here by hand, because caldav's high-level
calls add requests we cannot afford or control: ``.sync()`` does one GET per changed
object, ``save()`` bumps SEQUENCE and switches to If-Schedule-Tag-Match when the server
sends a Schedule-Tag, and its sync fallback invents a token instead of failing.

Rules this package keeps so callers can rely on them:

* Every HTTP request, including caldav's own discovery requests, is counted in ``stats``.
* hrefs are returned as the unquoted URL path (``/alice/cal/a b.ics``), whatever quoting the
  server used, so they can be used as keys. Methods accept that form back, or a full URL.
* Retrying happens here and only for requests that are safe to repeat: PROPFIND/REPORT, and
  PUT/DELETE because ours always carry If-Match or If-None-Match (a repeat after a lost
  answer turns into a 412 the caller already handles).
* Failures are the exceptions of ``sync.errors``; caldav and niquests exceptions never leak.
* Answers are untrusted: bodies are read streaming and refused beyond ``max_response_bytes``
  (default 20 MB), and the XML parser expands no entities.

Where things are: ``calendar`` (DavCalendar, composing the rest), ``transport`` (the
``Sender`` I/O seam, the HTTP session, retries), ``collection`` (URL forms, capabilities,
multistatus reading), ``listing``, ``reading``, ``writing``, ``busy`` (the dialog's busy
time), ``model`` (what the calendar hands back).
"""

from sync.stores.base import Delta, FetchError, LastModified, RequestStats, Resource
from sync.stores.caldav.busy import BusyPeriod, HomeCalendar
from sync.stores.caldav.calendar import DavCalendar
from sync.stores.caldav.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DavRequest,
    Reply,
    ResponseTooLarge,
    Retryable,
    RetryPolicy,
    Sender,
    SessionSender,
    Transport,
    describe_transport_failure,
)

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "BusyPeriod",
    "DavCalendar",
    "DavRequest",
    "Delta",
    "FetchError",
    "HomeCalendar",
    "LastModified",
    "Reply",
    "RequestStats",
    "Resource",
    "ResponseTooLarge",
    "RetryPolicy",
    "Retryable",
    "Sender",
    "SessionSender",
    "Transport",
    "describe_transport_failure",
]
