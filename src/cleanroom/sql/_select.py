"""The host side of one SELECT: pushdown SQL, the streamed scan, enclave calls, sampling."""

from __future__ import annotations

import functools
import gc
import operator
import secrets
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cleanroom.crypto import SqlType
from cleanroom.errors import QueryError, SchemaError, StorageError
from cleanroom.sql import _index_host as catalog
from cleanroom.sql._model import QueryResult, ResultColumn, _Prepared
from cleanroom.sql.enclave import EnclaveStatement
from cleanroom.sql.evaluate import evaluate, ordering, plain_column, split, touches_encrypted
from cleanroom.sql.index import indexable_columns
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
_CELL_TYPES: Final = frozenset({bytes, type(None)})
_FIRST: Final = operator.itemgetter(0)
#: Row ids per ``IN (…)`` query when the output columns are read after the scan.
_ID_CHUNK: Final = 4_096
_END: Final = object()
_CHANGED: Final = "the table changed while it was read: run the query again"
_T = TypeVar("_T")
_R = TypeVar("_R")
#: One batch of a scan: the row ids (when selected) and the values, column by column.
_Batch = tuple[npt.NDArray[np.int64] | None, dict[str, list[Any]]]
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
    if set(map(type, values)) <= _CELL_TYPES:
        return list(values)
    return [_as_bytes(v) for v in values]


def _processed(processor: Callable[[Any], Any], values: Sequence[Any]) -> list[Any]:
    return [None if v is None else processor(v) for v in values]


def _take(
    ids: npt.NDArray[np.int64] | None,
    batch: dict[str, list[Any]],
    positions: npt.NDArray[np.intp],
    *,
    reorder: bool = False,
) -> _Batch:
    """The rows of a batch at ``positions`` (ascending unless ``reorder``)."""
    rows = len(next(iter(batch.values()), [])) if batch else (0 if ids is None else len(ids))
    if len(positions) == rows and not reorder:
        return ids, batch
    if len(positions) == 0:
        return (None if ids is None else ids[:0]), {name: [] for name in batch}
    getter = operator.itemgetter(*positions.tolist())
    taken: dict[str, list[Any]]
    if len(positions) == 1:
        taken = {name: [getter(values)] for name, values in batch.items()}
    else:
        taken = {name: list(getter(values)) for name, values in batch.items()}
    return (None if ids is None else ids[positions]), taken


def pipelined(items: Iterable[_T], work: Callable[[_T], _R]) -> Iterator[_R]:
    """``work`` over ``items``, in order, each item's work overlapping the next item's making.

    Here an item is a batch fetched from the database (the caller's thread) and the work is
    the enclave's scan of it, which waits on decryption workers: one helper thread runs the
    work of batch *k* while the caller fetches batch *k + 1*. The first item is worked on in
    the caller's thread, so that whatever it sets up (e.g. forked decryption workers) is
    made before a second thread exists.
    """
    iterator = iter(items)
    first = next(iterator, _END)
    if first is _END:
        return
    yield work(first)  # type: ignore[arg-type]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cleanroom-scan") as pool:
        pending: Future[_R] | None = None
        for item in iterator:
            future = pool.submit(work, item)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()


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
        # The enclave sorts as it scans: it keeps the ORDER BY values of the rows it keeps.
        self._enclave_sort = self._enclave_order and not plan.is_aggregate
        self._table = _physical_table(prepared.dataset)
        self._top: int | None = None
        self._seed: int | None = None
        # Candidate row ids from a sealed enclave index, and the last row id it covers.
        self._index_hits: tuple[npt.NDArray[np.int64], int] | None = None
        if plan.sample is not None:
            self._seed = plan.sample.seed if plan.sample.seed is not None else secrets.randbits(63)

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
        push_order = bool(plan.order) and not self._enclave_order
        self._top = plan.top if plan.top is not None and not push_order and plan.order else None
        # Fetch only what the scan reads; when the scan keeps few rows (a predicate, TOP on an
        # encrypted ORDER BY), the other output columns are read afterwards for those rows.
        scan = list(
            dict.fromkeys(
                [leaf.column for term in self._residual for leaf in leaves(term)]
                + [k.column for k in plan.order]
                + [i.column for i in plan.items if isinstance(i, Aggregate) and i.column]
            )
        )
        late = [n for n in needed if n not in scan]
        if not scan or not (self._residual or self._top is not None):
            scan, late = needed, []
        with self._engine._read() as conn, paused_gc():
            if not push_order:
                self._index_hits = self._use_index(conn)
            ids, kept, count = self._scan(conn, scan, push_order, with_ids=bool(late))
            if late:
                assert ids is not None
                kept.update(self._fetch_rows(conn, ids, late))
            return self._finish(kept, count, output, push_order)

    def _scan(
        self, conn: Connection, names: list[str], push_order: bool, *, with_ids: bool
    ) -> tuple[npt.NDArray[np.int64] | None, dict[str, list[Any]], int]:
        """Stream the table once; keep the rows (and their ids) that pass; count them."""
        plan = self._plan
        hits = self._index_hits
        with_ids = with_ids or plan.sample is not None or not names or hits is not None
        columns = [self._physical(n) for n in names]
        query = sa.select(self._table.c[ROW_ID], *columns) if with_ids else sa.select(*columns)
        for term in self._pushed:
            query = query.where(self._sql(term))
        if push_order:
            query = query.order_by(*self._sql_order(), self._table.c[ROW_ID])
        else:
            query = query.order_by(self._table.c[ROW_ID])
        if plan.top is not None and push_order and not self._residual and plan.sample is None:
            query = query.limit(plan.top)
        kept: dict[str, list[Any]] = {name: [] for name in names}
        kept_ids: list[npt.NDArray[np.int64]] = []
        count = 0
        batches = (
            self._batches(conn, query, names, with_ids)
            if hits is None
            else self._indexed_batches(conn, query, names, *hits)
        )
        with closing(batches):
            for ids, batch in pipelined(batches, self._reduce):
                for name in names:
                    kept[name].extend(batch[name])
                if ids is not None:
                    kept_ids.append(ids)
                    count += len(ids)
                else:
                    count += len(batch[names[0]])
        if not with_ids:
            return None, kept, count
        all_ids = np.concatenate(kept_ids) if kept_ids else np.zeros(0, dtype=np.int64)
        return all_ids, kept, count

    def _use_index(self, conn: Connection) -> tuple[npt.NDArray[np.int64], int] | None:
        """Candidate row ids from a sealed index on a column the predicate narrows, if any.

        The enclave unseals the stored blob, checks that it is this table's and column's,
        and returns the rows that may match and the last row id the index covers; the scan
        then reads those rows and every later one, and the enclave evaluates the whole
        predicate on them (see :mod:`cleanroom.sql.index`).
        """
        if self._handle is None or not self._enclave_filter:
            return None
        for column in indexable_columns(self._residual, self._bindings):
            spec = self._specs[column]
            stored = catalog.find(conn, self._prepared.dataset.table_name, spec.name)
            if stored is None or stored.cek != spec.cek:
                continue
            return self._handle.index_candidates(column, stored.blob)
        return None

    def column_batches(self, conn: Connection, column: str) -> Generator[_Batch, None, None]:
        """Every row id and value of ``column``, in row id order, in batches."""
        row_id = self._table.c[ROW_ID]
        query = sa.select(row_id, self._physical(column)).order_by(row_id)
        return self._batches(conn, query, [column], True)

    def _indexed_batches(
        self,
        conn: Connection,
        query: Any,
        names: list[str],
        candidates: npt.NDArray[np.int64],
        max_row_id: int,
    ) -> Generator[_Batch, None, None]:
        """The rows of ``query`` among ``candidates``, then those after ``max_row_id``."""
        row_id = self._table.c[ROW_ID]
        for start in range(0, len(candidates), _ID_CHUNK):
            chunk = candidates[start : start + _ID_CHUNK].tolist()
            yield from self._batches(conn, query.where(row_id.in_(chunk)), names, True)
        yield from self._batches(conn, query.where(row_id > max_row_id), names, True)

    def _batches(
        self, conn: Connection, query: Any, names: list[str], with_ids: bool
    ) -> Generator[_Batch, None, None]:
        """The rows of ``query`` in batches: row ids (if selected), then values by column."""
        # Rows come straight from the DB-API cursor: building a Row object per row costs
        # more than the database does. Plaintext columns still get their type's result
        # processor (e.g. SQLite dates are text). No stream_results: its buffered strategy
        # would read rows ahead of the raw cursor. (SQLite steps through the table as we
        # fetch; psycopg's client-side cursor holds the result.)
        result = conn.execute(query)
        try:
            cursor = result.cursor
            convert = self._converters(conn, cursor, names, offset=1 if with_ids else 0)
            first = 1 if with_ids else 0
            while True:
                rows = cursor.fetchmany(self._engine._batch_size)
                if not rows:
                    break
                if len(names) + first == 1:
                    fields: list[Sequence[Any]] = [list(map(_FIRST, rows))]
                else:
                    fields = list(zip(*rows, strict=True))
                ids = np.asarray(fields[0], dtype=np.int64) if with_ids else None
                yield (
                    ids,
                    {
                        name: convert[index](fields[index + first])
                        for index, name in enumerate(names)
                    },
                )
        finally:
            result.close()

    def _converters(
        self, conn: Connection, cursor: Any, names: list[str], *, offset: int
    ) -> list[Callable[[Sequence[Any]], list[Any]]]:
        """Per column: DB-API values to cells (encrypted) or to the type's Python values."""
        dialect = conn.dialect
        type_codes = [d[1] for d in cursor.description or ()][offset:]
        out: list[Callable[[Sequence[Any]], list[Any]]] = []
        for index, name in enumerate(names):
            if self._bindings[name].encrypted:
                out.append(_cells)
                continue
            processor = (
                self._physical(name)
                .type.dialect_impl(dialect)
                .result_processor(dialect, type_codes[index] if type_codes else None)
            )
            if processor is None:
                out.append(list)
            else:
                out.append(functools.partial(_processed, processor))
        return out

    def _reduce(self, item: _Batch) -> _Batch:
        """One batch's sampling, predicate and TOP candidates (the enclave's share in one call)."""
        ids, batch = item
        plan = self._plan
        if plan.sample is not None:
            assert ids is not None
            assert self._seed is not None
            positions = np.flatnonzero(sample_mask(ids, plan.sample, self._seed))
            ids, batch = _take(ids, batch, positions)
        top = self._top
        enclave_top = top is not None and self._enclave_order
        if self._enclave_filter or self._enclave_sort:
            assert self._handle is not None
            names = self._handle.scan_columns(top=enclave_top, sort=self._enclave_sort)
            hits = self._handle.scan(
                {name: batch[name] for name in names},
                top=top if enclave_top else None,
                sort=self._enclave_sort,
            )
            ids, batch = _take(ids, batch, hits)
        elif self._residual:
            ids, batch = _take(ids, batch, self._host_filter(batch))
        if top is not None and not enclave_top:
            ids, batch = self._candidates(ids, batch, top)
        return ids, batch

    def _fetch_rows(
        self, conn: Connection, ids: npt.NDArray[np.int64], names: list[str]
    ) -> dict[str, list[Any]]:
        """``names`` of the rows ``ids``, in that order, read by row id in chunks."""
        # The scan returns rows by row id, or in a plaintext ORDER BY done by the database.
        order = None if bool(np.all(ids[1:] > ids[:-1])) else np.argsort(ids, kind="stable")
        wanted = ids if order is None else ids[order]
        out: dict[str, list[Any]] = {name: [] for name in names}
        row_id = self._table.c[ROW_ID]
        columns = [self._physical(n) for n in names]
        for start in range(0, len(wanted), _ID_CHUNK):
            chunk = wanted[start : start + _ID_CHUNK]
            query = (
                sa.select(row_id, *columns)
                .where(row_id.in_([int(i) for i in chunk]))
                .order_by(row_id)
            )
            with closing(self._batches(conn, query, names, True)) as batches:
                for got, batch in batches:
                    assert got is not None
                    if not np.array_equal(got, chunk[: len(got)]):
                        raise StorageError(_CHANGED)
                    for name in names:
                        out[name].extend(batch[name])
                    chunk = chunk[len(got) :]
            if len(chunk):
                raise StorageError(_CHANGED)
        if order is None:
            return out
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return _take(None, out, back, reorder=True)[1]

    def _candidates(
        self, ids: npt.NDArray[np.int64] | None, batch: dict[str, list[Any]], top: int
    ) -> _Batch:
        """``TOP (n) … ORDER BY`` on plaintext columns: keep only a batch's first ``n`` rows.

        The batch's own ordering picks its candidates; they stay in row order so that the
        final (stable) ordering breaks ties by row id, as a full sort would.
        """
        rows = len(next(iter(batch.values()), []))
        if rows <= top:
            return ids, batch
        return _take(ids, batch, np.sort(self._order(batch)[:top]))

    def _finish(
        self, kept: dict[str, list[Any]], count: int, output: list[str], push_order: bool
    ) -> QueryResult:
        plan = self._plan
        if plan.is_aggregate:
            return self._aggregate(kept, count)
        if plan.order and not push_order and count:
            if self._enclave_sort:
                assert self._handle is not None
                perm = self._handle.scanned_order()
                if len(perm) != count:  # pragma: no cover - the scan kept what it returned
                    raise QueryError("the enclave sorted another number of rows")
            else:
                perm = self._order(kept)
            _, kept = _take(None, kept, perm, reorder=True)
        if plan.top is not None:
            kept = {name: values[: plan.top] for name, values in kept.items()}
            count = min(count, plan.top)
        described = tuple(self._result_column(name) for name in output)
        return QueryResult(
            columns=described, data=tuple(kept[name] for name in output), rowcount=count
        )

    def _host_filter(self, batch: Mapping[str, list[Any]]) -> npt.NDArray[np.intp]:
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
