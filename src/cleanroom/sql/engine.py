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
* returns cells for encrypted columns, with the metadata the client needs to decrypt them;
* for ``CREATE INDEX`` streams the column through the enclave, which seals a sorted index
  as one cell that the host keeps in ``cr_enclave_index``; a later range or equality query
  on that column reads only the rows the enclave finds in it (:mod:`cleanroom.sql.index`).

``describe`` is the analogue of ``sp_describe_parameter_encryption``: which parameters the
client must encrypt (under which key and type) and which wrapped keys the client needs,
marking those the enclave must receive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, closing, contextmanager
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cleanroom.crypto import SqlType
from cleanroom.errors import QueryError, SchemaError
from cleanroom.sql import _index_host as catalog
from cleanroom.sql import package as pkg
from cleanroom.sql._model import (
    KeyDescription,
    ParameterDescription,
    QueryResult,
    ResultColumn,
    StatementDescription,
    WrappedValue,
    _Prepared,
)
from cleanroom.sql._select import (
    CHARACTER_TYPES,
    _as_bytes,
    _Select,
    paused_gc,
    pipelined,
    sample_mask,
)
from cleanroom.sql.enclave import AttestationInfo, Enclave, EnclaveStatement
from cleanroom.sql.evaluate import (
    ColumnBinding,
    split,
)
from cleanroom.sql.parser import (
    Aggregate,
    AlterColumnPlan,
    ColumnItem,
    Constant,
    CreateIndexPlan,
    DropIndexPlan,
    Like,
    ParamKey,
    Plan,
    SelectPlan,
    leaf_values,
    leaves,
    parse,
)
from cleanroom.store import ROW_ID, ColumnSpec, DatasetInfo, DatasetSchema, Store, storage_errors

_log = logging.getLogger("cleanroom.sql")

DEFAULT_BATCH_SIZE: Final = 65_536
_TEMP_COLUMN: Final = "cr_alter_new"


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
            plan = prepared.plan
            if isinstance(plan, AlterColumnPlan):
                assert handle is not None
                return self._alter(prepared, plan, handle)
            if isinstance(plan, CreateIndexPlan):
                assert handle is not None
                return self._create_index(prepared, plan, handle)
            if isinstance(plan, DropIndexPlan):
                return self._drop_index(prepared, plan)
            return _Select(self, prepared, plan, params, handle).run()
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
                if isinstance(leaf, Like) and kind not in CHARACTER_TYPES:
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
        elif isinstance(plan, CreateIndexPlan):
            binding = bindings[plan.column]
            if not binding.encrypted or binding.key_id is None:
                raise QueryError(
                    f"CREATE INDEX: column {plan.column!r} is not encrypted (an enclave index "
                    "is for encrypted columns)"
                )
            enclave_keys.add(binding.key_id)
            needs_enclave = True
        elif isinstance(plan, DropIndexPlan):
            needs_enclave = False
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
            # A sealed index holds the old values under the old key: it goes too.
            catalog.drop_column(conn, dataset.table_name, spec.name)
        _log.info(
            "altered the encryption of %s.%s (%d rows) in the enclave",
            dataset.table_name,
            physical,
            total,
        )
        return QueryResult(columns=(), data=(), rowcount=total)

    # -- CREATE INDEX / DROP INDEX (cleanroom.sql.index) ---------------------------------------

    def _create_index(
        self, prepared: _Prepared, plan: CreateIndexPlan, handle: EnclaveStatement
    ) -> QueryResult:
        dataset = prepared.dataset
        spec = prepared.specs[plan.column]
        assert spec.cek is not None
        scan = _Select(
            self,
            prepared,
            SelectPlan(table=plan.table, items=(ColumnItem(plan.column),)),
            {},
            handle,
        )
        with self._write("building an index") as conn:
            if plan.name in catalog.names(conn, dataset.table_name):
                raise QueryError(f"an index {plan.name!r} on table {dataset.name} exists already")
            if conn.dialect.name == "postgresql":
                # No row may commit while the index is built (its last row id bounds it).
                quote = conn.dialect.identifier_preparer.quote
                conn.exec_driver_sql(f"LOCK TABLE {quote(dataset.table_name)} IN SHARE MODE")

            def add(item: tuple[Any, dict[str, list[Any]]]) -> None:
                handle.index_add(item[0], item[1][plan.column])

            with paused_gc(), closing(scan.column_batches(conn, plan.column)) as batches:
                for _ in pipelined(batches, add):
                    pass
            blob, rows, max_row_id = handle.index_seal()
            catalog.insert(
                conn,
                table_name=dataset.table_name,
                name=plan.name,
                column=spec.name,
                cek=spec.cek,
                max_row_id=max_row_id,
                blob=blob,
            )
        _log.info(
            "built the enclave index %s on %s.%s (%d rows, %d bytes sealed)",
            plan.name,
            dataset.table_name,
            spec.name,
            rows,
            len(blob),
        )
        return QueryResult(columns=(), data=(), rowcount=rows)

    def _drop_index(self, prepared: _Prepared, plan: DropIndexPlan) -> QueryResult:
        dataset = prepared.dataset
        with self._write("dropping an index") as conn:
            if not catalog.drop(conn, dataset.table_name, plan.name):
                raise QueryError(f"no index {plan.name!r} on table {dataset.name}")
        return QueryResult(columns=(), data=(), rowcount=0)

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

    def _write(self, what: str = "altering a column") -> AbstractContextManager[Connection]:
        return self._store.write(what)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with storage_errors("reading"), self._store.engine.connect() as conn:
            # One snapshot for the whole statement: a scan and the rows it then reads by id
            # must see the same table. (SQLite's WAL read transaction is one snapshot already.)
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn


def _shown(key: ParamKey) -> str:
    return f"#{key + 1}" if isinstance(key, int) else f"@{key}"


def _plan_columns(plan: Plan) -> list[str]:
    if isinstance(plan, AlterColumnPlan | CreateIndexPlan):
        return [plan.column]
    if isinstance(plan, DropIndexPlan):
        return []
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


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "KeyDescription",
    "ParameterDescription",
    "QueryEngine",
    "QueryResult",
    "ResultColumn",
    "StatementDescription",
    "WrappedValue",
    "paused_gc",
    "sample_mask",
]
