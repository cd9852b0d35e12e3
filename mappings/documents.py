"""Follow-up documents in and out: JSON text or data to validated ``FollowUp`` models.

``mappings.model`` says what a follow-up is; this module reads one from what the CRM,
the CLI or the HTTP API hands over, and writes them back. A document is valid when the
model accepts it *and* its recurrence holds (``mappings.occurrences.validate_followup``:
a real pattern, exceptions that hit an occurrence), so loading sits above both. Every
refusal is a ``MappingError`` naming the follow-up and the field, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from mappings.errors import DATA_ERRORS, MappingError
from mappings.model import FollowUp
from mappings.occurrences import validate_followup


def _error_from_validation(exc: ValidationError, item: str | None) -> MappingError:
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    # Our own validators name the field at the start of the message ("end: is before start").
    head, sep, rest = message.partition(": ")
    if not loc and sep and " " not in head:
        return MappingError(rest, item=item, field=head)
    return MappingError(message, item=item, field=loc or None)


def load_followup(data: Any) -> FollowUp:
    """Validate one follow-up document; a MappingError names the id and the field."""
    item = str(data.get("id")) if isinstance(data, dict) and data.get("id") is not None else None
    if not isinstance(data, dict):
        raise MappingError("a follow-up must be a JSON object", item=item)
    unencodable = _unencodable_text(data)
    if unencodable is not None:
        path, text = unencodable
        raise MappingError(
            f"holds {text!r}, a lone UTF-16 surrogate, which is not text", item=item, field=path
        )
    # Checks that need the whole model (patterns, exception keys) live with the recurrence code.
    try:
        followup = FollowUp.model_validate(data)
        validate_followup(followup)
    except ValidationError as exc:
        raise _error_from_validation(exc, item) from None
    except MappingError as exc:
        if exc.item is None:
            exc.item = item
        raise
    except DATA_ERRORS as exc:
        # Found by tests/reliability/test_fuzz.py: a document broken in a way no validator
        # foresaw is still a clear error about this item, never a crash of the import.
        message = f"cannot be read: {type(exc).__name__}: {exc}"
        raise MappingError(message, item=item, field="document") from None
    return followup


def _unencodable_text(data: Any, path: str = "") -> tuple[str, str] | None:
    """The first string (or key) with a lone surrogate, as (field path, the surrogate).

    JSON can spell one (``"\\ud800"``) and Python's parser accepts it, but it is not text:
    it cannot be stored, hashed or written to a calendar.
    """
    if isinstance(data, str):
        # Strict UTF-8 refuses exactly the surrogates, and does it in C: a character loop
        # here was half the time of loading a stored document (23 ms per 500 series).
        try:
            data.encode("utf-8")
        except UnicodeEncodeError as exc:
            return path or "document", data[exc.start]
        return None
    if isinstance(data, dict):
        children: Iterable[tuple[str, Any]] = data.items()
    elif isinstance(data, list):
        children = ((str(index), item) for index, item in enumerate(data))
    else:
        return None
    for key, value in children:
        where = f"{path}.{key}" if path else str(key)
        found = _unencodable_text(key, where) or _unencodable_text(value, where)
        if found is not None:
            return found
    return None


def load_followups(data: Any) -> list[FollowUp]:
    """One document or an array of them; one id twice in an array is refused."""
    items: Iterable[Any] = data if isinstance(data, list) else [data]
    followups = [load_followup(item) for item in items]
    first_at: dict[str, int] = {}
    for position, followup in enumerate(followups, start=1):
        earlier = first_at.setdefault(followup.id, position)
        if earlier != position:
            # The second would silently replace the first on import.
            raise MappingError(
                f"appears twice in this file: follow-ups number {earlier} and {position} "
                "(counting from 1) have this id",
                item=followup.id,
                field="id",
            )
    return followups


def load_followups_json(text: str | bytes) -> list[FollowUp]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MappingError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except UnicodeDecodeError as exc:
        raise MappingError(f"not valid JSON: not UTF-8 at byte {exc.start}") from None
    except RecursionError:
        raise MappingError("not valid JSON: nested too deeply to read") from None
    except ValueError as exc:
        # json turns digits into an int; Python refuses more than sys.get_int_max_str_digits().
        raise MappingError(f"not valid JSON: {_number_error(exc)}") from None
    return load_followups(data)


def _number_error(exc: ValueError) -> str:
    """Python's message for a number with too many digits, without its advice to programmers."""
    message = str(exc)
    if "integer string conversion" in message:
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return message


def dump_followups_json(followups: Iterable[FollowUp]) -> str:
    return json.dumps([f.to_json_dict() for f in followups], indent=2, ensure_ascii=False)
