"""The host side of one SELECT: pushdown SQL, the streamed scan, enclave calls, sampling."""

from __future__ import annotations

import gc
import operator
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from cleanroom.crypto import SqlType
from cleanroom.errors import QueryError, SchemaError
from cleanroom.sql._model import QueryResult, ResultColumn, _Prepared
from cleanroom.sql.enclave import EnclaveStatement
from cleanroom.sql.evaluate import evaluate, ordering, plain_column, split, touches_encrypted
from cleanroom.sql.parser import (
    Aggregate,
    And,
    Between,
    ColumnItem,
    Compare,
    InList,
    IsNull,
    Like,
    Not,
    Or,
    Param,
    ParamKey,
    Predicate,
    Sample,
    SelectPlan,
    Value,
    leaves,
)
from cleanroom.store import ROW_ID, DatasetInfo

if TYPE_CHECKING:
    from cleanroom.sql.engine import QueryEngine

_MASK64: Final = (1 << 64) - 1
CHARACTER_TYPES: Final = frozenset({"char", "varchar", "nchar", "nvarchar"})


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector around bulk row handling.

    Hundreds of thousands of short-lived tuples trigger collections that walk the whole
    heap again and again (3-4× the time of the work itself here). Nothing allocated in
    these loops forms reference cycles, so reference counting frees it all anyway.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _cells(values: Sequence[Any]) -> list[Any]:
    """Cells as ``bytes`` (drivers may hand out memoryviews), without a per-value call."""
    if all(type(v) is bytes or v is None for v in values):
        return list(values)
    return [_as_bytes(v) for v in values]


def _as_bytes(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview | bytearray) else value


def sample_mask(row_ids: npt.NDArray[np.int64], sample: Sample, seed: int) -> npt.NDArray[np.bool_]:
    """Which rows ``TABLESAMPLE (p PERCENT) REPEATABLE (seed)`` keeps (SplitMix64 of row id)."""
    with np.errstate(over="ignore"):
        z = (
            row_ids.astype(np.uint64) + np.uint64(seed & _MASK64) * np.uint64(0x9E3779B97F4A7C15)
        ) & np.uint64(_MASK64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    threshold = int(sample.percent / 100 * 2**64)
    if threshold >= 2**64:
        return np.ones(len(row_ids), dtype=np.bool_)
    return z < np.uint64(threshold)


class _Select:
    """One SELECT execution (host side)."""

    def __init__(
        self,
        engine: QueryEngine,
        prepared: _Prepared,
        plan: SelectPlan,
        params: Mapping[ParamKey, Any],
        handle: EnclaveStatement | None,
    ) -> None:
        self._engine = engine
        self._prepared = prepared
        self._plan = plan
        self._params = params
        self._handle = handle
        self._bindings = prepared.bindings
        self._specs = prepared.specs
        self._pushed, self._residual = split(plan.where, self._bindings)
        self._enclave_filter = touches_encrypted(self._residual, self._bindings)
        self._enclave_order = any(self._bindings[k.column].encrypted for k in plan.order)
        self._table = _physical_table(prepared.dataset)

    def _physical(self, name: str) -> sa.ColumnElement[Any]:
        return self._table.c[self._specs[name].name]

    def run(self) -> QueryResult:
        plan = self._plan
        output = (
            [i.column for i in plan.items if isinstance(i, ColumnItem)]
            if plan.items
            else list(self._specs)
        )
        needed = list(
            dict.fromkeys(
                [*output]
                + [leaf.column for term in self._residual for leaf in leaves(term)]
                + [k.column for k in plan.order]
                + [i.column for i in plan.items if isinstance(i, Aggregate) and i.column]
            )
        )
        query = sa.select(self._table.c[ROW_ID], *[self._physical(n) for n in needed])
        for term in self._pushed:
            query = query.where(self._sql(term))
        push_order = bool(plan.order) and not self._enclave_order
        if push_order:
            query = query.order_by(*self._sql_order(), self._table.c[ROW_ID])
        else:
            query = query.order_by(self._table.c[ROW_ID])
        if plan.top is not None and push_order and not self._residual and plan.sample is None:
            query = query.limit(plan.top)
        seed = None
        if plan.sample is not None:
            seed = plan.sample.seed if plan.sample.seed is not None else secrets.randbits(63)
        kept: dict[str, list[Any]] = {name: [] for name in needed}
        encrypted = {n for n in needed if self._bindings[n].encrypted}
        with self._engine._read() as conn, paused_gc():
            # Rows come straight from the DB-API cursor: building a Row object per row costs
            # more than the database does. Plaintext columns still get their type's result
            # processor (e.g. SQLite dates are text). No stream_results: its buffered
            # strategy would read rows ahead of the raw cursor. (SQLite steps through the
            # table as we fetch; psycopg's client-side cursor holds the result.)
            result = conn.execute(query)
            dialect = conn.dialect
            cursor = result.cursor
            type_codes = [d[1] for d in cursor.description or ()][1:]
            processors = [
                None
                if name in encrypted
                else self._physical(name)
                .type.dialect_impl(dialect)
                .result_processor(dialect, type_codes[index] if type_codes else None)
                for index, name in enumerate(needed)
            ]
            while True:
                rows = cursor.fetchmany(self._engine._batch_size)
                if not rows:
                    break
                fields: list[tuple[Any, ...]] = list(zip(*rows, strict=True))
                batch: dict[str, list[Any]] = {}
                for index, name in enumerate(needed):
                    values = fields[index + 1]
                    processor = processors[index]
                    if name in encrypted:
                        batch[name] = _cells(values)
                    elif processor is not None:
                        batch[name] = [None if v is None else processor(v) for v in values]
                    else:
                        batch[name] = list(values)
                if plan.sample is not None:
                    assert seed is not None
                    ids = np.asarray(fields[0], dtype=np.int64)
                    positions = np.flatnonzero(sample_mask(ids, plan.sample, seed))
                    batch = {name: [values[p] for p in positions] for name, values in batch.items()}
                if self._residual:
                    hits = self._filter(batch)
                    if len(hits) != len(next(iter(batch.values()), [])):
                        batch = {name: [values[p] for p in hits] for name, values in batch.items()}
                if plan.top is not None and not push_order and plan.order:
                    batch = self._candidates(batch, plan.top)
                for name in needed:
                    kept[name].extend(batch[name])
            result.close()
            return self._finish(kept, output, push_order)

    def _candidates(self, batch: dict[str, list[Any]], top: int) -> dict[str, list[Any]]:
        """``TOP (n) … ORDER BY`` in the enclave: keep only a batch's first ``n`` rows.

        The batch's own ordering picks its candidates; they stay in row order so that the
        final (stable) ordering breaks ties by row id, as a full sort would.
        """
        rows = len(next(iter(batch.values()), []))
        if rows <= top:
            return batch
        chosen = np.sort(self._order(batch)[:top])
        return {name: [values[p] for p in chosen] for name, values in batch.items()}

    def _finish(
        self, kept: dict[str, list[Any]], output: list[str], push_order: bool
    ) -> QueryResult:
        plan = self._plan
        count = len(next(iter(kept.values()), [])) if kept else 0
        if plan.is_aggregate:
            return self._aggregate(kept, count)
        if plan.order and not push_order:
            perm = self._order(kept)
            kept = {name: [values[p] for p in perm] for name, values in kept.items()}
        if plan.top is not None:
            kept = {name: values[: plan.top] for name, values in kept.items()}
            count = min(count, plan.top)
        described = tuple(self._result_column(name) for name in output)
        return QueryResult(
            columns=described, data=tuple(kept[name] for name in output), rowcount=count
        )

    def _filter(self, batch: Mapping[str, list[Any]]) -> npt.NDArray[np.intp]:
        if self._enclave_filter:
            assert self._handle is not None
            names = self._handle.residual_columns
            return self._handle.filter({name: batch[name] for name in names})
        columns = {
            leaf.column: plain_column(batch[leaf.column], self._bindings[leaf.column])
            for term in self._residual
            for leaf in leaves(term)
        }
        return evaluate(self._residual, columns, self._params)

    def _order(self, kept: Mapping[str, list[Any]]) -> npt.NDArray[np.intp]:
        plan = self._plan
        if self._enclave_order:
            assert self._handle is not None
            return self._handle.order({k.column: kept[k.column] for k in plan.order})
        keys = [
            (plain_column(kept[k.column], self._bindings[k.column]), k.descending)
            for k in plan.order
        ]
        return ordering(keys)

    def _aggregate(self, kept: Mapping[str, list[Any]], count: int) -> QueryResult:
        columns: list[ResultColumn] = []
        row: list[Any] = []
        for item in self._plan.items:
            assert isinstance(item, Aggregate)
            label = f"{item.function}({item.column or '*'})"
            if item.function == "count":
                value = (
                    count if item.column is None else sum(v is not None for v in kept[item.column])
                )
                columns.append(ResultColumn(label, "bigint"))
                row.append(value)
                continue
            assert item.column is not None
            binding = self._bindings[item.column]
            values = kept[item.column]
            if binding.encrypted:
                assert self._handle is not None
                row.append(
                    self._handle.extreme(item.function, item.column, values) if values else None
                )
                base = self._result_column(item.column)
                columns.append(ResultColumn(label, base.sql_type, True, base.encryption, base.cek))
            else:
                present = [v for v in values if v is not None]
                pick = min if item.function == "min" else max
                row.append(pick(present) if present else None)
                columns.append(ResultColumn(label, binding.sql_type))
        return QueryResult(columns=tuple(columns), data=tuple([v] for v in row), rowcount=1)

    def _result_column(self, name: str) -> ResultColumn:
        spec = self._specs[name]
        if not spec.encrypted:
            return ResultColumn(spec.name, spec.sql_type)
        return ResultColumn(spec.name, spec.sql_type, True, spec.encryption, spec.cek)

    # -- SQL for pushed-down terms --------------------------------------------------------

    def _bound(self, column: str, value: Value) -> Any:
        binding = self._bindings[column]
        raw = self._params.get(value.key) if isinstance(value, Param) else value.value
        if raw is None:
            return None
        if binding.encrypted:
            return raw
        try:
            return self._specs[column].column_type.coerce(raw)
        except ValueError as error:
            raise SchemaError(f"a value compared with column {column!r}: {error}") from None

    def _target(self, column: str) -> Any:
        expr = self._physical(column)
        binding = self._bindings[column]
        if (
            not binding.encrypted
            and self._engine.store.dialect == "postgresql"
            and SqlType.parse(binding.sql_type).name in CHARACTER_TYPES
        ):
            return expr.collate("C")
        return expr

    def _literal(self, column: str, value: Any) -> Any:
        kind = sa.LargeBinary() if self._bindings[column].encrypted else self._physical(column).type
        return sa.bindparam(None, value, type_=kind)

    def _sql(self, term: Predicate) -> Any:
        if isinstance(term, Not):
            return sa.not_(self._sql(term.item))
        if isinstance(term, Or):
            return sa.or_(*[self._sql(t) for t in term.items])
        if isinstance(term, And):
            return sa.and_(*[self._sql(t) for t in term.items])
        col = self._target(term.column)
        if isinstance(term, IsNull):
            return col.is_not(None) if term.negated else col.is_(None)
        if isinstance(term, Compare):
            value = self._literal(term.column, self._bound(term.column, term.value))
            return _SQL_OPS[term.op](col, value)
        if isinstance(term, Between):
            low = self._literal(term.column, self._bound(term.column, term.low))
            high = self._literal(term.column, self._bound(term.column, term.high))
            expr = sa.and_(col >= low, col <= high)
            return sa.not_(expr) if term.negated else expr
        if isinstance(term, InList):
            values = [self._literal(term.column, self._bound(term.column, v)) for v in term.values]
            expr = sa.or_(*[col == v for v in values])
            return sa.not_(expr) if term.negated else expr
        assert not isinstance(term, Like)
        raise QueryError("cannot push this predicate to the database")  # pragma: no cover

    def _sql_order(self) -> list[Any]:
        out = []
        for key in self._plan.order:
            col = self._target(key.column)
            out.append(col.desc().nulls_last() if key.descending else col.asc().nulls_first())
        return out


_SQL_OPS: Final = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _physical_table(dataset: DatasetInfo) -> sa.Table:
    columns: list[sa.Column[Any]] = [sa.Column(ROW_ID, sa.BigInteger(), primary_key=True)]
    for spec in dataset.schema.columns:
        kind: sa.types.TypeEngine[Any] = (
            sa.LargeBinary() if spec.encrypted else spec.column_type.sa_type()
        )
        columns.append(sa.Column(spec.name, kind))
    return sa.Table(dataset.table_name, sa.MetaData(), *columns)


__all__ = ["CHARACTER_TYPES", "paused_gc", "sample_mask"]
