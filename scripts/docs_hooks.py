"""MkDocs hooks: reference pages generated from the code when the site is built.

* ``<!-- generated: config-reference -->`` becomes one table per config table, from the
  pydantic settings models (key, type, default) with each key's explanation taken from
  the example config, whose comments are the user-facing text (``#:`` comments in the
  model are the fall-back).
* ``<!-- generated: http-api-reference -->`` becomes the routes of the HTTP API, from the
  OpenAPI document the app itself serves; the document is added to the site as
  ``reference/openapi.json``.

The CLI reference needs no hook: mkdocs-click reads the click commands. So a reference
page cannot drift from the code: a new option or key appears at the next build. Written
here because no MkDocs plugin documents pydantic settings together with a commented
example file, and the API page only needs a table, not an embedded Swagger UI.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from sync.api.app import create_app
from sync.config import Account, DaemonSettings, Settings
from sync.mail_config import ImapSettings, MailSettings
from sync.state.db import Database

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "followup-sync.example.toml"
CONFIG_MARKER = "<!-- generated: config-reference -->"
API_MARKER = "<!-- generated: http-api-reference -->"
OPENAPI_FILE = "reference/openapi.json"

#: (table as written in a file, model, keys left out)
TABLES: tuple[tuple[str, type[BaseModel], frozenset[str]], ...] = (
    ("top level", Settings, frozenset({"daemon", "accounts", "mail"})),
    ("[daemon]", DaemonSettings, frozenset()),
    ("[accounts.NAME]", Account, frozenset({"name"})),
    ("[mail]", MailSettings, frozenset({"imap"})),
    ("[mail.imap]", ImapSettings, frozenset()),
)
METHODS = ("get", "put", "post", "delete", "patch")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    document = json.dumps(_openapi(), indent=2, ensure_ascii=False)
    files.append(File.generated(config, OPENAPI_FILE, content=document))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if CONFIG_MARKER in markdown:
        markdown = markdown.replace(CONFIG_MARKER, config_reference())
    if API_MARKER in markdown:
        markdown = markdown.replace(API_MARKER, api_reference())
    return markdown


# --- the config reference ------------------------------------------------------------------


def config_reference() -> str:
    explained = _example_comments(EXAMPLE.read_text(encoding="utf-8"))
    parts = []
    for table, model, left_out in TABLES:
        rows = ["| Key | Type | Default | What it does |", "|---|---|---|---|"]
        own_comments = _source_comments(model)
        for name, field in model.model_fields.items():
            if name in left_out:
                continue
            key = field.alias or name
            text = explained.get((table, key)) or own_comments.get(name, "")
            rows.append(
                f"| `{key}` | {_type(field.annotation)} | {_default(field)} | {_cell(text)} |"
            )
        parts.append(f"### {table}\n\n" + "\n".join(rows))
    return "\n\n".join(parts)


def _example_comments(text: str) -> dict[tuple[str, str], str]:
    """(table, key) -> the comments above (and after) the key in the example config.

    A commented-out assignment (``# password_file = …``) documents its key like a real
    one; comment lines run up to the key they stand above, a blank line ends them.
    """
    found: dict[tuple[str, str], str] = {}
    table = "top level"
    block: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        header = re.fullmatch(r"\[([^\]]+)\]", stripped)
        content = stripped.lstrip("#").strip()
        assignment = re.match(r"^([a-z_]+)\s*=\s*(.*)$", content)
        if header:
            name = header.group(1)
            table = "[accounts.NAME]" if name.startswith("accounts.") else f"[{name}]"
            block = []
        elif assignment:
            key, rest = assignment.groups()
            trailing = rest.split("#", 1)[1].strip() if "#" in rest else ""
            comment = " ".join([*block, trailing]).strip()
            known = found.get((table, key), "")
            if comment and comment not in known:
                found[(table, key)] = f"{known} {comment}".strip()
            block = []
        elif stripped.startswith("#"):
            block.append(content)
        else:
            block = []
    return found


def _source_comments(model: type[BaseModel]) -> dict[str, str]:
    """field -> its ``#:`` comment in the model's source."""
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(model).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        field = re.match(r"^([a-z_]+)\s*:", stripped)
        if field and pending:
            comments[field.group(1)] = " ".join(pending)
        pending = []
    return comments


def _type(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "")
    text = re.sub(r"<enum '(\w+)'>|<class '([\w.]+)'>", lambda m: m.group(1) or m.group(2), text)
    text = re.sub(r"\b[\w.]+\.(\w+)", r"\1", text)
    return f"`{text}`"


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None:
        return "—"
    if hasattr(value, "value"):  # an enum member: show what the file takes
        value = value.value
    return f"`{json.dumps(value, ensure_ascii=False, default=str)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


# --- the HTTP API reference ----------------------------------------------------------------


def _openapi() -> dict[str, Any]:
    db = Database("sqlite:///:memory:")
    try:
        return create_app(db, token="documentation").openapi()
    finally:
        db.close()


def api_reference() -> str:
    document = _openapi()
    rows = ["| Method | Path | What it does |", "|---|---|---|"]
    for path, operations in document["paths"].items():
        for method in METHODS:
            operation = operations.get(method)
            if operation is None:
                continue
            summary = operation.get("description") or operation.get("summary") or ""
            first = summary.strip().split("\n\n")[0].replace("\n", " ")
            rows.append(f"| `{method.upper()}` | `{path}` | {_cell(first)} |")
    info = document["info"]
    return (
        f"OpenAPI {document['openapi']}, *{info['title']}* version {info['version']}. "
        f"The whole document: [openapi.json](openapi.json).\n\n" + "\n".join(rows)
    )
