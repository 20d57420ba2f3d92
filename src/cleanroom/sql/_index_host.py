"""The host's side of sealed enclave indexes: the ``cr_enclave_index`` catalog table.

One row per index: which dataset table and column it covers, the name of the column
encryption key the blob is sealed under, the last row id it covers, when it was built, and
the sealed blob (one Always Encrypted cell; see :mod:`cleanroom.sql.index`). The host learns
the blob's size and nothing else about the values. The table is created on first use.

Each row also records the dataset's creation time: an index of a dataset that was dropped
and made again under the same table name (row ids start over) is never used, and goes at
the next ``CREATE INDEX`` on that table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

CATALOG: Final = "cr_enclave_index"
_NAME: Final = 128

_metadata = sa.MetaData()
_catalog = sa.Table(
    CATALOG,
    _metadata,
    sa.Column("table_name", sa.String(_NAME), primary_key=True),
    sa.Column("index_name", sa.String(_NAME), primary_key=True),
    sa.Column("column_name", sa.String(_NAME), nullable=False),
    sa.Column("cek_name", sa.String(_NAME), nullable=False),
    sa.Column("max_row_id", sa.BigInteger(), nullable=False),
    sa.Column("created", sa.String(40), nullable=False),
    sa.Column("dataset_created", sa.String(40), nullable=False),
    sa.Column("blob", sa.LargeBinary(), nullable=False),
)


@dataclass(frozen=True, slots=True)
class StoredIndex:
    """One catalog row."""

    name: str
    column: str
    cek: str
    max_row_id: int
    blob: bytes = field(repr=False)


_datasets = sa.table(
    "datasets",
    sa.column("table_name", sa.String()),
    sa.column("create_date", sa.DateTime(timezone=True)),
)


def _exists(conn: Connection) -> bool:
    return bool(sa.inspect(conn).has_table(CATALOG))


def dataset_stamp(conn: Connection, table_name: str) -> str:
    """When the dataset stored in ``table_name`` was created (as text)."""
    value = conn.execute(
        sa.select(_datasets.c.create_date).where(_datasets.c.table_name == table_name)
    ).scalar_one()
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def find(conn: Connection, table_name: str, column: str) -> StoredIndex | None:
    """The newest index on ``table_name.column`` of the dataset stored there now, if any."""
    if not _exists(conn):
        return None
    c = _catalog.c
    stamp = dataset_stamp(conn, table_name)
    row = conn.execute(
        sa.select(c.index_name, c.column_name, c.cek_name, c.max_row_id, c.blob)
        .where(
            (c.table_name == table_name) & (c.column_name == column) & (c.dataset_created == stamp)
        )
        .order_by(c.created.desc(), c.index_name)
        .limit(1)
    ).first()
    if row is None:
        return None
    return StoredIndex(row[0], row[1], row[2], int(row[3]), bytes(row[4]))


def names(conn: Connection, table_name: str) -> list[str]:
    """The names of the indexes on ``table_name`` (first dropping those of an earlier
    dataset of the same table name)."""
    if not _exists(conn):
        return []
    c = _catalog.c
    stamp = dataset_stamp(conn, table_name)
    conn.execute(
        sa.delete(_catalog).where((c.table_name == table_name) & (c.dataset_created != stamp))
    )
    rows = conn.execute(sa.select(c.index_name).where(c.table_name == table_name)).all()
    return sorted(str(r[0]) for r in rows)


def insert(
    conn: Connection,
    *,
    table_name: str,
    name: str,
    column: str,
    cek: str,
    max_row_id: int,
    blob: bytes,
) -> None:
    """Store a new index (the catalog table is made if missing)."""
    _metadata.create_all(conn, checkfirst=True)
    values: dict[str, Any] = {
        "table_name": table_name,
        "index_name": name,
        "column_name": column,
        "cek_name": cek,
        "max_row_id": max_row_id,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "dataset_created": dataset_stamp(conn, table_name),
        "blob": blob,
    }
    conn.execute(sa.insert(_catalog).values(values))


def drop(conn: Connection, table_name: str, name: str) -> int:
    """Remove the index ``name`` of ``table_name``; the number of rows removed (0 or 1)."""
    if not _exists(conn):
        return 0
    c = _catalog.c
    result = conn.execute(
        sa.delete(_catalog).where((c.table_name == table_name) & (c.index_name == name))
    )
    return int(result.rowcount or 0)


def drop_column(conn: Connection, table_name: str, column: str) -> int:
    """Remove every index on ``table_name.column`` (its values or key are changing)."""
    if not _exists(conn):
        return 0
    c = _catalog.c
    result = conn.execute(
        sa.delete(_catalog).where((c.table_name == table_name) & (c.column_name == column))
    )
    return int(result.rowcount or 0)


__all__ = [
    "CATALOG",
    "StoredIndex",
    "dataset_stamp",
    "drop",
    "drop_column",
    "find",
    "insert",
    "names",
]
