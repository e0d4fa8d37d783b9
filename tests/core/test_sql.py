"""Stores create their tables on first use; replicas starting together on one
database must all start, whichever of them wins the CREATE."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mantlet.core.sql import create_tables


def test_replicas_creating_tables_together_on_one_sqlite_file_all_start(
    tmp_path: Path, start_together: Any
) -> None:
    metadata = sa.MetaData()
    for name in ("keys", "records", "nodes", "factors"):
        sa.Table(name, metadata, sa.Column("id", sa.Integer, primary_key=True))
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engines = [sa.create_engine(url, connect_args={"timeout": 30}) for _ in range(8)]
    try:
        _, errors = start_together(len(engines), lambda i: create_tables(metadata, engines[i]))
        assert errors == []
        assert sa.inspect(engines[0]).has_table("factors")
    finally:
        for engine in engines:
            engine.dispose()
