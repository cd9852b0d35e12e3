"""Where the time of each HTTP exchange goes, for the raw loop and for our pass alike.

Both the raw PUT loop and our calendar send through a niquests session, so one recorder
reads the same points of both from the session's hooks (``pre_send``: a connection was
picked, after connecting if it is new; ``on_upload``: the whole request is handed to the
socket; ``response``: the answer's head is read) between the start and the end of the
exchange as its caller sees it (for us: the ``Sender`` seam, from the request to the end of
the body read). Per request that gives:

* **prepare**: from the call to a connection ready, without the connect itself (request
  building, headers, sign-in, pool checkout);
* **connect**: name resolution and TCP (and TLS) set-up of a new connection; a server that
  closes after every answer (Radicale's built-in server speaks HTTP/1.0) costs one per request;
* **send**: the request's head and body handed to the socket;
* **wait**: from the request sent to the answer's head read: the server's own time, plus
  any time this process took to get back to the answer (another thread holding the GIL);
* **read**: the answer's body and the response object, to the caller.

A client's own cost inside its exchanges is prepare + connect + send + read; wait is the
server's, unless a thread of ours delays the read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

PHASES = ("prepare", "connect", "send", "wait", "read")


@dataclass
class _Exchange:
    started: float
    picked: float | None = None
    connect: float = 0.0
    sent: float | None = None
    answered: float | None = None


@dataclass
class PhaseRecorder:
    """Sums the phases of every exchange whose start and end are marked (``start``/``end``)."""

    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    exchanges: int = 0
    connections: int = 0
    _current: _Exchange | None = None
    _seen: list[Any] = field(default_factory=list)  # conn_info objects: strong refs, no id reuse

    def install(self, session: Any) -> None:
        """Listen to ``session``'s hooks (a niquests Session)."""
        session.hooks["pre_send"].append(self._picked)
        session.hooks["on_upload"].append(self._uploaded)
        session.hooks["response"].append(self._answered)

    def start(self) -> None:
        self._current = _Exchange(time.perf_counter())

    def end(self) -> None:
        now, ex = time.perf_counter(), self._current
        self._current = None
        if ex is None or ex.picked is None or ex.answered is None:
            return  # not an exchange through the session (or it failed before an answer)
        sent = ex.sent if ex.sent is not None else ex.picked
        self.totals["prepare"] += max(0.0, ex.picked - ex.started - ex.connect)
        self.totals["connect"] += ex.connect
        self.totals["send"] += sent - ex.picked
        self.totals["wait"] += ex.answered - sent
        self.totals["read"] += now - ex.answered
        self.exchanges += 1

    def _picked(self, request: Any, **_: Any) -> None:
        ex = self._current
        if ex is None:
            return
        ex.picked = time.perf_counter()
        info = getattr(request, "conn_info", None)
        if info is not None and not any(info is seen for seen in self._seen[-4:]):
            self._seen.append(info)
            self.connections += 1
            for latency in (info.resolution_latency, info.established_latency):
                ex.connect += latency.total_seconds() if latency is not None else 0.0

    def _uploaded(self, request: Any, **_: Any) -> None:
        progress = getattr(request, "upload_progress", None)
        if self._current is not None and progress is not None and progress.is_completed:
            self._current.sent = time.perf_counter()

    def _answered(self, response: Any, **_: Any) -> Any:
        if self._current is not None and self._current.answered is None:
            self._current.answered = time.perf_counter()
        return response


class TimedSender:
    """Wraps a calendar's ``Sender``: marks each exchange's start and end for a recorder."""

    def __init__(self, inner: Any, recorder: PhaseRecorder) -> None:
        self.inner = inner
        self.recorder = recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send(self, request: Any) -> Any:
        self.recorder.start()
        try:
            return self.inner.send(request)
        finally:
            self.recorder.end()


def phase_rows(labelled: list[tuple[str, PhaseRecorder]]) -> list[str]:
    """Lines comparing recorders phase by phase: total seconds and ms per request each."""
    head = f"{'phase':10}" + "".join(f"{label:>26}" for label, _ in labelled)
    lines = [head]
    for phase in PHASES:
        cells = []
        for _, rec in labelled:
            per = rec.totals[phase] / rec.exchanges * 1000 if rec.exchanges else 0.0
            cells.append(f"{rec.totals[phase]:9.3f} s {per:7.3f} ms/req")
        lines.append(f"{phase:10}" + "".join(f"{cell:>26}" for cell in cells))
    own = [
        sum(rec.totals[p] for p in ("prepare", "connect", "send", "read")) for _, rec in labelled
    ]
    lines.append(
        f"{'own':10}"
        + "".join(
            f"{total:9.3f} s {total / rec.exchanges * 1000 if rec.exchanges else 0:7.3f} ms/req".rjust(
                26
            )
            for total, (_, rec) in zip(own, labelled, strict=True)
        )
    )
    lines.append(
        f"{'exchanges':10}"
        + "".join(
            f"{f'{rec.exchanges} ({rec.connections} connections)':>26}" for _, rec in labelled
        )
    )
    return lines
