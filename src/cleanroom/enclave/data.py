"""Reading one party's dataset inside the enclave: stream, digest, decrypt, validate.

Rows are read in ``row_id`` (load) order in batches (``yield_per``), so memory holds one
batch of cells at a time plus the decrypted feature columns the job needs.

Dataset digest (format ``cleanroom-dataset-digest/1``): SHA-256 over every row in
``row_id`` order and, within a row, every schema column in schema order of::

    NULL            -> 0x00
    cell (bytes)    -> 0x01 || uint32_be(len) || cell
    plaintext value -> 0x02 || uint32_be(len) || UTF-8 JSON of the value (str() for non-JSON)

It covers only what the operator stores (ciphertext), so anyone with read access to the
store can recompute it (:func:`dataset_digest`) and compare it with the training receipt.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from cleanroom.crypto import CellCipher, ColumnEncryptionKey, EncryptionType, denormalize_many
from cleanroom.errors import (
    DecryptionError,
    NormalizationError,
    SchemaError,
    StorageError,
    TrainingError,
)
from cleanroom.store import ROW_ID, ColumnSpec, DatasetInfo, DatasetSchema, Store

#: Format tag of :func:`dataset_digest`.
DIGEST_FORMAT = "cleanroom-dataset-digest/1"
#: Rows fetched and decrypted per batch.
DEFAULT_BATCH_ROWS = 20_000

_LEN = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class DatasetDigest:
    """Row count and SHA-256 (hex) of a dataset's stored cells (module docstring)."""

    rows: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        """``{"format", "rows", "sha256"}``."""
        return {"format": DIGEST_FORMAT, "rows": self.rows, "sha256": self.sha256}


def _digest_batch(hasher: Any, batch: Sequence[tuple[Any, ...]]) -> None:
    """:func:`_digest_value` of every value of every row, in one ``update`` per batch."""
    parts: list[bytes] = []
    append = parts.append
    pack = _LEN.pack
    for row in batch:
        for value in row:
            if type(value) is bytes:
                append(b"\x01")
                append(pack(len(value)))
                append(value)
            elif value is None:
                append(b"\x00")
            else:
                append(_encode_other(value))
    hasher.update(b"".join(parts))


def _encode_other(value: Any) -> bytes:
    if isinstance(value, bytearray | memoryview):
        data = bytes(value)
        return b"\x01" + _LEN.pack(len(data)) + data
    text = json.dumps(value, default=str, ensure_ascii=False).encode("utf-8")
    return b"\x02" + _LEN.pack(len(text)) + text


def iter_stored_rows(
    store: Store, info: DatasetInfo, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> Iterator[Sequence[tuple[Any, ...]]]:
    """Batches of stored rows (cells stay cells), schema columns in order, ``row_id`` order."""
    names = info.schema.column_names
    table = sa.table(info.table_name, sa.column(ROW_ID), *[sa.column(n) for n in names])
    query = sa.select(*[table.c[n] for n in names]).order_by(table.c[ROW_ID])
    try:
        with store.reading() as conn:
            result = conn.execution_options(yield_per=batch_rows).execute(query)
            for part in result.partitions():
                yield [tuple(row) for row in part]
    except sa.exc.SQLAlchemyError as error:
        cause = type(getattr(error, "orig", None) or error).__name__
        raise StorageError(f"reading dataset {info.name!r} failed ({cause})") from None


def dataset_digest(
    store: Store, party: str, table: str, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> DatasetDigest:
    """Recompute a dataset's digest from the store (operator side: ciphertext only)."""
    info = store.dataset(party, table)
    hasher = hashlib.sha256()
    rows = 0
    for batch in iter_stored_rows(store, info, batch_rows=batch_rows):
        _digest_batch(hasher, batch)
        rows += len(batch)
    return DatasetDigest(rows=rows, sha256=hasher.hexdigest())


def schema_signature(schema: DatasetSchema) -> list[dict[str, Any]]:
    """What must agree between parties: each column's JSON form without its CEK name."""
    out = []
    for column in schema.columns:
        described = column.to_dict()
        described.pop("cek", None)
        out.append(described)
    return out


def check_schema(party: str, stored: DatasetSchema, expected: DatasetSchema) -> None:
    """Refuse a stored schema that differs from ``expected`` (names the party and column)."""
    have, want = schema_signature(stored), schema_signature(expected)
    if stored.label != expected.label:
        raise TrainingError(f"party {party!r}: the dataset's label column differs from the schema")
    have_names = [c["name"] for c in have]
    want_names = [c["name"] for c in want]
    if have_names != want_names:
        extra = [n for n in have_names if n not in want_names]
        missing = [n for n in want_names if n not in have_names]
        detail = ", ".join(
            [*(f"unexpected {n!r}" for n in extra), *(f"missing {n!r}" for n in missing)]
        )
        raise TrainingError(
            f"party {party!r}: the dataset's columns differ from the schema ({detail or 'order'})"
        )
    for mine, theirs in zip(have, want, strict=True):
        if mine != theirs:
            raise TrainingError(
                f"party {party!r}: column {mine['name']!r} differs from the schema "
                "(type, encryption, categories or bounds)"
            )


def _to_column(values: list[Any]) -> Any:
    """Plain values -> a float array (NaN for NULL) when they are all numbers, else objects."""
    try:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return np.array(values, dtype=object)


class _ColumnDecryptor:
    def __init__(self, party: str, spec: ColumnSpec, cipher: CellCipher | None) -> None:
        self.party = party
        self.spec = spec
        self.cipher = cipher

    def values(self, cells: list[Any]) -> list[Any]:
        spec = self.spec
        if self.cipher is None:
            plain_values = cells
        else:
            present = [i for i, cell in enumerate(cells) if cell is not None]
            plain_values = [None] * len(cells)
            if present:
                try:
                    plain = self.cipher.decrypt_many([cells[i] for i in present])
                    sql_type = spec.column_type.sql_type
                    if spec.column_type.is_integer:
                        distinct = list(set(plain))
                        memo = dict(
                            zip(distinct, denormalize_many(distinct, sql_type), strict=True)
                        )
                        decoded = [memo[d] for d in plain]
                    else:
                        decoded = denormalize_many(plain, sql_type)
                except (DecryptionError, NormalizationError):
                    raise TrainingError(
                        f"party {self.party!r}: column {spec.name!r}: a cell does not decrypt "
                        "under the party's key"
                    ) from None
                for index, value in zip(present, decoded, strict=True):
                    plain_values[index] = value
        try:
            return spec.coerce_many(plain_values)
        except (ValueError, SchemaError) as error:
            raise TrainingError(
                f"party {self.party!r}: column {spec.name!r}: {error} (value withheld)"
            ) from None


def read_party_frame(
    store: Store,
    info: DatasetInfo,
    *,
    ceks: Mapping[str, ColumnEncryptionKey],
    columns: Sequence[str],
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> tuple[pd.DataFrame, DatasetDigest]:
    """Decrypt and validate ``info``'s rows; the frame of ``columns`` and the digest.

    Every schema column is decrypted and validated (categories, bounds, required values),
    not only ``columns``. Errors name the party and the column, never a value.
    """
    party = info.party
    ciphers: dict[tuple[str, str], CellCipher] = {}
    decryptors: list[_ColumnDecryptor] = []
    for spec in info.schema.columns:
        cipher = None
        if spec.encrypted:
            if spec.cek is None or spec.cek not in ceks:
                raise TrainingError(f"party {party!r}: column {spec.name!r}: no key was released")
            cache_key = (spec.cek, spec.encryption)
            cipher = ciphers.get(cache_key)
            if cipher is None:
                cipher = CellCipher(ceks[spec.cek], EncryptionType.parse(spec.encryption))
                ciphers[cache_key] = cipher
        decryptors.append(_ColumnDecryptor(party, spec, cipher))
    wanted = {name: i for i, name in enumerate(info.schema.column_names) if name in columns}
    missing = [c for c in columns if c not in wanted]
    if missing:
        raise TrainingError(f"party {party!r}: the dataset has no column(s) {', '.join(missing)}")
    parts: dict[str, list[Any]] = {name: [] for name in columns}
    hasher = hashlib.sha256()
    rows = 0
    for batch in iter_stored_rows(store, info, batch_rows=batch_rows):
        _digest_batch(hasher, batch)
        by_column = list(zip(*batch, strict=True))
        for position, decryptor in enumerate(decryptors):
            values = decryptor.values(list(by_column[position]))
            if decryptor.spec.name in parts:
                parts[decryptor.spec.name].append(_to_column(values))
        rows += len(batch)
    frame = pd.DataFrame(
        {
            name: (np.concatenate(chunks) if chunks else np.empty(0, dtype=np.float64))
            for name, chunks in parts.items()
        }
    )
    return frame, DatasetDigest(rows=rows, sha256=hasher.hexdigest())


__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DIGEST_FORMAT",
    "DatasetDigest",
    "check_schema",
    "dataset_digest",
    "iter_stored_rows",
    "read_party_frame",
    "schema_signature",
]
