"""The wheel a user installs: built from a clean clone, installed into an empty venv.

What ``pip install followup-sync`` gives must run on its own: the console script, the
mapper commands, and a one-shot sync against a real server, with none of the extras
(no FastAPI, psycopg, keyring or Radicale). Optional parts say which extra they need.

Slow (about a minute): the empty venv installs the core dependencies from the package
index (pip's cache makes a second run faster).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.client_edits import PlainClient
from tests.servers import RunningServer

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def sh(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{argv}: {result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """(wheel, venv bin directory, build output) from a clone of the committed tree."""
    if not (ROOT / ".git").exists():
        pytest.fail("needs a git checkout to clone", pytrace=False)
    tmp = tmp_path_factory.mktemp("packaging")
    clone = tmp / "clone"
    sh("git", "clone", "--quiet", ROOT, clone)
    build_output = sh(sys.executable, "-m", "build", "--wheel", "--outdir", tmp / "dist", clone)
    [wheel] = (tmp / "dist").glob("*.whl")
    sh(sys.executable, "-m", "venv", tmp / "venv")
    bin_dir = tmp / "venv" / "bin"
    sh(bin_dir / "pip", "install", "--quiet", "--disable-pip-version-check", wheel)
    yield wheel, bin_dir, build_output


def test_the_build_has_no_license_deprecation_warnings(built: tuple[Path, Path, str]) -> None:
    _, _, output = built
    assert "SetuptoolsDeprecationWarning" not in output
    assert "License classifiers are deprecated" not in output
    assert "project.license` as a TOML table is deprecated" not in output


def test_the_wheel_ships_license_example_config_and_sample_followups(
    built: tuple[Path, Path, str],
) -> None:
    wheel, _, _ = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert {"sync/examples/config.example.toml", "sync/examples/followups.json"} <= names
    assert not any(n.startswith("tests/") or n.startswith("mappings/data") for n in names)
    assert "License-Expression: Apache-2.0" in text
    core = [line for line in text.splitlines() if line.startswith("Requires-Dist:")]
    for optional in ("fastapi", "uvicorn", "psycopg", "keyring", "radicale"):
        assert not any(optional in line and "extra ==" not in line for line in core), optional
    for extra in ("postgresql", "keyring", "api", "demo", "superoffice"):
        assert f"Provides-Extra: {extra}" in text


def test_console_script_maps_parses_and_syncs_without_extras(
    built: tuple[Path, Path, str], radicale_server: RunningServer, tmp_path: Path
) -> None:
    _, bin_dir, _ = built
    app = bin_dir / "followup-sync"
    assert "Sync and operations:" in sh(app, "--help")
    ics = tmp_path / "followups.ics"
    ics.write_text(sh(app, "map", ROOT / "examples" / "followups.json"))
    assert '"id": "1002"' in sh(app, "parse", ics)
    assert "[accounts.alice]" in sh(app, "config", "example")

    calendar = f"wheel-{uuid.uuid4().hex[:8]}"
    database = tmp_path / "state.sqlite"
    sh(app, "import", ROOT / "examples" / "followups.json", "--database", database)
    out = sh(
        app, "sync", "--url", radicale_server.base_url, "--username", "alice",
        "--password-env", "WHEEL_TEST_PASSWORD", "--calendar", calendar,
        "--database", database,
        env={"WHEEL_TEST_PASSWORD": radicale_server.password or ""},
    )  # fmt: skip
    assert "7 created" in out
    url = f"{radicale_server.home_url}{calendar}/"
    assert len(PlainClient(url, radicale_server.username, radicale_server.password).list()) == 7


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["followup-sync", "api"], "api"),
        (["python", "-m", "sync.demo"], "demo"),
        (["followup-sync", "export", "--database", "postgresql+psycopg://u@127.0.0.1/x"],
         "postgresql"),
    ],
)  # fmt: skip
def test_an_optional_part_without_its_extra_names_the_extra(
    built: tuple[Path, Path, str], argv: list[str], extra: str
) -> None:
    _, bin_dir, _ = built
    result = subprocess.run(
        [str(bin_dir / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "FOLLOWUP_SYNC_API_TOKEN": "t"},
    )
    assert result.returncode != 0
    assert f"pip install 'followup-sync[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr
