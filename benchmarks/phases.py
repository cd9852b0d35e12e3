"""Where the time of each HTTP exchange goes, for the raw loop and for our pass alike.

Both clients send on the standard library's http.client (ours through
``sync.stores.caldav.direct``), and both time the same points of every exchange:

* **connect**: TCP (and TLS) set-up of a new connection; a server that closes after every
  answer (Radicale's built-in server speaks HTTP/1.0) costs one per request;
* **send**: the request's head and body handed to the socket;
* **wait**: from the request sent to the answer's head read: the server's own time, plus
  any time this process took to get back to the answer (another thread holding the GIL);
* **read**: the answer's body;
* **prepare**: the rest of the exchange as its caller sees it (headers, sign-in,
  counting, the response object).

A client's own cost inside its exchanges is everything but wait.
"""

from __future__ import annotations

from collections.abc import Mapping

PHASES = ("prepare", "connect", "send", "wait", "read")


def with_prepare(phases: Mapping[str, float], exchange_seconds: float) -> dict[str, float]:
    """``phases`` plus "prepare": the exchanges' time that no measured phase accounts for."""
    measured = sum(phases.get(p, 0.0) for p in PHASES if p != "prepare")
    return {**{p: phases.get(p, 0.0) for p in PHASES}, "prepare": exchange_seconds - measured}


def phase_rows(labelled: list[tuple[str, Mapping[str, float], int]]) -> list[str]:
    """Lines comparing clients phase by phase: total seconds and ms per request each.

    ``labelled``: (label, phase -> seconds, requests) per client.
    """

    def cell(seconds: float, requests: int) -> str:
        per = seconds / requests * 1000 if requests else 0.0
        return f"{seconds:9.3f} s {per:7.3f} ms/req".rjust(28)

    lines = [f"{'phase':10}" + "".join(f"{label:>28}" for label, _, _ in labelled)]
    for phase in PHASES:
        lines.append(f"{phase:10}" + "".join(cell(t.get(phase, 0.0), n) for _, t, n in labelled))
    own = [(sum(v for p, v in t.items() if p != "wait"), n) for _, t, n in labelled]
    lines.append(f"{'own':10}" + "".join(cell(seconds, n) for seconds, n in own))
    return lines
