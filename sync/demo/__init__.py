"""``make demo``: the whole loop on an embedded Radicale and SQLite."""
