"""What a plan is made of: small frozen actions, and how a report keeps and words them.

``sync.engine.plan`` decides the actions, ``sync.engine.apply`` carries them out; a pass report
keeps each as a ``Planned`` (no documents) and ``describe`` words it for the log and ``--dry-run``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mappings.model import FollowUp
from sync.engine.merge import Conflict


@dataclass(frozen=True)
class CreateOnServer:
    followup_id: str
    uid: str
    document: FollowUp
    side = "server"
    verb = "create"


@dataclass(frozen=True)
class UpdateOnServer:
    followup_id: str
    href: str
    etag: str
    document: FollowUp
    base_data: bytes | None  # the server's bytes we patch, so unknown properties survive
    side = "server"
    verb = "update"


@dataclass(frozen=True)
class DeleteOnServer:
    followup_id: str
    href: str
    etag: str
    side = "server"
    verb = "delete"


@dataclass(frozen=True)
class SaveFromServer:
    """The server's version becomes the follow-up (and the agreed state)."""

    followup_id: str
    href: str
    etag: str
    document: FollowUp
    data: bytes
    side = "crm"
    verb = "update"


@dataclass(frozen=True)
class CreateFromServer:
    followup_id: str
    href: str | None  # None for a tail split off another resource: it gets its own resource
    etag: str | None
    document: FollowUp
    data: bytes | None
    side = "crm"
    verb = "create"


@dataclass(frozen=True)
class DeleteInCrm:
    followup_id: str
    side = "crm"
    verb = "delete"


@dataclass(frozen=True)
class DetachInCrm:
    followup_id: str
    side = "crm"
    verb = "detach"


@dataclass(frozen=True)
class RecordState:
    """Both sides already agree; remember the server's current ETag and bytes."""

    followup_id: str
    href: str
    etag: str
    document: FollowUp
    data: bytes
    side = "state"
    verb = "record"


@dataclass(frozen=True)
class Forget:
    followup_id: str
    side = "state"
    verb = "forget"


@dataclass(frozen=True)
class Merge:
    """Both sides changed: write the merged document where it differs from each side."""

    followup_id: str
    href: str
    etag: str
    document: FollowUp
    server_data: bytes
    push: bool  # the server needs the merged version
    pull: bool  # the CRM needs the merged version
    conflicts: tuple[Conflict, ...]
    side = "both"
    verb = "merge"


Action = (
    CreateOnServer
    | UpdateOnServer
    | DeleteOnServer
    | SaveFromServer
    | CreateFromServer
    | DeleteInCrm
    | DetachInCrm
    | RecordState
    | Forget
    | Merge
)


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    skipped: tuple[tuple[str, str], ...]  # (item, reason): unreadable or ignored items
    notices: tuple[tuple[str, str], ...] = ()  # (item, text): done, but worth telling a user
    #: (follow-up id, message): items whose decision failed (a document that cannot be
    #: mapped or compared); errors of the pass, while every other item is decided.
    failed: tuple[tuple[str, str], ...] = ()

    def count(self, side: str, verb: str) -> int:
        return sum(1 for a in self.actions if a.side == side and a.verb == verb)

    @property
    def conflicts(self) -> list[tuple[str, Conflict]]:
        return [
            (a.followup_id, c) for a in self.actions if isinstance(a, Merge) for c in a.conflicts
        ]

    def deletions(self) -> int:
        return sum(1 for a in self.actions if isinstance(a, (DeleteOnServer, DeleteInCrm)))


@dataclass(frozen=True, slots=True)
class Planned:
    """What a pass report keeps of one action: which, for whom and where, no documents.

    A pass plans and applies in chunks; its report lists every action planned without
    holding every document at once.
    """

    kind: str  # the action's class name: "CreateOnServer", "Merge", …
    followup_id: str
    side: str
    verb: str
    href: str | None = None
    push: bool = False  # Merge only
    pull: bool = False  # Merge only
    conflicts: int = 0  # Merge only
    #: For people reading a dry run: the follow-up's title and what the action changes
    #: (``mappings.equivalence.differences``); filled in by dry runs only.
    title: str | None = None
    changes: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, action: Action, *, title: str | None = None, changes: tuple[str, ...] = ()
    ) -> Planned:
        href = getattr(action, "href", None)
        if isinstance(action, Merge):
            return cls(
                "Merge",
                action.followup_id,
                action.side,
                action.verb,
                href,
                action.push,
                action.pull,
                len(action.conflicts),
                title,
                changes,
            )
        kind = type(action).__name__
        return cls(
            kind, action.followup_id, action.side, action.verb, href, title=title, changes=changes
        )

    def as_json(self) -> dict[str, object]:
        """The action for ``sync --dry-run --json``: what, to which follow-up, where."""
        return {
            "action": self.kind,
            "what": _WHAT[self.kind],
            "followup_id": self.followup_id,
            "title": self.title,
            "calendar_item": self.href,
            "changes": list(self.changes),
            "conflicts": self.conflicts,
        }


@dataclass(frozen=True)
class PlanSummary:
    """A whole pass's plan as its report keeps it (``Planned`` per action)."""

    actions: tuple[Planned, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (item, reason): unreadable or ignored items
    notices: tuple[tuple[str, str], ...] = ()  # (item, text): done, but worth telling a user

    def count(self, side: str, verb: str) -> int:
        return sum(1 for a in self.actions if a.side == side and a.verb == verb)

    def deletions(self) -> int:
        return sum(1 for a in self.actions if a.kind in ("DeleteOnServer", "DeleteInCrm"))


#: What each action does, in the words of someone who uses the CRM and a calendar.
_WHAT = {
    "CreateOnServer": "create in the calendar",
    "UpdateOnServer": "update in the calendar",
    "DeleteOnServer": "delete from the calendar",
    "SaveFromServer": "update the follow-up from the calendar",
    "CreateFromServer": "create a follow-up from the calendar",
    "DeleteInCrm": "delete the follow-up (deleted in the calendar)",
    "DetachInCrm": "unlink the follow-up (deleted in the calendar; kept in the CRM)",
    "RecordState": "nothing to write (both sides agree); remember it",
    "Forget": "forget (gone on both sides)",
    "Merge": "merge changes made on both sides",
}


def describe(action: Action | Planned) -> str:
    """One line per action for ``--dry-run`` and the log: what, to which follow-up, where."""
    planned = action if isinstance(action, Planned) else Planned.of(action)
    what = _WHAT[planned.kind]
    if planned.kind == "Merge":
        written = (("calendar", planned.push), ("follow-up", planned.pull))
        sides = [name for name, flag in written if flag]
        what += f" (writes the {' and the '.join(sides) or 'record only'})"
    line = f"{what}: follow-up {planned.followup_id}"
    if planned.title:
        line += f" {planned.title!r}"
    if planned.href:
        line += f", calendar item {planned.href}"
    elif planned.kind == "CreateOnServer":
        line += ", as a new calendar item"
    if planned.changes:
        line += f"; changes: {', '.join(planned.changes)}"
    if planned.conflicts:
        line += f"; {planned.conflicts} conflict(s)"
    return line
