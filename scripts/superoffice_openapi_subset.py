"""Cut the SuperOffice API descriptions down to the endpoints the stand-in serves.

SuperOffice publishes its Web API as Swagger 2.0 files in the SuperOfficeDocs/docs repository
(`api-sources/openapi/`). The three we need weigh about 550 kB and describe some 150 operations;
the stand-in serves 18. This script copies, unchanged, only those operations and the definitions
they reach through `$ref`, so the vendored files stay small and every byte in them is SuperOffice's.
The conversion to OpenAPI 3 (which openapi-core needs) happens at load time in
`sync/testing/superoffice/contract.py`, where each deviation is named.

Run it against a clone of SuperOfficeDocs/docs and name the commit:

    python3 scripts/superoffice_openapi_subset.py /path/to/docs-clone COMMIT

It rewrites `sync/testing/superoffice/openapi/*.json` and prints the source URL of each file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "sync" / "testing" / "superoffice" / "openapi"

# source file in the docs repository -> {path: [methods]} the stand-in serves
SUBSETS: dict[str, dict[str, list[str]]] = {
    "api-sources/openapi/rest/Swagger-v1-Appointment.json": {
        "/api/v1/Appointment": ["get", "post"],
        "/api/v1/Appointment/{id}": ["get", "put", "delete"],
    },
    "api-sources/openapi/agent/Swagger-v1-AppointmentAgent.json": {
        f"/api/v1/Agents/Appointment/{name}": ["post"]
        for name in (
            "GetAppointmentEntity",
            "GetAppointmentRecords",
            "CalculateDays",
            "Save",
            "Delete",
            "Move",
            "UpdateAppointmentWithMode",
        )
    },
    "api-sources/openapi/rest/Swagger-v1-Webhook.json": {
        "/api/v1/Webhook": ["get", "post"],
        "/api/v1/Webhook/{id}": ["get", "put", "delete"],
        "/api/v1/Webhook/Test": ["post"],
    },
}


def referenced_definitions(node: Any, found: set[str]) -> None:
    """Collect every `#/definitions/X` reachable from `node` (callers then close over them)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            found.add(ref.removeprefix("#/definitions/"))
        for value in node.values():
            referenced_definitions(value, found)
    elif isinstance(node, list):
        for value in node:
            referenced_definitions(value, found)


def subset(document: dict[str, Any], wanted: dict[str, list[str]]) -> dict[str, Any]:
    """The document with only the wanted operations and the definitions they reach."""
    paths = {
        path: {method: document["paths"][path][method] for method in methods}
        for path, methods in wanted.items()
    }
    definitions = document["definitions"]
    reached: set[str] = set()
    referenced_definitions(paths, reached)
    pending = set(reached)
    while pending:
        name = pending.pop()
        more: set[str] = set()
        referenced_definitions(definitions[name], more)
        pending |= more - reached
        reached |= more
    kept = {key: document[key] for key in document if key not in ("paths", "definitions", "tags")}
    kept["paths"] = paths
    kept["definitions"] = {name: definitions[name] for name in definitions if name in reached}
    return kept


def main(clone: str, commit: str) -> None:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    for source, wanted in SUBSETS.items():
        text = subprocess.run(
            ["git", "-C", clone, "show", f"{commit}:{source}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        cut = subset(json.loads(text), wanted)
        target = OUTPUT_DIR / Path(source).name
        target.write_text(json.dumps(cut, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        url = f"https://github.com/SuperOfficeDocs/docs/blob/{commit}/{source}"
        counts = f"{len(cut['paths'])} paths, {len(cut['definitions'])} definitions"
        print(f"{target.name}: {counts} <- {url}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
