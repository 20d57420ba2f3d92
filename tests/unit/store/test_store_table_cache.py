"""The store's table cache follows the catalog: a dataset whose schema changed (e.g. an
``ALTER COLUMN … ENCRYPTED WITH`` run by the SQL engine) is not served stale columns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import sqlalchemy as sa

from cleanroom.store import DatasetInfo, open_store
from cleanroom.store.schema import ColumnSpec, DatasetSchema


def test_a_changed_schema_gets_a_fresh_table(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    schema = DatasetSchema(
        table="t",
        columns=(ColumnSpec(name="a", sql_type="int", encrypted=False),),
    )
    info = DatasetInfo(party="p", table_name="ds_p_t", schema=schema)
    before = store._table(info)
    changed = dataclasses.replace(
        schema, columns=(ColumnSpec(name="a", sql_type="nvarchar(10)", encrypted=False),)
    )
    after = store._table(DatasetInfo(party="p", table_name="ds_p_t", schema=changed))
    assert after is not before
    assert not isinstance(after.c["a"].type, type(before.c["a"].type))
    assert isinstance(before.c["a"].type, sa.types.TypeEngine)
