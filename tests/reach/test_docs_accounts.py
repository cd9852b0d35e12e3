"""The accounts shown in docs/how-to/servers-and-sign-in.md load as they are written."""

from __future__ import annotations

import re
from pathlib import Path

from sync.config import load_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "servers-and-sign-in.md"


def test_every_account_in_the_sign_in_guide_is_a_valid_config(tmp_path: Path) -> None:
    blocks = [
        b for b in re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S) if "[accounts." in b
    ]
    assert len(blocks) >= 6  # OAuth example, Nextcloud, iCloud, Google, Fastmail, self-hosted
    names = set()
    for number, block in enumerate(blocks):
        config = tmp_path / f"doc-{number}.toml"
        config.write_text(block)
        names |= set(load_settings(config, environ={}).accounts)
    assert {"nextcloud", "icloud", "google", "fastmail", "home"} <= names
