"""Table creation that tolerates replicas starting at the same moment.

Every store creates its tables on first use. Two processes (or threads) on
one database can both pass SQLAlchemy's existence check and both issue the
CREATE; the loser gets an error (PostgreSQL: a duplicate key in the catalog,
SQLite: "already exists") although the table it wanted is now there.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["create_tables"]

_ATTEMPTS = 3


def create_tables(metadata: sa.MetaData, engine: Engine) -> None:
    """``metadata.create_all(engine)``, looking again after losing a race."""
    for attempt in range(_ATTEMPTS):
        try:
            metadata.create_all(engine)
            return
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
            if attempt == _ATTEMPTS - 1:
                raise
            time.sleep(0.05)
