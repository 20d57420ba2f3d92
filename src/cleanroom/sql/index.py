"""The sealed enclave index: a sorted column, encrypted as one cell, searched in the enclave.

``CREATE INDEX name ON table (column)`` on an encrypted column makes the enclave decrypt the
column once, sort its (value, row id) pairs and seal them as ONE Always Encrypted cell under
the column's own key (randomized, so authenticated: a changed byte fails with the fixed
:class:`~cleanroom.errors.DecryptionError`). The host stores that blob and learns its size.

A later ``SELECT`` whose top-level ``AND`` terms include ``<``, ``<=``, ``>``, ``>=``, ``=``,
``BETWEEN`` or ``IN`` on the column hands the blob back to the enclave, which unseals it
(once: the decoded index is cached per blob *and* key), checks that its header names this
statement's table, column, type and key metadata, and binary-searches the candidate row ids.
The host reads those rows and every row appended since the index was built (row id above
the header's ``max_row_id``); the enclave then evaluates the whole predicate on them, so rows
the host adds cannot reach the result.

Sealed plaintext (integers little-endian)::

    b"CRIX" ‖ uint8 version (1) ‖ uint8 kind ‖ keyMdVersion(8)
    ‖ uint16 len ‖ table (UTF-8, lower-case) ‖ uint16 len ‖ column ‖ uint16 len ‖ sql type
    ‖ uint64 rows ‖ int64 max_row_id
    ‖ values ‖ rows × int64 row id
      kind 1/2/3: rows × <i8 / <f8 / <f4, ascending (what the cell decrypts to)
      kind 4:     rows × uint32 length, then the normalized values concatenated, ascending
                  by the decoded value (code point order for strings)

NULLs are not in the index (no range or equality predicate is TRUE on NULL).
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import struct
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from cleanroom.crypto import CellCipher, SqlType, denormalize_many, normalize_many
from cleanroom.errors import DecryptionError, QueryError
from cleanroom.sql.evaluate import ColumnBinding, ColumnData
from cleanroom.sql.parser import Between, Compare, InList, Param, ParamKey, Predicate, Value

MAGIC: Final = b"CRIX"
VERSION: Final = 1
_HEAD: Final = struct.Struct("<4sBB8s")
_TAIL: Final = struct.Struct("<Qq")
_LEN: Final = struct.Struct("<H")
_KINDS: Final = {1: "<i8", 2: "<f8", 3: "<f4"}
_OBJECT_KIND: Final = 4
#: Decoded indexes kept in the enclave (each is about 16 bytes per indexed row).
DEFAULT_CACHE_ENTRIES: Final = 8

Interval = tuple[int, int]


@dataclass(frozen=True, slots=True)
class OpenIndex:
    """A decoded index: sorted values, their row ids, and what the header says it covers."""

    table: str
    column: str
    sql_type: str
    key_md_version: bytes = field(repr=False)
    max_row_id: int
    values: Any = field(repr=False)  # np.ndarray (numeric kinds) or list (kind 4)
    row_ids: npt.NDArray[np.int64] = field(repr=False)

    def __len__(self) -> int:
        return len(self.row_ids)

    def candidates(
        self, terms: Sequence[Predicate], params: Mapping[ParamKey, Any]
    ) -> npt.NDArray[np.int64] | None:
        """Row ids (ascending) that may satisfy every term; ``None`` if a value cannot be
        searched (the caller then scans). ``terms`` are this column's :func:`narrowing` terms.
        """
        current: list[Interval] = [(0, len(self))]
        for term in terms:
            try:
                found = self._intervals(term, params)
            except (TypeError, ValueError, OverflowError):
                return None
            current = _intersect(current, _merge(found))
            if not current:
                break
        parts = [self.row_ids[a:b] for a, b in current if b > a]
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return np.sort(np.concatenate(parts))

    def _intervals(self, term: Predicate, params: Mapping[ParamKey, Any]) -> list[Interval]:
        n = len(self)
        if isinstance(term, Compare):
            v = self._operand(term.value, params)
            if v is None:
                return []
            if term.op == "=":
                return [(self._find(v, "left"), self._find(v, "right"))]
            if term.op == "<":
                return [(0, self._find(v, "left"))]
            if term.op == "<=":
                return [(0, self._find(v, "right"))]
            if term.op == ">":
                return [(self._find(v, "right"), n)]
            assert term.op == ">="
            return [(self._find(v, "left"), n)]
        if isinstance(term, Between):
            low, high = self._operand(term.low, params), self._operand(term.high, params)
            if low is None or high is None:
                return []
            return [(self._find(low, "left"), self._find(high, "right"))]
        assert isinstance(term, InList)
        out = []
        for value in term.values:
            v = self._operand(value, params)
            if v is not None:
                out.append((self._find(v, "left"), self._find(v, "right")))
        return out

    def _operand(self, value: Value, params: Mapping[ParamKey, Any]) -> Any:
        raw = params[value.key] if isinstance(value, Param) else value.value
        if raw is None or not isinstance(self.values, np.ndarray):
            return raw
        # Compare as the evaluator does: a Python number against the column's numpy type.
        return np.asarray(raw).astype(self.values.dtype, casting="same_kind")

    def _find(self, value: Any, side: str) -> int:
        if isinstance(self.values, np.ndarray):
            return int(np.searchsorted(self.values, value, side=side))  # type: ignore[call-overload]
        if side == "left":
            return bisect.bisect_left(self.values, value)
        return bisect.bisect_right(self.values, value)


def narrowing(residual: Sequence[Predicate], column: str) -> list[Predicate]:
    """The top-level AND terms on ``column`` an index can answer (the rest is evaluated)."""
    return [t for t in residual if _narrows(t) and getattr(t, "column", None) == column]


def _narrows(term: Predicate) -> bool:
    if isinstance(term, Compare):
        return term.op != "<>"
    return isinstance(term, Between | InList) and not term.negated


def _merge(intervals: list[Interval]) -> list[Interval]:
    """Sorted, disjoint, non-empty intervals covering the same positions."""
    out: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _intersect(left: list[Interval], right: list[Interval]) -> list[Interval]:
    """The positions in both (each list sorted and disjoint)."""
    out: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        a, b = max(left[i][0], right[j][0]), min(left[i][1], right[j][1])
        if a < b:
            out.append((a, b))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def indexable_columns(
    residual: Sequence[Predicate], bindings: Mapping[str, ColumnBinding]
) -> list[str]:
    """Encrypted columns with a term an index can answer, in the order of the terms."""
    names = [getattr(t, "column", "") for t in residual if _narrows(t)]
    return [n for n in dict.fromkeys(names) if bindings[n].encrypted]


# -- building and sealing --------------------------------------------------------------------


class IndexBuilder:
    """Collects one column's decrypted values (in the enclave) and seals the sorted index."""

    def __init__(self, *, table: str, binding: ColumnBinding) -> None:
        if binding.key_md_version is None:
            raise QueryError(f"column {binding.name!r} is not encrypted: nothing to seal")
        self._table = table.lower()
        self._binding = binding
        self._parts: list[ColumnData] = []
        self._ids: list[npt.NDArray[np.int64]] = []
        self._max_row_id = -1

    def add(self, row_ids: npt.NDArray[np.int64], data: ColumnData) -> None:
        """Rows of one batch (ids ascending, as the scan returns them)."""
        if len(row_ids) != len(data):
            raise QueryError("an index batch needs one row id per value")
        if len(row_ids):
            self._max_row_id = max(self._max_row_id, int(row_ids.max()))
        keep = np.flatnonzero(~data.null)
        self._parts.append(data.take(keep))
        self._ids.append(np.asarray(row_ids, dtype=np.int64)[keep])

    def seal(self, cipher: CellCipher) -> tuple[bytes, int, int]:
        """``(blob, rows, max_row_id)``; the collected plaintext is dropped."""
        parts, self._parts = self._parts, []
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, dtype=np.int64)
        self._ids = []
        data = ColumnData.concat(parts)
        sql_type = self._binding.sql_type
        if data.numeric and len(data):
            values = np.asarray(data.values)
            kind = next(k for k, layout in _KINDS.items() if np.dtype(layout) == values.dtype)
            order = np.argsort(values, kind="stable")
            body = values[order].astype(_KINDS[kind]).tobytes()
        elif not len(data):
            kind, order, body = _OBJECT_KIND, np.zeros(0, dtype=np.intp), b""
        else:
            kind = _OBJECT_KIND
            items = list(data.values)
            try:
                order = np.asarray(sorted(range(len(items)), key=items.__getitem__), np.intp)
            except TypeError:
                raise QueryError(f"values of type {sql_type} cannot be indexed") from None
            plain = normalize_many([items[i] for i in order], SqlType.parse(sql_type))
            body = np.asarray([len(p) for p in plain], dtype="<u4").tobytes() + b"".join(plain)
        header = (
            _HEAD.pack(MAGIC, VERSION, kind, self._binding.key_md_version)
            + _text(self._table)
            + _text(self._binding.name)
            + _text(sql_type)
            + _TAIL.pack(len(ids), self._max_row_id)
        )
        plaintext = header + body + ids[order].astype("<i8").tobytes()
        return cipher.encrypt(plaintext), len(ids), self._max_row_id


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return _LEN.pack(len(data)) + data


def unseal(cipher: CellCipher, blob: bytes) -> OpenIndex:
    """Decrypt and decode a sealed index; :class:`DecryptionError` if it is not one."""
    plain = cipher.decrypt(blob)
    try:
        return _decode(memoryview(plain))
    except (struct.error, ValueError, UnicodeDecodeError, KeyError):
        raise DecryptionError() from None


def _decode(plain: memoryview) -> OpenIndex:
    magic, version, kind, md_version = _HEAD.unpack_from(plain, 0)
    if magic != MAGIC or version != VERSION:
        raise ValueError("not an index")
    offset = _HEAD.size
    texts = []
    for _ in range(3):
        (size,) = _LEN.unpack_from(plain, offset)
        texts.append(bytes(plain[offset + 2 : offset + 2 + size]).decode("utf-8"))
        offset += 2 + size
    rows, max_row_id = _TAIL.unpack_from(plain, offset)
    offset += _TAIL.size
    values: Any
    if kind in _KINDS:
        layout = _KINDS[kind]
        end = offset + rows * np.dtype(layout).itemsize
        values = np.frombuffer(plain[offset:end], dtype=layout).astype(layout.replace("<", "="))
    elif kind == _OBJECT_KIND:
        sizes = np.frombuffer(plain[offset : offset + 4 * rows], dtype="<u4")
        offset += 4 * rows
        ends = offset + np.cumsum(sizes, dtype=np.int64)
        starts = ends - sizes
        raw = [bytes(plain[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        values = denormalize_many(raw, SqlType.parse(texts[2]))
        end = int(ends[-1]) if rows else offset
    else:
        raise ValueError("unknown index kind")
    if len(plain) != end + 8 * rows or len(values) != rows:
        raise ValueError("truncated index")
    row_ids = np.frombuffer(plain[end:], dtype="<i8").astype(np.int64)
    return OpenIndex(texts[0], texts[1], texts[2], bytes(md_version), max_row_id, values, row_ids)


class IndexCache:
    """Decoded indexes in enclave memory, keyed by HMAC(CEK, SHA-256(blob)).

    The key needs both the exact blob and the key that sealed it, so a statement that
    brings another key (with the same metadata) cannot reuse an index it could not unseal.
    """

    def __init__(self, *, entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        if entries < 0:
            raise QueryError("the index cache size must not be negative")
        self._entries = entries
        self._items: OrderedDict[bytes, OpenIndex] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"IndexCache(entries={len(self._items)}/{self._entries})"

    def open(self, cipher: CellCipher, secret: bytes, blob: bytes) -> OpenIndex:
        """The decoded index of ``blob`` (unsealed with ``cipher``, whose key is ``secret``)."""
        tag = hmac.new(secret, hashlib.sha256(blob).digest(), hashlib.sha256).digest()
        with self._lock:
            found = self._items.get(tag)
            if found is not None:
                self._items.move_to_end(tag)
                return found
        opened = unseal(cipher, blob)
        if self._entries:
            with self._lock:
                self._items[tag] = opened
                while len(self._items) > self._entries:
                    self._items.popitem(last=False)
        return opened

    def clear(self) -> None:
        """Forget every decoded index."""
        with self._lock:
            self._items.clear()


__all__ = [
    "DEFAULT_CACHE_ENTRIES",
    "IndexBuilder",
    "IndexCache",
    "OpenIndex",
    "indexable_columns",
    "narrowing",
    "unseal",
]
