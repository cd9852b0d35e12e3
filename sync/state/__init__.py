"""The database: tables, migrations, and the only place that writes SQL on the sync tables."""
