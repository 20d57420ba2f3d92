"""Predicate evaluation, ordering and the host/enclave split — shared by both sides.

Semantics (the same whether a column is plaintext or decrypted in the enclave):

* three-valued logic: a comparison with NULL is *unknown*; ``NOT unknown`` is unknown;
  only rows whose predicate is TRUE are returned;
* strings compare by code point (a ``*_BIN2`` collation), ``LIKE`` is case-sensitive with
  T-SQL wildcards ``%``, ``_``, ``[abc]``, ``[a-z]``, ``[^…]``;
* ``ORDER BY``: NULLs first ascending and last descending (SQL Server); ties keep row order.

The host pushes to the database only what it can evaluate on what it stores: predicates on
plaintext columns (except ``LIKE``, whose case rules differ between SQLite and PostgreSQL)
and ``=``/``<>``/``IN`` with parameters on deterministic columns (ciphertext equality).
Every other top-level ``AND`` term is *residual*: the enclave evaluates it when it touches an
encrypted column, the host otherwise.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import numpy as np
import numpy.typing as npt

from cleanroom.crypto import SqlType, denormalize, denormalize_many
from cleanroom.errors import NormalizationError, QueryError
from cleanroom.sql.parser import (
    And,
    Between,
    Compare,
    Constant,
    InList,
    IsNull,
    Leaf,
    Like,
    Not,
    Or,
    Param,
    ParamKey,
    Predicate,
    Value,
    conjuncts,
    leaf_values,
    leaves,
)

BoolArray = npt.NDArray[np.bool_]
#: A three-valued result per row: (is TRUE, is FALSE); neither means unknown.
Truth = tuple[BoolArray, BoolArray]

_NUMPY_LAYOUT: Final = {
    "tinyint": "<i8",
    "smallint": "<i8",
    "int": "<i8",
    "bigint": "<i8",
    "bit": "<i8",
    "float": "<f8",
    "real": "<f4",
}
_OPS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True, slots=True)
class ColumnBinding:
    """What the engine knows of one column: its type and, if encrypted, how and under which key.

    ``key_id`` is the key's ordinal in the statement's description and enclave package.
    """

    name: str
    sql_type: str
    encrypted: bool = False
    encryption: Literal["deterministic", "randomized"] | None = None
    key_id: int | None = None
    key_md_version: bytes | None = field(default=None, repr=False)

    @property
    def numeric(self) -> bool:
        """True when the values compare as numpy numbers (integer, bit and float types)."""
        return SqlType.parse(self.sql_type).name in _NUMPY_LAYOUT


def _is_pushdown_leaf(leaf: Leaf, column: ColumnBinding) -> bool:
    if isinstance(leaf, IsNull):
        return True
    if not column.encrypted:
        return not isinstance(leaf, Like)
    if column.encryption != "deterministic":
        return False
    values = leaf_values(leaf)
    params_only = all(isinstance(v, Param) for v in values)
    if isinstance(leaf, Compare):
        return leaf.op in ("=", "<>") and params_only
    return isinstance(leaf, InList) and params_only


def split(
    where: Predicate | None, columns: Mapping[str, ColumnBinding]
) -> tuple[tuple[Predicate, ...], tuple[Predicate, ...]]:
    """``(pushed down, residual)`` top-level AND terms of ``where``."""
    pushed: list[Predicate] = []
    residual: list[Predicate] = []
    for term in conjuncts(where):
        if all(_is_pushdown_leaf(leaf, columns[leaf.column]) for leaf in leaves(term)):
            pushed.append(term)
        else:
            residual.append(term)
    return tuple(pushed), tuple(residual)


def touches_encrypted(terms: Sequence[Predicate], columns: Mapping[str, ColumnBinding]) -> bool:
    """Whether any leaf of ``terms`` is on an encrypted column."""
    return any(columns[leaf.column].encrypted for term in terms for leaf in leaves(term))


# -- column data --------------------------------------------------------------------------


@dataclass(slots=True)
class ColumnData:
    """One column of a batch, in memory: numpy numbers or Python values, and a NULL mask."""

    values: Any  # np.ndarray (numeric) or list of Python values (None where NULL)
    null: BoolArray
    numeric: bool

    def __len__(self) -> int:
        return len(self.null)

    @classmethod
    def concat(cls, parts: Sequence[ColumnData]) -> ColumnData:
        """The rows of ``parts``, one after the other (all numeric or none)."""
        if not parts:
            return cls([], np.zeros(0, dtype=np.bool_), False)
        null = np.concatenate([p.null for p in parts])
        if all(p.numeric for p in parts):
            return cls(np.concatenate([p.values for p in parts]), null, True)
        values: list[Any] = []
        for part in parts:
            values.extend(part.values.tolist() if part.numeric else part.values)
        return cls(values, null, False)

    def take(self, index: npt.NDArray[np.intp]) -> ColumnData:
        """The rows at ``index``, in that order."""
        if self.numeric:
            return ColumnData(self.values[index], self.null[index], True)
        return ColumnData([self.values[i] for i in index], self.null[index], False)


def plain_column(values: Sequence[Any], binding: ColumnBinding) -> ColumnData:
    """Column data from plaintext values (``None`` for NULL)."""
    null = np.fromiter((v is None for v in values), dtype=np.bool_, count=len(values))
    if binding.numeric:
        layout = _NUMPY_LAYOUT[SqlType.parse(binding.sql_type).name]
        array = np.zeros(len(values), dtype=layout.replace("<", "="))
        present = ~null
        if present.any():
            array[present] = [
                float(v) if "f" in layout else int(v) for v in values if v is not None
            ]
        return ColumnData(array, null, True)
    return ColumnData(list(values), null, False)


class Decryptor(Protocol):
    """What decrypts a column: a :class:`~cleanroom.crypto.CellCipher` or a pool of workers."""

    def decrypt_many(self, cells: Sequence[bytes]) -> list[bytes]: ...


def decrypt_column(cells: Sequence[bytes | None], cipher: Decryptor, sql_type: str) -> ColumnData:
    """Decrypt a column of cells (``None`` for NULL) into column data, in batches."""
    # ``None in cells`` runs in C; the per-cell mask is only built when there are NULLs.
    has_null = None in cells
    if has_null:
        null = np.fromiter((c is None for c in cells), dtype=np.bool_, count=len(cells))
        present: Sequence[bytes] = [c for c in cells if c is not None]
    else:
        null = np.zeros(len(cells), dtype=np.bool_)
        present = cells  # type: ignore[assignment]
    plain = cipher.decrypt_many(present) if present else []
    parsed = SqlType.parse(sql_type)
    layout = _NUMPY_LAYOUT.get(parsed.name)
    if layout is not None:
        size = np.dtype(layout).itemsize
        joined = b"".join(plain)
        if len(joined) != size * len(plain):
            raise QueryError(f"a decrypted value does not fit {parsed}")
        numbers = np.frombuffer(joined, dtype=layout).astype(layout.replace("<", "="))
        if has_null:
            array = np.zeros(len(cells), dtype=numbers.dtype)
            array[~null] = numbers
        else:
            array = numbers
        return ColumnData(array, null, True)
    values = denormalize_many(plain, parsed)
    if not has_null:
        return ColumnData(values, null, False)
    out: list[Any] = [None] * len(cells)
    it = iter(values)
    for index, is_null in enumerate(null):
        if not is_null:
            out[index] = next(it)
    return ColumnData(out, null, False)


_INTEGER_TYPES: Final = frozenset({"tinyint", "smallint", "int", "bigint"})


def typed_values(plain: Sequence[bytes], sql_type: str) -> list[Any]:
    """``denormalize_many(plain, sql_type)``, with integer columns decoded by numpy.

    Integers are normalized to 8 little-endian bytes; the values' range is one interval,
    so checking the smallest and the largest with :func:`~cleanroom.crypto.denormalize`
    checks them all. Anything else (another type, a wrong size, a value out of range)
    goes to ``denormalize_many``, which decodes it or raises its own error.
    """
    parsed = SqlType.parse(sql_type)
    if parsed.name in _INTEGER_TYPES and plain:
        joined = b"".join(plain)
        if len(joined) == 8 * len(plain):
            numbers = np.frombuffer(joined, dtype="<i8")
            low, high = int(np.argmin(numbers)), int(np.argmax(numbers))
            try:
                denormalize(plain[low], parsed)
                denormalize(plain[high], parsed)
            except NormalizationError:
                pass
            else:
                return numbers.tolist()  # type: ignore[no-any-return]
    return denormalize_many(plain, parsed)


# -- predicates ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def like_regex(pattern: str) -> re.Pattern[str]:
    """The Python regex for a T-SQL ``LIKE`` pattern (case-sensitive, whole value)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        elif char == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("^", "]") else i + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith("^")
                if negate:
                    body = body[1:]
                parts = []
                j = 0
                while j < len(body):
                    if j + 2 < len(body) and body[j + 1] == "-":
                        parts.append(f"{re.escape(body[j])}-{re.escape(body[j + 2])}")
                        j += 3
                    else:
                        parts.append(re.escape(body[j]))
                        j += 1
                out.append(f"[{'^' if negate else ''}{''.join(parts)}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


class Evaluator:
    """Evaluates predicates over one batch; ``params`` are already plaintext and typed."""

    def __init__(self, columns: Mapping[str, ColumnData], params: Mapping[ParamKey, Any]) -> None:
        self._columns = columns
        self._params = params
        self._rows = len(next(iter(columns.values()))) if columns else 0

    def value(self, value: Value) -> Any:
        if isinstance(value, Param):
            return self._params[value.key]
        assert isinstance(value, Constant)
        return value.value

    def truth(self, predicate: Predicate) -> Truth:
        """``(TRUE mask, FALSE mask)`` of ``predicate`` over the batch."""
        if isinstance(predicate, And):
            t, f = self.truth(predicate.items[0])
            for item in predicate.items[1:]:
                t2, f2 = self.truth(item)
                t, f = t & t2, f | f2
            return t, f
        if isinstance(predicate, Or):
            t, f = self.truth(predicate.items[0])
            for item in predicate.items[1:]:
                t2, f2 = self.truth(item)
                t, f = t | t2, f & f2
            return t, f
        if isinstance(predicate, Not):
            t, f = self.truth(predicate.item)
            return f, t
        return self._leaf(predicate)

    def _unknown(self) -> Truth:
        empty = np.zeros(self._rows, dtype=np.bool_)
        return empty, empty.copy()

    def _leaf(self, leaf: Leaf) -> Truth:
        column = self._columns[leaf.column]
        known = ~column.null
        if isinstance(leaf, IsNull):
            return (known, column.null.copy()) if leaf.negated else (column.null.copy(), known)
        if isinstance(leaf, Compare):
            operand = self.value(leaf.value)
            if operand is None:
                return self._unknown()
            hits = self._compare(column, leaf.op, operand)
            return hits & known, ~hits & known
        if isinstance(leaf, Between):
            low, high = self.value(leaf.low), self.value(leaf.high)
            if low is None or high is None:
                # x BETWEEN NULL AND h is FALSE where x > h, unknown otherwise; keep it simple
                # and exact: evaluate as (x >= low AND x <= high) in three-valued logic.
                lt, lf = self._bound(column, ">=", low)
                ht, hf = self._bound(column, "<=", high)
                t, f = lt & ht, lf | hf
            else:
                hits = self._compare(column, ">=", low) & self._compare(column, "<=", high)
                t, f = hits & known, ~hits & known
            return (f, t) if leaf.negated else (t, f)
        if isinstance(leaf, InList):
            operands = [self.value(v) for v in leaf.values]
            present = [v for v in operands if v is not None]
            hits = np.zeros(self._rows, dtype=np.bool_)
            for operand in present:
                hits |= self._compare(column, "=", operand)
            t = hits & known
            f = (~hits & known) if len(present) == len(operands) else np.zeros_like(t)
            return (f, t) if leaf.negated else (t, f)
        assert isinstance(leaf, Like)
        pattern = self.value(leaf.pattern)
        if pattern is None:
            return self._unknown()
        if not isinstance(pattern, str):
            raise QueryError(f"LIKE on column {leaf.column!r} needs a string pattern")
        if column.numeric:
            raise QueryError(f"LIKE on column {leaf.column!r} needs a character column")
        match = like_regex(pattern).fullmatch
        hits = np.fromiter(
            (v is not None and isinstance(v, str) and match(v) is not None for v in column.values),
            dtype=np.bool_,
            count=self._rows,
        )
        t, f = hits & known, ~hits & known
        return (f, t) if leaf.negated else (t, f)

    def _bound(self, column: ColumnData, op: str, operand: Any) -> Truth:
        if operand is None:
            return self._unknown()
        known = ~column.null
        hits = self._compare(column, op, operand)
        return hits & known, ~hits & known

    def _compare(self, column: ColumnData, op: str, operand: Any) -> BoolArray:
        function = _OPS[op]
        if column.numeric:
            try:
                result = function(column.values, operand)
            except TypeError:
                raise QueryError("a value does not compare with its column's type") from None
            return np.asarray(result, dtype=np.bool_) & ~column.null
        try:
            return np.fromiter(
                (v is not None and bool(function(v, operand)) for v in column.values),
                dtype=np.bool_,
                count=self._rows,
            )
        except TypeError:
            raise QueryError("a value does not compare with its column's type") from None


def evaluate(
    terms: Sequence[Predicate], columns: Mapping[str, ColumnData], params: Mapping[ParamKey, Any]
) -> npt.NDArray[np.intp]:
    """Positions (ascending) of the rows where every term of ``terms`` is TRUE."""
    rows = len(next(iter(columns.values()))) if columns else 0
    if not terms:
        return np.arange(rows, dtype=np.intp)
    evaluator = Evaluator(columns, params)
    keep = np.ones(rows, dtype=np.bool_)
    for term in terms:
        keep &= evaluator.truth(term)[0]
    return np.flatnonzero(keep)


# -- ordering -----------------------------------------------------------------------------


def ordering(keys: Sequence[tuple[ColumnData, bool]]) -> npt.NDArray[np.intp]:
    """A stable permutation sorting rows by ``keys`` (column data, descending?)."""
    if not keys:
        return np.arange(0, dtype=np.intp)
    rows = len(keys[0][0])
    perm = np.arange(rows, dtype=np.intp)
    for column, descending in reversed(keys):
        current = column.take(perm)
        if current.numeric:
            _, rank = np.unique(current.values, return_inverse=True)
            rank = rank.reshape(-1).astype(np.int64)
            rank[current.null] = 0
            if descending:
                step = np.lexsort((-rank, current.null.astype(np.int8)))
            else:
                step = np.lexsort((rank, (~current.null).astype(np.int8)))
        else:
            values = current.values
            if descending:
                order = sorted(
                    range(rows),
                    key=lambda i: (
                        values[i] is not None,
                        values[i] if values[i] is not None else 0,
                    ),
                    reverse=True,
                )
            else:
                order = sorted(
                    range(rows),
                    key=lambda i: (
                        values[i] is not None,
                        values[i] if values[i] is not None else 0,
                    ),
                )
            step = np.asarray(order, dtype=np.intp)
        perm = perm[step]
    return perm


def top_candidates(column: ColumnData, top: int, *, descending: bool) -> npt.NDArray[np.intp]:
    """Positions (ascending) of a superset of the first ``top`` rows sorted by ``column``.

    Sorted as :func:`ordering` does: NULLs first ascending, last descending. For numbers,
    the rows up to the ``top``-th value (found by ``np.partition``, ties kept); otherwise
    every row.
    """
    rows = len(column)
    everything = np.arange(rows, dtype=np.intp)
    if not column.numeric or top >= rows:
        return everything
    known = ~column.null
    values = column.values[known]
    if values.dtype.kind == "f" and bool(np.isnan(values).any()):
        return everything
    if top <= 0:
        return everything[:0]
    nulls = rows - len(values)
    if not descending:
        if nulls >= top:
            return np.flatnonzero(column.null)
        need = top - nulls
        kth = np.partition(values, need - 1)[need - 1]
        return np.flatnonzero(column.null | (known & (column.values <= kth)))
    if len(values) < top:
        return everything
    kth = np.partition(values, len(values) - top)[len(values) - top]
    return np.flatnonzero(known & (column.values >= kth))


def extreme(column: ColumnData, function: Literal["min", "max"]) -> int | None:
    """Position of the first minimum/maximum non-NULL value, or ``None`` if all are NULL."""
    known = np.flatnonzero(~column.null)
    if not len(known):
        return None
    if column.numeric:
        values = column.values[known]
        best = int(np.argmin(values) if function == "min" else np.argmax(values))
        return int(known[best])
    pick = min if function == "min" else max
    return int(pick(known, key=lambda i: column.values[i]))


__all__ = [
    "ColumnBinding",
    "ColumnData",
    "Decryptor",
    "Evaluator",
    "decrypt_column",
    "evaluate",
    "extreme",
    "like_regex",
    "ordering",
    "plain_column",
    "split",
    "top_candidates",
    "touches_encrypted",
    "typed_values",
]
