"""The example of docs/sql.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from cleanroom.client import PartyClient
from cleanroom.keystores import LocalKeyStore
from cleanroom.store import ColumnSpec, DatasetSchema, open_store

DOC = Path(__file__).parents[3] / "docs" / "sql.md"


def test_the_python_examples_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 2  # the first example, then the enclave index (same namespace)
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    key_store = LocalKeyStore(tmp_path / "keys")
    client = PartyClient(store, key_store, party="hospital_a")
    client.create_keys()
    client.create_dataset(
        DatasetSchema(
            table="People", columns=(ColumnSpec("name", "nvarchar(40)"), ColumnSpec("age", "int"))
        )
    )
    client.import_records(
        [{"name": n, "age": a} for n, a in [("Abe", 41), ("Bea", 50), ("Ann", 58), ("Al", 61)]],
        dataset="People",
    )
    namespace = {"store": store, "key_store": key_store}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102
    store.close()
