"""``/docs`` works offline: Swagger UI's files come from this server, none from a CDN."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from fastapi import FastAPI

from sync.api.app import create_app
from sync.state.db import Database
from tests.sync.api.served import serve


@pytest.fixture(scope="module", params=["alone", "under a prefix"])
def docs_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    db = Database.open(str(Path(tmp_path_factory.mktemp("docs")) / "api.sqlite"))
    api = create_app(db, token="t0ken")
    if request.param == "alone":
        with serve(api) as base:
            yield f"{base}/docs"
    else:
        outer = FastAPI()
        outer.mount("/crm", api)
        with serve(outer) as base:
            yield f"{base}/crm/docs"
    db.close()


def test_docs_page_and_every_file_it_loads_come_from_this_server(docs_url: str) -> None:
    with httpx.Client(timeout=10) as anonymous:  # no token: the page shows the public schema
        page = anonymous.get(docs_url)
        assert page.status_code == 200
        html = page.text
        assert "cdn" not in html.lower()
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html)
        loaded = [u for pair in urls for u in pair if u]
        assert not [u for u in loaded if u.startswith(("http:", "https:", "//"))], loaded
        assert any(u.endswith("swagger-ui-bundle.js") for u in loaded)
        assert any(u.endswith("/openapi.json") for u in loaded)
        for url in loaded:
            reply = anonymous.get(urljoin(docs_url, url))
            assert reply.status_code == 200, url
            assert len(reply.content) > 100, url
        script = anonymous.get(urljoin(docs_url, next(u for u in loaded if u.endswith(".js"))))
        assert "SwaggerUIBundle" in script.text
