"""Reading one party's dataset inside the enclave: stream, digest, decrypt, validate.

Rows are read in ``row_id`` (load) order in batches (``yield_per``), so memory holds one
batch of cells at a time plus the decrypted feature columns the job needs. A batch of only
cells and NULLs, each column's cells of one length (the usual case), is joined once into
its digest framing; integer and bit columns are decrypted straight from views of it.

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
import multiprocessing as mp
import operator
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, repeat
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import sqlalchemy as sa

from cleanroom.crypto import CellCipher, ColumnEncryptionKey, EncryptionType, denormalize_many
from cleanroom.crypto.parallel import default_workers as cpu_workers
from cleanroom.crypto.parallel import fork_available
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


class _CellHeaders(dict[int, bytes]):
    """``0x01 || uint32_be(len)`` per cell length, computed once per length."""

    def __missing__(self, length: int) -> bytes:
        header = b"\x01" + _LEN.pack(length)
        self[length] = header
        return header


_CELL_HEADERS = _CellHeaders()

_CELL_TYPES = {bytes, type(None)}
#: Bytes of a joined batch per NULL above which its digest compacts the batch with numpy
#: instead of one ``update`` per NULL (each costs about as much as masking this many bytes).
_SEGMENT_BYTES = 256


def _digest_batch(hasher: Any, batch: Sequence[tuple[Any, ...]]) -> None:
    """The framing of the module docstring for every value of every row.

    The usual batch (every value a cell or NULL, each column's cells of one length) is
    framed by one join (:func:`_join_cells`); any other goes value by value.
    """
    joined = _join_cells(batch, len(batch[0]) if batch else 0)
    if joined is not None:
        joined.digest(hasher)
        return
    _digest_values(hasher, list(chain.from_iterable(batch)))


def _digest_values(hasher: Any, flat: list[Any]) -> None:
    """:func:`_digest_batch` for any values, in order; one ``update``."""
    types = set(map(type, flat))
    if types <= _CELL_TYPES:
        nulls = [i for i, value in enumerate(flat) if value is None] if type(None) in types else []
        cells = flat
        if nulls:
            cells = flat.copy()
            for i in nulls:
                cells[i] = b""
        parts: list[bytes] = [b""] * (2 * len(flat))
        parts[0::2] = map(_CELL_HEADERS.__getitem__, map(len, cells))
        parts[1::2] = cells
        for i in nulls:
            parts[2 * i] = b"\x00"
        hasher.update(b"".join(parts))
        return
    slow: list[bytes] = []
    append = slow.append
    for value in flat:
        if type(value) is bytes:
            append(_CELL_HEADERS[len(value)])
            append(value)
        elif value is None:
            append(b"\x00")
        else:
            append(_encode_other(value))
    hasher.update(b"".join(slow))


@dataclass(frozen=True, slots=True)
class _JoinedCells:
    """One batch of cells and NULLs, joined once in the digest's framing.

    Each column's cells have one length, so every value sits at a fixed place in its row:
    ``table[r, offsets[c]:]`` is ``0x01 ‖ uint32_be(len) ‖ cell`` for a cell, and for a
    NULL a ``0x00`` then a zero-filled placeholder of the same size that the digest skips.
    ``lists`` holds the values (``None`` for NULL) of the columns asked for as lists.
    """

    framed: bytearray
    table: npt.NDArray[np.uint8]
    offsets: list[int]
    lengths: list[int]
    nulls: npt.NDArray[np.bool_] | None
    lists: dict[int, list[Any]]

    def digest(self, hasher: Any) -> None:
        """Feed the batch's framing to ``hasher``: the joined bytes minus NULL placeholders."""
        if self.nulls is None:
            hasher.update(self.framed)
            return
        rows, columns = np.divmod(np.flatnonzero(self.nulls), len(self.offsets))
        if len(rows) > self.table.size // _SEGMENT_BYTES:
            # Mostly NULL: one numpy compaction beats an ``update`` per NULL.
            keep = np.ones(self.table.shape, dtype=np.bool_)
            for column, (offset, length) in enumerate(zip(self.offsets, self.lengths, strict=True)):
                keep[self.nulls[:, column], offset + 1 : offset + 5 + length] = False
            hasher.update(self.table[keep])
            return
        starts = rows * self.table.shape[1] + np.asarray(self.offsets)[columns]
        ends = starts + 5 + np.asarray(self.lengths)[columns]
        previous = 0
        with memoryview(self.framed) as view:
            # Up to and including each NULL's 0x00, then on from the end of its placeholder.
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
                hasher.update(view[previous : start + 1])
                previous = end
            hasher.update(view[previous:])

    def column_nulls(self, column: int) -> npt.NDArray[np.bool_] | None:
        """Which rows of ``column`` are NULL; ``None`` if none is."""
        if self.nulls is None:
            return None
        nulls = self.nulls[:, column]
        return nulls if bool(nulls.any()) else None

    def cells(self, column: int, nulls: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.uint8]:
        """``column``'s non-NULL cells as rows of a ``(n, length)`` array (a view if no NULL)."""
        start = self.offsets[column] + 5
        view = self.table[:, start : start + self.lengths[column]]
        return view if nulls is None else view[~nulls]


def _join_cells(
    batch: Sequence[tuple[Any, ...]], width: int, list_columns: Sequence[int] = ()
) -> _JoinedCells | None:
    """The batch of rows of ``width`` values joined once (:class:`_JoinedCells`), or
    ``None`` if it is not only cells and NULLs, a column's cells differ in length or the
    values do not fill ``width`` columns (then the caller goes value by value).

    The per-value work is C-level passes (``chain``, ``map``, one join); only NULLs are
    visited one by one.
    """
    rows = len(batch)
    flat = list(chain.from_iterable(batch))
    if not flat or len(flat) != rows * width:
        return None
    types = set(map(type, flat))
    if not types <= _CELL_TYPES:
        return None
    lists = {column: flat[column::width] for column in list_columns}
    nulls = None
    if type(None) in types:
        mask = bytes(map(operator.is_, flat, repeat(None)))
        nulls = np.frombuffer(mask, dtype=np.bool_).reshape(rows, width)
        lengths = []
        for column in range(width):
            first = int(np.argmin(nulls[:, column]))  # the first non-NULL row, if any
            null = bool(nulls[first, column])
            lengths.append(0 if null else len(flat[first * width + column]))
        placeholders = [bytes(length) for length in lengths]
        for index in np.flatnonzero(nulls).tolist():
            flat[index] = placeholders[index % width]
    else:
        lengths = list(map(len, flat[:width]))
    sizes = np.fromiter(map(len, flat), dtype=np.int64, count=len(flat)).reshape(rows, width)
    if not bool((sizes == np.asarray(lengths)).all()):
        return None
    # One join with the first column's header as separator; other headers patched below.
    flat.insert(0, b"")
    framed = bytearray(_CELL_HEADERS[lengths[0]]).join(flat)
    offsets = [0, *accumulate(5 + length for length in lengths[:-1])]
    table = np.frombuffer(framed, dtype=np.uint8).reshape(rows, 5 * width + sum(lengths))
    for column, length in enumerate(lengths):
        if length != lengths[0]:
            header = np.frombuffer(_CELL_HEADERS[length], dtype=np.uint8)
            table[:, offsets[column] : offsets[column] + 5] = header
    if nulls is not None:
        for column in range(width):
            table[nulls[:, column], offsets[column]] = 0
    return _JoinedCells(framed, table, offsets, lengths, nulls, lists)


def _encode_other(value: Any) -> bytes:
    if isinstance(value, bytearray | memoryview):
        data = bytes(value)
        return b"\x01" + _LEN.pack(len(data)) + data
    text = json.dumps(value, default=str, ensure_ascii=False).encode("utf-8")
    return b"\x02" + _LEN.pack(len(text)) + text


def iter_stored_rows(
    store: Store, info: DatasetInfo, *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> Iterator[Sequence[tuple[Any, ...]]]:
    """Batches of stored rows (cells stay cells), schema columns in order, ``row_id`` order.

    Rows come straight from the driver's cursor (a server-side cursor on PostgreSQL), in
    batches of ``batch_rows``: no per-row SQLAlchemy processing, no whole result in memory.
    """
    names = info.schema.column_names
    table = sa.table(info.table_name, sa.column(ROW_ID), *[sa.column(n) for n in names])
    query = sa.select(*[table.c[n] for n in names]).order_by(table.c[ROW_ID])
    try:
        with store.reading() as conn:
            driver_errors = conn.dialect.loaded_dbapi.Error
            sql = str(query.compile(dialect=conn.dialect))
            connection = conn.connection.dbapi_connection
            assert connection is not None
            try:
                if conn.dialect.name == "postgresql":
                    cursor = connection.cursor(name=f"cleanroom_rows_{os.getpid()}")
                else:
                    cursor = connection.cursor()
                try:
                    cursor.execute(sql)
                    while batch := cursor.fetchmany(batch_rows):
                        yield batch
                finally:
                    cursor.close()
            except driver_errors as error:
                raise StorageError(
                    f"reading dataset {info.name!r} failed ({type(error).__name__})"
                ) from None
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


def _narrow(numbers: npt.NDArray[np.float64]) -> npt.NDArray[np.floating[Any]]:
    """``numbers`` as float32 when that is exact (NaN included), else unchanged (float64)."""
    narrow = numbers.astype(np.float32)
    return narrow if np.array_equal(narrow, numbers, equal_nan=True) else numbers


def _to_column(values: list[Any]) -> Any:
    """Plain values -> a float array (NaN for NULL; float32 when exact) when they are all
    numbers, else objects."""
    try:
        numbers = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return np.array(values, dtype=object)
    return _narrow(numbers)


class _ColumnDecryptor:
    """Decrypts, decodes and validates one column of a party's dataset, batch by batch.

    Decoding and validation run once per *distinct* plaintext of a batch (a column of
    categories or small integers has a handful), then every cell maps through that table.
    """

    def __init__(self, party: str, spec: ColumnSpec, cipher: CellCipher | None) -> None:
        self.party = party
        self.spec = spec
        self.cipher = cipher
        self._int64 = spec.column_type.is_integer
        #: Integer and bit cells are read straight from a joined batch (:meth:`joined`).
        self.reads_joined = cipher is not None and self._int64

    def _invalid(self, error: Exception) -> TrainingError:
        return TrainingError(
            f"party {self.party!r}: column {self.spec.name!r}: {error} (value withheld)"
        )

    def _undecryptable(self) -> TrainingError:
        return TrainingError(
            f"party {self.party!r}: column {self.spec.name!r}: a cell does not decrypt "
            "under the party's key"
        )

    def column(self, cells: list[Any]) -> Any:
        """The validated column as an array: float (NaN for NULL; float32 when exact) if
        numeric, else objects."""
        if self.cipher is None:
            try:
                return _to_column(self.spec.coerce_many(cells))
            except (ValueError, SchemaError) as error:
                raise self._invalid(error) from None
        has_null = None in cells
        present = [cell for cell in cells if cell is not None] if has_null else cells
        try:
            decoded, inverse = self._decrypt(present)
        except (DecryptionError, NormalizationError):
            raise self._undecryptable() from None
        nulls = None
        if has_null:
            nulls = np.frombuffer(bytes(map(operator.is_, cells, repeat(None))), dtype=np.bool_)
        return self._assemble(decoded, inverse, nulls)

    def joined(self, batch: _JoinedCells, position: int) -> Any:
        """:meth:`column` for an encrypted integer or bit column of a joined batch: its
        cells go to the cipher as one array (no list of cells, no join)."""
        assert self.cipher is not None
        nulls = batch.column_nulls(position)
        cells = batch.cells(position, nulls)
        try:
            if len(cells):
                decoded, inverse = self._int64_values(*self.cipher.decrypt_matrix(cells))
            else:
                decoded, inverse = [], np.empty(0, dtype=np.intp)
        except (DecryptionError, NormalizationError):
            raise self._undecryptable() from None
        return self._assemble(decoded, inverse, nulls)

    def _assemble(
        self,
        decoded: list[Any],
        inverse: npt.NDArray[np.intp],
        nulls: npt.NDArray[np.bool_] | None,
    ) -> Any:
        """Validate the distinct ``decoded`` values and spread them over the column's rows
        (``inverse`` for the non-NULL ones, in order; ``nulls`` marks the NULL rows)."""
        try:
            coerced = self.spec.coerce_many(decoded)
            null_value = self.spec.coerce_many([None])[0] if nulls is not None else None
        except (ValueError, SchemaError) as error:
            raise self._invalid(error) from None
        if all(isinstance(v, int | float) for v in coerced) and null_value is None:
            # The distinct values decide: float32 if it holds them all exactly.
            table = _narrow(np.array([float(v) for v in coerced], dtype=np.float64))
            values = table[inverse]
            if nulls is None:
                return values
            out = np.full(len(nulls), np.nan, dtype=table.dtype)
            out[~nulls] = values
            return out
        it = iter(inverse.tolist())
        flags = nulls.tolist() if nulls is not None else repeat(False, len(inverse))
        return _to_column([null_value if null else coerced[next(it)] for null in flags])

    def _int64_values(
        self, plain: npt.NDArray[np.uint8], lengths: npt.NDArray[np.int64]
    ) -> tuple[list[Any], npt.NDArray[np.intp]]:
        """Distinct decoded values of 8-byte integer plaintexts, and each one's index."""
        if not bool((lengths == 8).all()):
            raise NormalizationError("an integer plaintext is not 8 bytes")
        numbers, inverse = np.unique(plain[:, :8].copy().view("<i8").ravel(), return_inverse=True)
        distinct = [int(v).to_bytes(8, "little", signed=True) for v in numbers.tolist()]
        return denormalize_many(distinct, self.spec.column_type.sql_type), inverse.ravel()

    def _decrypt(self, cells: list[bytes]) -> tuple[list[Any], npt.NDArray[np.intp]]:
        """The distinct plaintexts of ``cells``, decoded, and each cell's index into them.

        Integer and bit columns (8-byte plaintexts) are read as one int64 array; other
        types go through a table of their distinct plaintext bytes.
        """
        assert self.cipher is not None
        if not cells:
            return [], np.empty(0, dtype=np.intp)
        if self._int64:
            return self._int64_values(*self.cipher.decrypt_array(cells))
        texts = self.cipher.decrypt_many(cells)
        distinct = list(dict.fromkeys(texts))
        index = {text: i for i, text in enumerate(distinct)}
        inverse = np.fromiter(map(index.__getitem__, texts), np.intp, count=len(texts))
        return denormalize_many(distinct, self.spec.column_type.sql_type), inverse


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
    not only ``columns``. Errors name the party and the column, never a value. A column
    whose values are all numbers comes back as ``float32`` (NaN for NULL) when float32
    holds every value exactly — integers up to 2**24 in magnitude, as every MedicalRecord
    column is — and as ``float64`` otherwise; any other column as objects.
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
    as_lists = [i for i, decryptor in enumerate(decryptors) if not decryptor.reads_joined]
    width = len(decryptors)
    parts: dict[str, list[Any]] = {name: [] for name in columns}
    hasher = hashlib.sha256()
    rows = 0
    for batch in iter_stored_rows(store, info, batch_rows=batch_rows):
        joined = _join_cells(batch, width, as_lists)
        if joined is not None:
            joined.digest(hasher)
            lists = joined.lists
        else:
            flat = list(chain.from_iterable(batch))
            if len(flat) != len(batch) * width:
                raise StorageError(f"reading dataset {info.name!r} failed (row width)")
            _digest_values(hasher, flat)
            lists = {position: flat[position::width] for position in range(width)}
        for position, decryptor in enumerate(decryptors):
            if joined is not None and decryptor.reads_joined:
                values = decryptor.joined(joined, position)
            else:
                values = decryptor.column(lists[position])
            if decryptor.spec.name in parts:
                parts[decryptor.spec.name].append(values)
        rows += len(batch)
    frame = pd.DataFrame(
        {
            name: (np.concatenate(chunks) if chunks else np.empty(0, dtype=np.float32))
            for name, chunks in parts.items()
        }
    )
    return frame, DatasetDigest(rows=rows, sha256=hasher.hexdigest())


@dataclass(frozen=True, slots=True)
class PartyData:
    """One party's decrypted, validated frames (one per dataset) and their digests."""

    party: str
    frames: list[pd.DataFrame]
    digests: list[tuple[DatasetInfo, DatasetDigest]]


@dataclass(slots=True)
class _ReadTask:
    party: str
    infos: list[DatasetInfo]
    ceks: dict[str, ColumnEncryptionKey]


#: What forked readers inherit (set only while a pool runs; never pickled or sent).
_FORKED: dict[str, Any] = {}


def _read_task(store: Store, task: _ReadTask, columns: Sequence[str], batch_rows: int) -> PartyData:
    frames, digests = [], []
    try:
        for info in task.infos:
            frame, digest = read_party_frame(
                store, info, ceks=task.ceks, columns=columns, batch_rows=batch_rows
            )
            frames.append(frame)
            digests.append((info, digest))
    finally:
        for key in task.ceks.values():
            key.zero()
    return PartyData(task.party, frames, digests)


def _forked_reader_start() -> None:
    # The parent's pooled connections must not be shared with a forked child.
    _FORKED["store"].engine.dispose(close=False)


def _forked_read(index: int) -> PartyData:
    state = _FORKED
    return _read_task(state["store"], state["tasks"][index], state["columns"], state["batch_rows"])


def default_workers(parties: int) -> int:
    """Reader processes to use: one per party, at most one per CPU (as ``CellWorkers``)."""
    return max(1, min(parties, cpu_workers()))


def read_parties(
    store: Store,
    datasets: Sequence[tuple[str, DatasetInfo]],
    keys: dict[str, dict[str, ColumnEncryptionKey]],
    *,
    columns: Sequence[str],
    batch_rows: int = DEFAULT_BATCH_ROWS,
    workers: int = 1,
) -> Iterator[PartyData]:
    """Decrypt and validate every party's datasets, one :class:`PartyData` per party.

    Parties come out in the order of ``keys``. With ``workers > 1`` (and ``fork``
    available) parties are read by that many forked processes in parallel: the readers
    inherit the keys by ``fork`` (inside the TEE, like the parent), never through a pipe;
    only the decrypted frames travel back, over a pipe between processes of the same TEE.
    Each party's keys are zeroed by whoever read it once its data is read, and every key
    here when the last party is read or on any error. Errors are those of
    :func:`read_party_frame`.
    """
    tasks = [
        _ReadTask(party, [info for owner, info in datasets if owner == party], ceks)
        for party, ceks in keys.items()
    ]
    try:
        if workers <= 1 or len(tasks) <= 1 or not fork_available():
            for task in tasks:
                yield _read_task(store, task, columns, batch_rows)
            return
        if _FORKED:
            raise TrainingError("another parallel read is already running in this process")
        _FORKED.update(store=store, tasks=tasks, columns=list(columns), batch_rows=batch_rows)
        try:
            context = mp.get_context("fork")
            with context.Pool(
                processes=min(workers, len(tasks)), initializer=_forked_reader_start
            ) as pool:
                yield from pool.imap(_forked_read, range(len(tasks)))
        finally:
            _FORKED.clear()
    finally:
        for task in tasks:
            for key in task.ceks.values():
                key.zero()


__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DIGEST_FORMAT",
    "DatasetDigest",
    "PartyData",
    "check_schema",
    "dataset_digest",
    "default_workers",
    "iter_stored_rows",
    "read_parties",
    "read_party_frame",
    "schema_signature",
]
