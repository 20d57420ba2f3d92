"""Reading a CSV file or a DataFrame into validated, typed columns (no I/O to the store).

Validation happens before anything is encrypted or written. An error names the CSV line
(or DataFrame row) and the column; it quotes the offending value only for a column that is
stored in plaintext anyway — never for an encrypted one.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleanroom.crypto.normalize import normalize, normalize_many
from cleanroom.errors import NormalizationError, SchemaError
from cleanroom.store import ColumnSpec, DatasetSchema

if TYPE_CHECKING:
    import pandas as pd

_SHOWN = 40


@dataclass(frozen=True, slots=True)
class Columns:
    """Validated data: one list per schema column (``None`` = NULL), all the same length.

    For encrypted columns the values are already normalized to bytes (ready to encrypt);
    for plaintext columns they are the typed Python values.
    """

    values: Mapping[str, list[Any]]
    rows: int


#: Rows validated at a time: a bad value is reported from the first chunk that has one.
CHUNK_ROWS = 10_000

#: ``ready(number, rows, columns)``: called for each chunk of ``chunk_rows`` rows as soon as
#: it is validated, with the chunk's number, the total row count and the chunk's normalized
#: encrypted columns, so that their encryption can start while later chunks are checked.
#: The whole input is still validated before ``read_*`` returns; after an error the
#: caller must discard whatever it started.
ColumnReady = Callable[[int, int, Mapping[str, list[bytes | None]]], None]


def read_csv(
    path: str | Path,
    schema: DatasetSchema,
    *,
    ready: ColumnReady | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Columns:
    """Read and validate a CSV file whose header names the schema's columns."""
    file = Path(path)
    try:
        handle = file.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise SchemaError(f"cannot read {file}: {error.strerror}") from None
    with handle:
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise SchemaError(f"{file}: the file is empty (expected a header line)")
            order = _header_order(header, schema, where=f"{file}: line 1")
            raw: list[list[str]] = [[] for _ in order]
            lines: list[int] = []
            width = len(header)
            for record in reader:
                if not record:
                    continue  # blank line
                if len(record) != width:
                    raise SchemaError(
                        f"{file}: line {reader.line_num}: expected {width} fields, "
                        f"found {len(record)}"
                    )
                lines.append(reader.line_num)
                for slot, index in enumerate(order):
                    raw[slot].append(record[index])
        except csv.Error as error:
            raise SchemaError(f"{file}: line {reader.line_num}: malformed CSV ({error})") from None
        except UnicodeDecodeError:
            raise SchemaError(f"{file}: the file is not UTF-8 text") from None
    # CSV cannot tell an empty string from a missing value: an empty field is NULL.
    columns = {
        name: [None if v == "" else v for v in values]
        for name, values in zip(schema.column_names, raw, strict=True)
    }
    return _validate(
        columns, schema, len(lines), lambda i: f"{file}: line {lines[i]}", ready, chunk_rows
    )


def read_dataframe(
    frame: pd.DataFrame,
    schema: DatasetSchema,
    *,
    ready: ColumnReady | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Columns:
    """Validate a DataFrame whose columns are the schema's columns (any order)."""
    names = [str(c) for c in frame.columns]
    order = _header_order(names, schema, where="DataFrame")
    columns = {
        spec.name: frame.iloc[:, index].tolist()
        for spec, index in zip(schema.columns, order, strict=True)
    }
    return _validate(columns, schema, len(frame), lambda i: f"DataFrame row {i}", ready, chunk_rows)


def read_records(
    records: Sequence[Mapping[str, Any]],
    schema: DatasetSchema,
    *,
    ready: ColumnReady | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Columns:
    """Validate a sequence of row mappings (each must have exactly the schema's columns)."""
    wanted = set(schema.column_names)
    for index, record in enumerate(records):
        if set(record) != wanted:
            raise SchemaError(f"record {index}: its keys are not the schema's columns")
    columns = {name: [r[name] for r in records] for name in schema.column_names}
    return _validate(columns, schema, len(records), lambda i: f"record {i}", ready, chunk_rows)


def _header_order(header: Sequence[str], schema: DatasetSchema, *, where: str) -> list[int]:
    cleaned = [h.strip() for h in header]
    if len(set(cleaned)) != len(cleaned):
        raise SchemaError(f"{where}: a column name appears twice in the header")
    missing = [n for n in schema.column_names if n not in cleaned]
    unknown = [h for h in cleaned if h not in schema.column_names]
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if unknown:
            # Header names are schema, not data; cut them short all the same.
            parts.append("unknown " + ", ".join(h[:_SHOWN] for h in unknown))
        raise SchemaError(
            f"{where}: the columns do not match schema {schema.table!r} ({'; '.join(parts)})"
        )
    return [cleaned.index(n) for n in schema.column_names]


def _validate(
    columns: Mapping[str, list[Any]],
    schema: DatasetSchema,
    rows: int,
    where: Callable[[int], str],
    ready: ColumnReady | None,
    chunk_rows: int,
) -> Columns:
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    out: dict[str, list[Any]] = {spec.name: [] for spec in schema.columns}
    for number, start in enumerate(range(0, rows, chunk_rows)):

        def at(index: int, start: int = start) -> str:
            return where(start + index)

        encrypted: dict[str, list[bytes | None]] = {}
        for spec in schema.columns:
            values = columns[spec.name]
            part = values if rows <= chunk_rows else values[start : start + chunk_rows]
            typed = _coerce_column(spec, part, at)
            if spec.encrypted:
                typed = encrypted[spec.name] = _normalize_column(spec, typed, at)
            out[spec.name] += typed
        if ready is not None and encrypted:
            ready(number, rows, encrypted)
    return Columns(values=out, rows=rows)


def _coerce_column(spec: ColumnSpec, values: list[Any], where: Callable[[int], str]) -> list[Any]:
    try:
        return spec.coerce_many(values)
    except ValueError:
        pass
    for index, value in enumerate(values):  # find the first bad one, for the message
        try:
            spec.coerce(value)
        except ValueError as error:
            shown = "" if spec.encrypted else f" (value {str(value)[:_SHOWN]!r})"
            raise SchemaError(f"{where(index)}, column {spec.name!r}: {error}{shown}") from None
    raise AssertionError("unreachable: a value failed and then passed")  # pragma: no cover


def _normalize_column(
    spec: ColumnSpec, values: list[Any], where: Callable[[int], str]
) -> list[bytes | None]:
    sql_type = spec.column_type.sql_type
    try:
        if spec.column_type.is_integer:
            # Integer columns have few distinct values (ages, codes): normalize each once.
            memo: dict[Any, bytes | None] = {
                value: normalize(value, sql_type) for value in set(values) if value is not None
            }
            memo[None] = None
            return list(map(memo.__getitem__, values))
        present = [i for i, v in enumerate(values) if v is not None]
        normalized = normalize_many([values[i] for i in present], sql_type)
    except NormalizationError:
        for index, value in enumerate(values):  # find the first bad one, for the message
            if value is None:
                continue
            try:
                normalize(value, sql_type)
            except NormalizationError as error:
                # The normalizer's messages name the type, never the value.
                raise SchemaError(f"{where(index)}, column {spec.name!r}: {error}") from None
        raise
    if len(present) == len(values):
        return list(normalized)
    out: list[bytes | None] = [None] * len(values)
    for index, data in zip(present, normalized, strict=True):
        out[index] = data
    return out


__all__ = ["Columns", "read_csv", "read_dataframe", "read_records"]
