"""Three-way merge of one follow-up edited on both sides since the last sync.

A follow-up is merged part by part: each plain field, the series (start, end, zone and
rule, which only make sense together), and each occurrence exception on its own. A part
changed on one side only takes that side's value; a part changed on both sides to
different values is a conflict, decided by the policy, and the losing value is returned
so the conflict log keeps it. So a user who moves Tuesday's meeting in Thunderbird
while someone renames the series in the CRM gets both changes, and no conflict.

``alt_base``: a second version the server may still hold unchanged. After a crash
between a write and its record the base is what we wrote (``sync.engine.plan``, pending
writes), but the write may not have landed: a server part equal to either version is
no edit of the calendar's, so the CRM's value stands.

Policies: ``crm-wins``, ``server-wins``, ``newest-wins`` (the side modified last; the
CRM when the server gives no LAST-MODIFIED).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mappings.documents import load_followup
from mappings.equivalence import (
    PLAIN_FIELDS,
    exception_documents,
    exception_json,
    exception_map,
    series_signature,
)
from mappings.errors import MappingError
from mappings.model import FollowUp, OccurrenceException
from sync.policies import ConflictPolicy

#: ``pick``'s "no alternative base" marker (None is a real value of a part).
_NO_ALT: Any = object()

SERIES_FIELDS = ("start", "end", "timezone", "all_day", "recurrence", "ical_recurrence")


@dataclass(frozen=True)
class Conflict:
    part: str  # "title", "series", "exception 2025-01-13T09:00:00", "deleted"
    winner: str  # "crm" or "server"
    kept: Any
    lost: Any


@dataclass(frozen=True)
class MergeResult:
    document: FollowUp
    conflicts: tuple[Conflict, ...]


def winner_side(policy: ConflictPolicy, crm_is_newer: bool | None) -> str:
    if policy == ConflictPolicy.crm_wins:
        return "crm"
    if policy == ConflictPolicy.server_wins:
        return "server"
    return "server" if crm_is_newer is False else "crm"


def merge(
    base: FollowUp | None,
    crm: FollowUp,
    server: FollowUp,
    *,
    policy: ConflictPolicy,
    crm_is_newer: bool | None,
    alt_base: FollowUp | None = None,
) -> MergeResult:
    """Merge ``crm`` and ``server`` against ``base``.

    ``base`` None means no common ancestor: every difference is a conflict.
    ``alt_base`` (with a ``base``): see the module docstring.
    """
    winner = winner_side(policy, crm_is_newer)
    conflicts: list[Conflict] = []
    result: dict[str, Any] = crm.to_json_dict()
    crm_doc, server_doc = crm.to_json_dict(), server.to_json_dict()
    base_doc = base.to_json_dict() if base is not None else None
    alt = alt_base if base is not None else None
    alt_doc = alt.to_json_dict() if alt is not None else None

    def pick(
        part: str,
        b: Any,
        c: Any,
        s: Any,
        *,
        same: bool,
        shown: tuple[Any, Any] | None = None,
        a: Any = _NO_ALT,
    ) -> str:
        """Which side's value this part takes; ``shown``: the (crm, server) values to log.

        ``a``: the part's value in ``alt_base``, if there is one.
        """
        if same:
            return "crm"
        if a is not _NO_ALT and s == a:
            return "crm"
        if base_doc is not None and c == b:
            return "server"
        if base_doc is not None and s == b:
            return "crm"
        crm_value, server_value = shown if shown is not None else (c, s)
        kept, lost = (crm_value, server_value) if winner == "crm" else (server_value, crm_value)
        conflicts.append(Conflict(part, winner, kept, lost))
        return winner

    for name in PLAIN_FIELDS:
        b = base_doc.get(name) if base_doc else None
        c, s = crm_doc.get(name), server_doc.get(name)
        a = (alt_doc.get(name) or None) if alt_doc is not None else _NO_ALT
        side = pick(name, b or None, c or None, s or None, same=(c or None) == (s or None), a=a)
        _set(result, name, (crm_doc if side == "crm" else server_doc).get(name))
        if name == "status":  # when it was completed goes with the status it belongs to
            _set(
                result,
                "completed_at",
                (crm_doc if side == "crm" else server_doc).get("completed_at"),
            )

    crm_series, server_series = series_signature(crm), series_signature(server)
    base_series = series_signature(base) if base is not None else None
    # Series are compared by signature (dates, zone, length), but the conflict log is a
    # JSON column and a signature holds datetimes: log each side's series fields instead.
    series_side = pick(
        "series",
        base_series,
        crm_series,
        server_series,
        same=crm_series == server_series,
        shown=(_series_fields(crm_doc), _series_fields(server_doc)),
        a=series_signature(alt) if alt is not None else _NO_ALT,
    )
    if series_side == "server":
        for name in SERIES_FIELDS:
            _set(result, name, server_doc.get(name))

    base_exc = exception_map(base) if base is not None else {}
    crm_exc, server_exc = exception_map(crm), exception_map(server)
    alt_exc = exception_map(alt) if alt is not None else None
    whole = {"crm": exception_documents(crm), "server": exception_documents(server)}
    # Compared as the calendar reads them back (``exception_map``); logged as each side wrote them.
    written = {
        side: {e.original_start.isoformat(): exception_json(e) for e in doc.exceptions}
        for side, doc in (("crm", crm), ("server", server))
    }
    merged_exc: list[dict[str, Any]] = []
    for key in sorted(set(base_exc) | set(crm_exc) | set(server_exc)):
        b, c, s = base_exc.get(key), crm_exc.get(key), server_exc.get(key)
        a = alt_exc.get(key) if alt_exc is not None else _NO_ALT
        shown = (written["crm"].get(key), written["server"].get(key))
        side = pick(f"exception {key}", b, c, s, same=c == s, shown=shown, a=a)
        value = whole[side].get(key)
        if value is not None:
            merged_exc.append(value)
    result["exceptions"] = merged_exc

    document, dropped = _valid_document(result)
    conflicts.extend(
        Conflict(
            f"exception {e.original_start.isoformat()}",
            winner="series",
            kept=None,
            lost=e.model_dump(mode="json"),
        )
        for e in dropped
    )
    return MergeResult(document, tuple(conflicts))


def _series_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: doc[name] for name in SERIES_FIELDS if name in doc}


def _set(doc: dict[str, Any], name: str, value: Any) -> None:
    if value is None:
        doc.pop(name, None)
    else:
        doc[name] = value


def _valid_document(data: dict[str, Any]) -> tuple[FollowUp, list[OccurrenceException]]:
    """Build the merged document, dropping exceptions the merged series no longer has.

    That happens when one side changed the rule and the other edited an occurrence the
    new rule does not produce; the edit is reported as lost rather than failing the item.
    """
    exceptions = list(data.get("exceptions") or [])
    dropped: list[OccurrenceException] = []
    while True:
        try:
            return load_followup({**data, "exceptions": exceptions}), dropped
        except MappingError as exc:
            field = exc.field or ""
            if not field.startswith("exceptions.") or not exceptions:
                raise
            index = int(field.split(".")[1])
            bad = exceptions.pop(index)
            dropped.append(OccurrenceException.model_validate(bad))
