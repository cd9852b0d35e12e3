"""The first push into an empty calendar in one request, where the server offers that.

Radicale's cost per PUT grows with the collection: 5,000 series pushed one PUT each take
about an hour and a half, the same series as one calendar in one PUT a minute
(docs/explanation/performance.md). Where the store says so
(``Capabilities.bulk_upload_into_empty`` and ``sync.stores.base.BulkUpload``), a plan in
which every action is a create, into a calendar the pass listed empty and of which the
state knows nothing, is uploaded in one request. The store makes that request only under
a precondition the server keeps (nothing appeared in the calendar since it was read
empty); when it is not made, or fails, the same plan is pushed item by item as always, so
nothing is lost and nothing is written twice.

The server names the resources of such an upload itself and may store them otherwise
than sent: Radicale writes every VTIMEZONE anew, with the autumn change an hour late
(``mappings.zone_fidelity``). So everything uploaded is read back (calendar-multiget,
0.2 s for 1,000 resources on Radicale): each resource's UID gives its href, and one
whose stored time zone would place one of its date-times elsewhere is written again as
rendered (a PUT with If-Match, which Radicale stores with our VTIMEZONE). The rendered
bytes are recorded as the agreed content, as a per-item push records its own, so a later
update renders on our time zone, not on the rewritten one. The write intents are
recorded before the upload, as before a chunk's PUTs, so a crash in between is recovered
by UID.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import cast

from mappings.resource import render_resource
from mappings.zone_fidelity import misplacing_zones
from sync.engine.actions import CreateOnServer, Plan, describe
from sync.engine.apply import Applier, ApplyReport, Written
from sync.engine.listing import Listing
from sync.errors import StoreError
from sync.stores.base import BulkUpload, CalendarStore, Resource

log = logging.getLogger(__name__)

#: Fewer creates than this go item by item: replacing a collection is not worth it.
MIN_RESOURCES = 10
#: The largest first push planned as one chunk (all of it held in memory at once); the
#: rest of a larger one follows item by item.
MAX_RESOURCES = 20_000

#: Resources per calendar-multiget when reading an upload back.
READ_BACK_BATCH = 500
_UID = re.compile(r"^UID(?:;[^:\n]*)?:(.*)$", re.MULTILINE)


def offered(calendar: CalendarStore) -> bool:
    """Whether ``calendar`` takes a whole calendar in one request (capability and method)."""
    return calendar.capabilities.bulk_upload_into_empty and isinstance(calendar, BulkUpload)


def chunk_size(calendar: CalendarStore, listing: Listing, recorded: int, default: int) -> int:
    """The pass's chunk size: the whole first push in one chunk where it can be uploaded."""
    empty = listing.complete and not listing.etags and not recorded
    return max(default, MAX_RESOURCES) if empty and offered(calendar) else default


def run(applier: Applier, plan: Plan, *, progress: Callable[[], None] | None) -> ApplyReport:
    """Carry out ``plan``: in one upload if it is a first push that can be, else as always."""
    creates = [action for action in plan.actions if isinstance(action, CreateOnServer)]
    if (
        offered(applier.calendar)
        and len(creates) >= MIN_RESOURCES
        and len(creates) == len(plan.actions)
        and _upload(applier, creates, progress)
    ):
        return applier.report
    return applier.run(plan, progress=progress)


def _upload(
    applier: Applier, creates: Sequence[CreateOnServer], progress: Callable[[], None] | None
) -> bool:
    """Upload and record ``creates``; False when the upload was not made (push item by item)."""
    rendered: list[tuple[CreateOnServer, bytes]] = []
    for action in creates:
        data = render_resource(
            action.document,
            stamp=applier.clock(),
            base=None,
            schedule_agent=applier.schedule_agent(action.document),
        ).data
        if data is not None:
            rendered.append((action, data))
    applier.write_intents.record(creates)
    try:
        listed = cast(BulkUpload, applier.calendar).upload_into_empty([d for _, d in rendered])
    except StoreError as exc:
        log.warning(
            "uploading %d series at once failed (%s); one by one instead", len(creates), exc
        )
        return False
    if listed is None:
        log.info("the calendar cannot take %d series at once; one by one instead", len(creates))
        return False
    stored = _read_back(applier.calendar, listed, {a.uid for a, _ in rendered})
    data_of = {id(action): data for action, data in rendered}
    rewritten = 0
    for action in creates:
        data = data_of.get(id(action))
        found = stored.get(action.uid)
        if data is None:
            log.info(
                "%s: every occurrence is deleted; nothing to put on the calendar",
                action.followup_id,
            )
        elif found is None:  # not among what the server lists: the per-item push finds out
            applier.apply(action, attempt=0)
        else:
            href, server_data = found
            etag = listed[href]
            zones = misplacing_zones(data, server_data)
            if zones:
                log.info(
                    "%s: the server rewrote time zone %s so that an occurrence would move; "
                    "written again as rendered",
                    action.followup_id,
                    ", ".join(zones),
                )
                try:
                    etag = applier.calendar.update(href, data, etag)
                except StoreError as exc:  # recorded as a write intent: the next pass finds it
                    log.warning("%s: writing it again failed (%s)", action.followup_id, exc)
                    continue
                rewritten += 1
            applier.note_written(Written(action.followup_id, href, etag, action.document, data))
            log.info("%s", describe(action))
            applier.report.count("server create")
        if progress is not None:
            progress()
    applier.flush()
    log.info(
        "uploaded %d series in one request; %d written again for their time zone",
        len(rendered),
        rewritten,
    )
    return True


def _read_back(
    calendar: CalendarStore, listed: dict[str, str], uids: set[str]
) -> dict[str, tuple[str, bytes]]:
    """UID -> (href, stored bytes) of every uploaded resource that holds one of ``uids``."""
    found: dict[str, tuple[str, bytes]] = {}
    for got in calendar.get_multi(list(listed), READ_BACK_BATCH) if listed else ():
        if isinstance(got, Resource):
            text = re.sub(r"\r?\n[ \t]", "", got.data.decode("utf-8", errors="replace"))
            for uid in {m.strip() for m in _UID.findall(text)} & uids:
                found[uid] = (got.href, got.data)
    return found
