"""``make demo-superoffice`` runs the whole loop with the stand-in CRM and ends well."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.demo import superoffice


def test_the_superoffice_demo_runs_the_loop_and_ends_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert superoffice.main() == 0
    shown = capsys.readouterr().out
    assert "1 written back" in shown and "moved in" in shown
