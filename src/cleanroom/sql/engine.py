"""The host side: describe a statement, run what it can on ciphertext, ask the enclave the rest.

:class:`QueryEngine` sits in front of a :class:`~cleanroom.store.Store` (SQLite or
PostgreSQL) in the enclave host process. It sees statements, cells, parameters encrypted by
the client and enclave packages it cannot open. For a ``SELECT`` it

* pushes to the database the predicates it can evaluate on what it stores (see
  :mod:`cleanroom.sql.evaluate`): plaintext columns, and ``=``/``<>``/``IN`` on deterministic
  columns as ciphertext equality;
* streams the remaining rows in batches through the enclave, which returns the positions
  where the rest of the predicate holds, then an ordering for ``ORDER BY`` and re-encrypted
  cells for ``MIN``/``MAX``;
* returns cells for encrypted columns, with the metadata the client needs to decrypt them.

``describe`` is the analogue of ``sp_describe_parameter_encryption``: which parameters the
client must encrypt (under which key and type) and which wrapped keys the client needs,
marking those the enclave must receive.
"""

from __future__ import annotations

import gc
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cleanroom.crypto import SqlType
from cleanroom.errors import QueryError, SchemaError, StorageError
from cleanroom.sql import package as pkg
from cleanroom.sql.enclave import AttestationInfo, Enclave, EnclaveStatement
from cleanroom.sql.evaluate import (
    ColumnBinding,
    evaluate,
    ordering,
    plain_column,
    split,
    touches_encrypted,
)
from cleanroom.sql.parser import (
    Aggregate,
    AlterColumnPlan,
    And,
    Between,
    ColumnItem,
    Compare,
    Constant,
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
    leaf_values,
    leaves,
    parse,
)
from cleanroom.store import ROW_ID, ColumnSpec, DatasetInfo, DatasetSchema, Store

_log = logging.getLogger("cleanroom.sql")

DEFAULT_BATCH_SIZE: Final = 65_536
_TEMP_COLUMN: Final = "cr_alter_new"
_MASK64: Final = (1 << 64) - 1
_CHARACTER_TYPES: Final = frozenset({"char", "varchar", "nchar", "nvarchar"})


@dataclass(frozen=True, slots=True)
class WrappedValue:
    """One wrapped value of a CEK with its CMK's metadata (a row of result set 1)."""

    encrypted_value: bytes = field(repr=False)
    column_master_key: str
    provider_name: str
    key_path: str
    algorithm: str
    allow_enclave_computations: bool
    signature: bytes | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class KeyDescription:
    """A column encryption key a statement needs; ``requested_by_enclave`` if the enclave does."""

    key_id: int
    name: str
    key_md_version: bytes
    values: tuple[WrappedValue, ...]
    requested_by_enclave: bool


@dataclass(frozen=True, slots=True)
class ParameterDescription:
    """How the client must send one parameter (result set 2): typed for ``column``."""

    key: ParamKey
    column: str
    sql_type: str
    encrypted: bool
    encryption: Literal["deterministic", "randomized"] | None
    key_id: int | None


@dataclass(frozen=True, slots=True)
class StatementDescription:
    """What ``describe`` returns for one statement."""

    statement: str
    keys: tuple[KeyDescription, ...]
    parameters: tuple[ParameterDescription, ...]
    needs_enclave: bool


@dataclass(frozen=True, slots=True)
class ResultColumn:
    """A result column: plaintext, or cells under ``key_id`` (a key of the description)."""

    name: str
    sql_type: str
    encrypted: bool = False
    encryption: Literal["deterministic", "randomized"] | None = None
    cek: str | None = None


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Result columns as stored (cells for encrypted columns) and their metadata.

    ``data`` is column-major: one list of values per result column (bulk decryption works
    per column); :attr:`rows` gives the row tuples.
    """

    columns: tuple[ResultColumn, ...]
    data: tuple[list[Any], ...] = field(repr=False)
    rowcount: int

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        """The rows as tuples."""
        return list(zip(*self.data, strict=True))


@dataclass(slots=True)
class _Prepared:
    plan: SelectPlan | AlterColumnPlan
    dataset: DatasetInfo
    specs: dict[str, ColumnSpec]  # lower-case name -> spec
    bindings: dict[str, ColumnBinding]
    keys: list[KeyDescription]
    parameters: list[ParameterDescription]
    needs_enclave: bool
    target: ColumnBinding | None = None


class QueryEngine:
    """Runs enclave-enabled SQL over a store (see the module docstring).

    ``enclave`` is required for statements that compute on encrypted columns; without it
    they raise :class:`QueryError`. ``batch_size`` bounds the rows held per enclave call.
    """

    def __init__(
        self, store: Store, *, enclave: Enclave | None = None, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        if batch_size < 1:
            raise QueryError("batch_size must be at least 1")
        self._store = store
        self._enclave = enclave
        self._batch_size = batch_size
        # Private seam for crash tests: called with the rows converted so far by ALTER.
        self._alter_progress: Callable[[int], None] | None = None

    def __repr__(self) -> str:
        return f"QueryEngine(store={self._store!r}, enclave={self._enclave is not None})"

    @property
    def store(self) -> Store:
        """The store this engine reads."""
        return self._store

    # -- protocol ---------------------------------------------------------------------------

    def attest(self, parameters: bytes) -> AttestationInfo:
        """Pass attestation parameters to the enclave; return its attestation info."""
        return self._require_enclave().attest(parameters)

    def describe(self, statement: str, *, party: str) -> StatementDescription:
        """Parameter encryption and keys for ``statement`` on ``party``'s tables."""
        prepared = self._prepare(statement, party)
        return StatementDescription(
            statement=statement,
            keys=tuple(prepared.keys),
            parameters=tuple(prepared.parameters),
            needs_enclave=prepared.needs_enclave,
        )

    def execute(
        self,
        statement: str,
        *,
        party: str,
        parameters: Mapping[ParamKey, Any] | None = None,
        package: bytes | None = None,
    ) -> QueryResult:
        """Run ``statement``: parameters of encrypted columns are cells, ``package`` seals keys."""
        prepared = self._prepare(statement, party)
        params = self._check_parameters(prepared, dict(parameters or {}))
        handle: EnclaveStatement | None = None
        if prepared.needs_enclave:
            if package is None:
                raise QueryError(
                    "this statement computes on encrypted columns: send an enclave package"
                )
            handle = self._require_enclave().begin(
                package,
                statement,
                columns=prepared.bindings,
                parameters=params,
                target=prepared.target,
            )
        try:
            if isinstance(prepared.plan, AlterColumnPlan):
                assert handle is not None
                return self._alter(prepared, prepared.plan, handle)
            return _Select(self, prepared, prepared.plan, params, handle).run()
        finally:
            if handle is not None:
                handle.close()

    # -- preparation --------------------------------------------------------------------------

    def _require_enclave(self) -> Enclave:
        if self._enclave is None:
            raise QueryError(
                "this engine has no enclave: computations on encrypted columns are off"
            )
        return self._enclave

    def _dataset(self, party: str, table: str) -> DatasetInfo:
        for info in self._store.datasets(party):
            if info.name.lower() == table.lower():
                return info
        raise QueryError(f"party {party!r} has no table {table!r}")

    def _prepare(self, statement: str, party: str) -> _Prepared:
        plan = parse(statement)
        dataset = self._dataset(party, plan.table)
        specs = {spec.name.lower(): spec for spec in dataset.schema.columns}
        keys: dict[str, KeyDescription] = {}
        cek_names = sorted({s.cek for s in specs.values() if s.encrypted and s.cek})
        if isinstance(plan, AlterColumnPlan) and plan.cek is not None:
            cek_names = sorted(set(cek_names) | {plan.cek})
        key_ids = {name: index for index, name in enumerate(cek_names)}
        versions = {name: self._key_version(name) for name in cek_names}
        bindings = {
            name: ColumnBinding(
                name=name,
                sql_type=spec.sql_type,
                encrypted=spec.encrypted,
                encryption=spec.encryption if spec.encrypted else None,
                key_id=key_ids[spec.cek] if spec.encrypted and spec.cek else None,
                key_md_version=versions[spec.cek][0] if spec.encrypted and spec.cek else None,
            )
            for name, spec in specs.items()
        }
        for column in _plan_columns(plan):
            if column not in bindings:
                raise QueryError(f"no column {column!r} in table {dataset.name}")
        enclave_keys: set[int] = set()
        client_keys: set[int] = set()
        parameters: list[ParameterDescription] = []
        target = None
        if isinstance(plan, SelectPlan):
            _, residual = split(plan.where, bindings)
            enclave_columns = {leaf.column for term in residual for leaf in leaves(term)}
            enclave_columns |= {k.column for k in plan.order}
            enclave_columns |= {
                i.column
                for i in plan.items
                if isinstance(i, Aggregate) and i.function != "count" and i.column
            }
            for name in enclave_columns:
                if bindings[name].encrypted and bindings[name].key_id is not None:
                    enclave_keys.add(bindings[name].key_id)  # type: ignore[arg-type]
            for leaf in leaves(plan.where):
                kind = SqlType.parse(bindings[leaf.column].sql_type).name
                if isinstance(leaf, Like) and kind not in _CHARACTER_TYPES:
                    raise QueryError(f"LIKE on column {leaf.column!r} needs a character column")
            parameters = _describe_parameters(plan, bindings)
            client_keys |= {p.key_id for p in parameters if p.key_id is not None}
            result_names = [
                i.column for i in plan.items if isinstance(i, ColumnItem | Aggregate) and i.column
            ]
            for name in result_names or list(bindings):
                if bindings[name].key_id is not None:
                    client_keys.add(bindings[name].key_id)  # type: ignore[arg-type]
            needs_enclave = bool(enclave_keys)
        else:
            target = self._alter_target(plan, specs, bindings, key_ids, versions)
            source = bindings[plan.column]
            for binding in (source, target):
                if binding.encrypted and binding.key_id is not None:
                    enclave_keys.add(binding.key_id)
            needs_enclave = True
        for name in cek_names:
            key_id = key_ids[name]
            if key_id in enclave_keys or key_id in client_keys:
                keys[name] = KeyDescription(
                    key_id=key_id,
                    name=name,
                    key_md_version=versions[name][0],
                    values=versions[name][1],
                    requested_by_enclave=key_id in enclave_keys,
                )
        return _Prepared(
            plan=plan,
            dataset=dataset,
            specs=specs,
            bindings=bindings,
            keys=sorted(keys.values(), key=lambda k: k.key_id),
            parameters=parameters,
            needs_enclave=needs_enclave,
            target=target,
        )

    def _key_version(self, name: str) -> tuple[bytes, tuple[WrappedValue, ...]]:
        info = self._store.column_encryption_key(name)
        values = []
        for value in info.values:
            cmk = self._store.column_master_key(value.column_master_key_name)
            values.append(
                WrappedValue(
                    encrypted_value=value.encrypted_value,
                    column_master_key=cmk.name,
                    provider_name=cmk.key_store_provider_name,
                    key_path=cmk.key_path,
                    algorithm=value.encryption_algorithm_name,
                    allow_enclave_computations=cmk.allow_enclave_computations,
                    signature=cmk.signature,
                )
            )
        version = pkg.key_md_version(
            name, *[part for v in values for part in (v.column_master_key, v.encrypted_value)]
        )
        return version, tuple(values)

    @staticmethod
    def _alter_target(
        plan: AlterColumnPlan,
        specs: Mapping[str, ColumnSpec],
        bindings: Mapping[str, ColumnBinding],
        key_ids: Mapping[str, int],
        versions: Mapping[str, tuple[bytes, Any]],
    ) -> ColumnBinding:
        spec = specs[plan.column]
        try:
            wanted = SqlType.parse(plan.sql_type)
        except ValueError:
            raise QueryError(f"ALTER COLUMN: unknown type {plan.sql_type!r}") from None
        if wanted != SqlType.parse(spec.sql_type):
            raise QueryError(
                f"ALTER COLUMN {plan.column}: changing the type ({spec.sql_type} to {wanted}) is "
                "unsupported; only the encryption may change"
            )
        source = bindings[plan.column]
        if plan.cek is None:
            if not source.encrypted:
                raise QueryError(f"ALTER COLUMN {plan.column}: the column is already plaintext")
            return ColumnBinding(name=plan.column, sql_type=spec.sql_type)
        if plan.cek not in key_ids:
            raise QueryError(f"no column encryption key {plan.cek!r}")
        if source.encrypted and spec.cek == plan.cek and spec.encryption == plan.encryption:
            raise QueryError(f"ALTER COLUMN {plan.column}: the column is already encrypted so")
        return ColumnBinding(
            name=plan.column,
            sql_type=spec.sql_type,
            encrypted=True,
            encryption=plan.encryption,
            key_id=key_ids[plan.cek],
            key_md_version=versions[plan.cek][0],
        )

    @staticmethod
    def _check_parameters(
        prepared: _Prepared, params: Mapping[ParamKey, Any]
    ) -> dict[ParamKey, Any]:
        """Cells for encrypted columns' parameters, typed values for plaintext columns'."""
        out: dict[ParamKey, Any] = {}
        for description in prepared.parameters:
            if description.key not in params:
                raise QueryError(f"no value for parameter {_shown(description.key)}")
            value = params[description.key]
            if description.encrypted and value is not None and not isinstance(value, bytes):
                raise QueryError(
                    f"parameter {_shown(description.key)} is compared with encrypted column "
                    f"{description.column!r}: it must be encrypted by the client"
                )
            if description.encrypted or value is None:
                out[description.key] = value
                continue
            try:
                out[description.key] = prepared.specs[description.column].column_type.coerce(value)
            except ValueError as error:
                where = f"parameter {_shown(description.key)} for column {description.column!r}"
                raise SchemaError(f"{where}: {error}") from None
        return out

    # -- ALTER COLUMN -------------------------------------------------------------------------

    def _alter(
        self, prepared: _Prepared, plan: AlterColumnPlan, handle: EnclaveStatement
    ) -> QueryResult:
        spec = prepared.specs[plan.column]
        target = prepared.target
        assert target is not None
        dataset = prepared.dataset
        physical = spec.name
        new_type: sa.types.TypeEngine[Any] = (
            sa.LargeBinary() if target.encrypted else spec.column_type.sa_type()
        )
        old_type: sa.types.TypeEngine[Any] = (
            sa.LargeBinary() if spec.encrypted else spec.column_type.sa_type()
        )
        table = sa.Table(
            dataset.table_name,
            sa.MetaData(),
            sa.Column(ROW_ID, sa.BigInteger(), primary_key=True),
            sa.Column(physical, old_type),
            sa.Column(_TEMP_COLUMN, new_type),
        )
        total = 0
        with self._write() as conn:
            dialect = conn.dialect
            quote = dialect.identifier_preparer.quote
            type_sql = new_type.compile(dialect=dialect)
            name = quote(dataset.table_name)
            conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {quote(_TEMP_COLUMN)} {type_sql}")
            update = (
                sa.update(table)
                .where(table.c[ROW_ID] == sa.bindparam("cr_row"))
                .values({_TEMP_COLUMN: sa.bindparam("cr_value")})
            )
            last = None
            while True:
                query = sa.select(table.c[ROW_ID], table.c[physical]).order_by(table.c[ROW_ID])
                if last is not None:
                    query = query.where(table.c[ROW_ID] > last)
                batch = conn.execute(query.limit(self._batch_size)).all()
                if not batch:
                    break
                ids = [row[0] for row in batch]
                values = [_as_bytes(row[1]) if spec.encrypted else row[1] for row in batch]
                converted = handle.transform(values)
                conn.execute(
                    update,
                    [{"cr_row": i, "cr_value": v} for i, v in zip(ids, converted, strict=True)],
                )
                total += len(batch)
                last = ids[-1]
                if self._alter_progress is not None:
                    self._alter_progress(total)
            conn.exec_driver_sql(f"ALTER TABLE {name} DROP COLUMN {quote(physical)}")
            conn.exec_driver_sql(
                f"ALTER TABLE {name} RENAME COLUMN {quote(_TEMP_COLUMN)} TO {quote(physical)}"
            )
            self._update_catalog(conn, dataset, spec, plan, target)
        _log.info(
            "altered the encryption of %s.%s (%d rows) in the enclave",
            dataset.table_name,
            physical,
            total,
        )
        return QueryResult(columns=(), data=(), rowcount=total)

    @staticmethod
    def _update_catalog(
        conn: Connection,
        dataset: DatasetInfo,
        spec: ColumnSpec,
        plan: AlterColumnPlan,
        target: ColumnBinding,
    ) -> None:
        from dataclasses import replace

        new_spec = replace(
            spec,
            encrypted=target.encrypted,
            encryption=plan.encryption or spec.encryption,
            cek=plan.cek if target.encrypted else None,
            nullable=spec.nullable if plan.nullable is None else plan.nullable,
        )
        schema = DatasetSchema(
            table=dataset.schema.table,
            columns=tuple(new_spec if c.name == spec.name else c for c in dataset.schema.columns),
            label=dataset.schema.label,
        )
        datasets = sa.table("datasets", sa.column("table_name"), sa.column("schema_json"))
        conn.execute(
            sa.update(datasets)
            .where(datasets.c.table_name == dataset.table_name)
            .values(schema_json=schema.to_json())
        )
        columns = sa.table(
            "encrypted_columns",
            sa.column("table_name"),
            sa.column("column_name"),
            sa.column("sql_type"),
            sa.column("encryption_type"),
            sa.column("encryption_type_desc"),
            sa.column("column_encryption_key_name"),
            sa.column("encryption_algorithm_name"),
            sa.column("normalization_rule_version"),
        )
        conn.execute(
            sa.delete(columns).where(
                (columns.c.table_name == dataset.table_name) & (columns.c.column_name == spec.name)
            )
        )
        if target.encrypted:
            assert plan.encryption is not None
            conn.execute(
                sa.insert(columns).values(
                    table_name=dataset.table_name,
                    column_name=spec.name,
                    sql_type=spec.sql_type,
                    encryption_type=1 if plan.encryption == "deterministic" else 2,
                    encryption_type_desc=plan.encryption.upper(),
                    column_encryption_key_name=plan.cek,
                    encryption_algorithm_name="AEAD_AES_256_CBC_HMAC_SHA256",
                    normalization_rule_version=1,
                )
            )

    # -- database access -------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._guard("altering a column"), self._store.engine.connect() as conn:
            # The store's SQLite engine begins write transactions with BEGIN IMMEDIATE.
            conn = conn.execution_options(cleanroom_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._guard("reading"), self._store.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except sa.exc.SQLAlchemyError as error:
            # Driver messages may quote parameters (cells, values): keep the class only.
            cause = type(getattr(error, "orig", None) or error).__name__
            raise StorageError(f"{what} failed ({cause})") from None


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


def _shown(key: ParamKey) -> str:
    return f"#{key + 1}" if isinstance(key, int) else f"@{key}"


def _plan_columns(plan: SelectPlan | AlterColumnPlan) -> list[str]:
    if isinstance(plan, AlterColumnPlan):
        return [plan.column]
    names = [leaf.column for leaf in leaves(plan.where)]
    names += [k.column for k in plan.order]
    names += [i.column for i in plan.items if i.column is not None]
    return names


def _describe_parameters(
    plan: SelectPlan, bindings: Mapping[str, ColumnBinding]
) -> list[ParameterDescription]:
    found: dict[ParamKey, ParameterDescription] = {}
    for leaf in leaves(plan.where):
        binding = bindings[leaf.column]
        for value in leaf_values(leaf):
            if isinstance(value, Constant):
                if binding.encrypted:
                    raise QueryError(
                        f"column {leaf.column!r} is encrypted: compare it with a parameter, "
                        "not a literal (operand type clash)"
                    )
                continue
            description = ParameterDescription(
                key=value.key,
                column=leaf.column,
                sql_type=binding.sql_type,
                encrypted=binding.encrypted,
                encryption=binding.encryption,
                key_id=binding.key_id,
            )
            previous = found.get(value.key)
            if previous is not None and _encoding(previous) != _encoding(description):
                raise QueryError(
                    f"parameter {_shown(value.key)} is used with columns of different "
                    "types or encryption"
                )
            found.setdefault(value.key, description)
    return list(found.values())


def _encoding(d: ParameterDescription) -> tuple[Any, ...]:
    return (d.encrypted, d.key_id, d.encryption, d.sql_type)


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
            and SqlType.parse(binding.sql_type).name in _CHARACTER_TYPES
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


import operator as _operator  # noqa: E402

_SQL_OPS: Final = {
    "=": _operator.eq,
    "<>": _operator.ne,
    "<": _operator.lt,
    "<=": _operator.le,
    ">": _operator.gt,
    ">=": _operator.ge,
}


def _physical_table(dataset: DatasetInfo) -> sa.Table:
    columns: list[sa.Column[Any]] = [sa.Column(ROW_ID, sa.BigInteger(), primary_key=True)]
    for spec in dataset.schema.columns:
        kind: sa.types.TypeEngine[Any] = (
            sa.LargeBinary() if spec.encrypted else spec.column_type.sa_type()
        )
        columns.append(sa.Column(spec.name, kind))
    return sa.Table(dataset.table_name, sa.MetaData(), *columns)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "KeyDescription",
    "ParameterDescription",
    "QueryEngine",
    "QueryResult",
    "ResultColumn",
    "StatementDescription",
    "WrappedValue",
    "sample_mask",
]
