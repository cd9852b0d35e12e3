"""Every table of the database, in one place: the modules that define them, imported here.

Creating the tables (``sync.state.schema.create_tables``), comparing the models with the
migrations and Alembic's autogenerate all need every table, not only those some caller
happened to import: they read ``METADATA`` from here. A module that adds tables to
``Base`` is listed here (and adds a revision in ``sync/state/migrations/versions``).
"""

from __future__ import annotations

from types import ModuleType

from sqlalchemy import MetaData

from sync.state import (
    changes,
    controls,
    crm_cursors,
    directions,
    invitation_records,
    outbox,
    rows,
)

#: The modules that define tables on ``rows.Base``.
TABLE_MODULES: tuple[ModuleType, ...] = (
    rows,
    changes,
    invitation_records,
    outbox,
    controls,
    directions,
    crm_cursors,
)

#: Every table (``rows.Base.metadata``, complete once the modules above are imported).
METADATA: MetaData = rows.Base.metadata
