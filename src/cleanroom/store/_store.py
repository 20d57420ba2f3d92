"""The store: key metadata and per-party encrypted tables on SQLite or PostgreSQL."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from cleanroom.errors import ConfigurationError, SchemaError, StorageError
from cleanroom.store import _catalog as cat
from cleanroom.store.schema import DatasetSchema, check_identifier

_log = logging.getLogger("cleanroom.store")

#: The cell encryption algorithm recorded for every encrypted column.
CELL_ALGORITHM = "AEAD_AES_256_CBC_HMAC_SHA256"
#: The key wrapping algorithm recorded for every wrapped CEK value.
KEY_WRAP_ALGORITHM = "RSA_OAEP"
#: The only normalization rule version Always Encrypted defines.
NORMALIZATION_RULE_VERSION = 1
#: A column encryption key carries at most this many wrapped values (CMK rotation).
MAX_CEK_VALUES = 2
#: The row-order column every dataset table has (not part of the schema).
ROW_ID = "row_id"
_ENCRYPTION_CODES = {"deterministic": 1, "randomized": 2}
_SQLITE_BUSY_TIMEOUT_S = 60
_MAX_TABLE_NAME = 63  # PostgreSQL's identifier limit


@dataclass(frozen=True, slots=True)
class ColumnMasterKeyInfo:
    """Metadata of a column master key (``sys.column_master_keys``); the key stays in its store."""

    name: str
    key_store_provider_name: str
    key_path: str
    allow_enclave_computations: bool = False
    signature: bytes | None = None

    def __repr__(self) -> str:
        return (
            f"ColumnMasterKeyInfo(name={self.name!r}, provider={self.key_store_provider_name!r}, "
            f"key_path={self.key_path!r}, enclave={self.allow_enclave_computations})"
        )


@dataclass(frozen=True, slots=True)
class ColumnEncryptionKeyValue:
    """One wrapped value of a CEK: the ``ENCRYPTED_VALUE`` blob and the CMK that wraps it."""

    column_master_key_name: str
    encrypted_value: bytes
    encryption_algorithm_name: str = KEY_WRAP_ALGORITHM

    def __repr__(self) -> str:
        return (
            f"ColumnEncryptionKeyValue(cmk={self.column_master_key_name!r}, "
            f"{len(self.encrypted_value)} bytes, {self.encryption_algorithm_name})"
        )


@dataclass(frozen=True, slots=True)
class ColumnEncryptionKeyInfo:
    """A column encryption key as the store knows it: a name and one or two wrapped values."""

    name: str
    values: tuple[ColumnEncryptionKeyValue, ...]


@dataclass(frozen=True, slots=True)
class EncryptedColumnInfo:
    """Encryption metadata of one column (as ``sys.columns`` carries it)."""

    table_name: str
    column_name: str
    sql_type: str
    encryption_type: Literal["deterministic", "randomized"]
    column_encryption_key_name: str
    encryption_algorithm_name: str = CELL_ALGORITHM
    normalization_rule_version: int = NORMALIZATION_RULE_VERSION


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """A party's dataset: the physical table that holds it and its (resolved) schema."""

    party: str
    table_name: str
    schema: DatasetSchema

    @property
    def name(self) -> str:
        """The dataset name (the schema's table name)."""
        return self.schema.table


def utc_now() -> dt.datetime:
    """The current time as an aware UTC datetime: what every component stores."""
    return dt.datetime.now(dt.UTC)


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turn a database error raised in the block into ``StorageError("<what> failed (…)")``.

    SQLAlchemy and driver messages quote statement parameters (cells, plain values,
    signatures), so only the class name of the driver's error is kept: never its message,
    and the original is not chained. Other exceptions pass through unchanged.
    """
    try:
        yield
    except sa.exc.SQLAlchemyError as error:
        cause = type(getattr(error, "orig", None) or error).__name__
        raise StorageError(f"{what} failed ({cause})") from None


class Store:
    """Key metadata and the parties' encrypted tables, on SQLite or PostgreSQL.

    Guarantees:

    * It holds only what the operator may see: column master key *metadata* (provider,
      key path, signature), column encryption keys *wrapped* by those master keys, and
      cells. It never receives a key or a plaintext value of an encrypted column; the
      party's client encrypts before calling it (:mod:`cleanroom.client`).
    * :meth:`load` is one transaction: either every row of every batch is written or none.
    * Parties load into their own tables concurrently without interfering (SQLite: WAL
      journal, ``BEGIN IMMEDIATE`` writers that wait up to a minute for each other;
      PostgreSQL: ordinary row-level concurrency).
    * NULL stays NULL: a missing value is never encrypted.
    * Error messages never carry row values (cells included), only names and counts.

    Other components keep their own tables in the same database through :meth:`write`
    and :meth:`read` (transactions whose database errors become :class:`StorageError`),
    or :meth:`writing` and :meth:`reading` when they handle SQLAlchemy errors themselves.

    It does not authenticate callers: whoever can open the database can read the
    ciphertext and the metadata — which is the point of encrypting on the client.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # Keyed by name *and* schema: a dataset whose catalog entry changed (ALTER COLUMN)
        # must not be served the columns of its old schema.
        self._tables: dict[tuple[str, DatasetSchema], sa.Table] = {}
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and tools that inspect the raw database)."""
        return self._engine

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def create_catalog(self) -> None:
        """Create the catalog tables if they do not exist (idempotent)."""
        with self.write("creating the catalog") as conn:
            cat.metadata.create_all(conn)

    def close(self) -> None:
        """Release every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._engine.url.render_as_string(hide_password=True)!r})"

    # -- column master keys -----------------------------------------------------------

    def add_column_master_key(self, cmk: ColumnMasterKeyInfo) -> None:
        """Register a column master key (``CREATE COLUMN MASTER KEY``)."""
        check_identifier(cmk.name, "a column master key name")
        with self.write(f"registering column master key {cmk.name!r}") as conn:
            if self._cmk_row(conn, cmk.name) is not None:
                raise StorageError(f"column master key {cmk.name!r} already exists")
            conn.execute(
                cat.column_master_keys.insert().values(
                    name=cmk.name,
                    key_store_provider_name=cmk.key_store_provider_name,
                    key_path=cmk.key_path,
                    allow_enclave_computations=cmk.allow_enclave_computations,
                    signature=cmk.signature,
                    create_date=utc_now(),
                )
            )

    def column_master_key(self, name: str) -> ColumnMasterKeyInfo:
        """The column master key called ``name``."""
        with self.read("reading a column master key") as conn:
            row = self._cmk_row(conn, name)
        if row is None:
            raise StorageError(f"no column master key {name!r}")
        return ColumnMasterKeyInfo(
            name=row.name,
            key_store_provider_name=row.key_store_provider_name,
            key_path=row.key_path,
            allow_enclave_computations=bool(row.allow_enclave_computations),
            signature=bytes(row.signature) if row.signature is not None else None,
        )

    def column_master_key_names(self) -> list[str]:
        """Names of every registered column master key."""
        with self.read("listing column master keys") as conn:
            query = sa.select(cat.column_master_keys.c.name).order_by("name")
            return list(conn.scalars(query))

    @staticmethod
    def _cmk_row(conn: Connection, name: str) -> sa.Row[Any] | None:
        query = sa.select(cat.column_master_keys).where(cat.column_master_keys.c.name == name)
        return conn.execute(query).first()

    # -- column encryption keys -------------------------------------------------------

    def add_column_encryption_key(
        self, name: str, values: Sequence[ColumnEncryptionKeyValue]
    ) -> None:
        """Register a column encryption key with one or two wrapped values."""
        check_identifier(name, "a column encryption key name")
        if not 1 <= len(values) <= MAX_CEK_VALUES:
            raise StorageError(f"a column encryption key has 1 or {MAX_CEK_VALUES} values")
        with self.write(f"registering column encryption key {name!r}") as conn:
            exists = conn.execute(
                sa.select(cat.column_encryption_keys.c.name).where(
                    cat.column_encryption_keys.c.name == name
                )
            ).first()
            if exists is not None:
                raise StorageError(f"column encryption key {name!r} already exists")
            conn.execute(
                cat.column_encryption_keys.insert().values(name=name, create_date=utc_now())
            )
            for value in values:
                self._insert_cek_value(conn, name, value)

    def add_column_encryption_key_value(self, name: str, value: ColumnEncryptionKeyValue) -> None:
        """Add a second wrapped value to a CEK (``ALTER COLUMN ENCRYPTION KEY … ADD VALUE``)."""
        with self.write(f"adding a value to {name!r}") as conn:
            count = conn.scalar(
                sa.select(sa.func.count()).where(
                    cat.column_encryption_key_values.c.column_encryption_key_name == name
                )
            )
            if not count:
                raise StorageError(f"no column encryption key {name!r}")
            if count >= MAX_CEK_VALUES:
                raise StorageError(f"column encryption key {name!r} already has two values")
            self._insert_cek_value(conn, name, value)

    def drop_column_encryption_key_value(self, name: str, column_master_key_name: str) -> None:
        """Remove the value wrapped by one CMK (``ALTER … DROP VALUE``); the last one stays."""
        values = cat.column_encryption_key_values
        with self.write(f"dropping a value of {name!r}") as conn:
            count = conn.scalar(
                sa.select(sa.func.count()).where(values.c.column_encryption_key_name == name)
            )
            if count is not None and count <= 1:
                raise StorageError(f"cannot drop the last value of column encryption key {name!r}")
            result = conn.execute(
                values.delete().where(
                    values.c.column_encryption_key_name == name,
                    values.c.column_master_key_name == column_master_key_name,
                )
            )
            if result.rowcount != 1:
                raise StorageError(f"{name!r} has no value wrapped by {column_master_key_name!r}")

    def _insert_cek_value(
        self, conn: Connection, name: str, value: ColumnEncryptionKeyValue
    ) -> None:
        if self._cmk_row(conn, value.column_master_key_name) is None:
            raise StorageError(f"no column master key {value.column_master_key_name!r}")
        if value.encryption_algorithm_name != KEY_WRAP_ALGORITHM:
            raise StorageError(f"the key wrap algorithm must be {KEY_WRAP_ALGORITHM}")
        conn.execute(
            cat.column_encryption_key_values.insert().values(
                column_encryption_key_name=name,
                column_master_key_name=value.column_master_key_name,
                encrypted_value=bytes(value.encrypted_value),
                encryption_algorithm_name=value.encryption_algorithm_name,
            )
        )

    def column_encryption_key(self, name: str) -> ColumnEncryptionKeyInfo:
        """The column encryption key ``name`` with its wrapped values."""
        values = cat.column_encryption_key_values
        with self.read("reading a column encryption key") as conn:
            rows = conn.execute(
                sa.select(values)
                .where(values.c.column_encryption_key_name == name)
                .order_by(values.c.column_master_key_name)
            ).all()
        if not rows:
            raise StorageError(f"no column encryption key {name!r}")
        return ColumnEncryptionKeyInfo(
            name=name,
            values=tuple(
                ColumnEncryptionKeyValue(
                    column_master_key_name=row.column_master_key_name,
                    encrypted_value=bytes(row.encrypted_value),
                    encryption_algorithm_name=row.encryption_algorithm_name,
                )
                for row in rows
            ),
        )

    # -- datasets -------------------------------------------------------------------------

    @staticmethod
    def table_name_for(party: str, dataset: str) -> str:
        """The physical table of ``party``'s dataset ``dataset``: ``ds_<party>_<dataset>``."""
        check_identifier(party, "a party name")
        check_identifier(dataset, "a dataset name")
        name = f"ds_{party}_{dataset}".lower()
        if len(name) > _MAX_TABLE_NAME:
            raise SchemaError("party and dataset names are too long together (63 characters)")
        return name

    def create_dataset(self, party: str, schema: DatasetSchema) -> DatasetInfo:
        """Create ``party``'s table for ``schema`` and register its encrypted columns.

        Every encrypted column must name a registered column encryption key.
        """
        table_name = self.table_name_for(party, schema.table)
        if ROW_ID in {c.name.lower() for c in schema.columns}:
            raise SchemaError(f"{ROW_ID!r} is reserved for the store")
        for spec in schema.columns:
            if spec.encrypted and spec.cek is None:
                raise SchemaError(f"encrypted column {spec.name!r} names no column encryption key")
        table = _dataset_table(table_name, schema)
        with self.write(f"creating dataset {schema.table!r}") as conn:
            exists = conn.execute(
                sa.select(cat.datasets.c.table_name).where(cat.datasets.c.table_name == table_name)
            ).first()
            if exists is not None:
                raise StorageError(f"party {party!r} already has a dataset {schema.table!r}")
            for cek in sorted({c.cek for c in schema.columns if c.encrypted and c.cek}):
                found = conn.execute(
                    sa.select(cat.column_encryption_keys.c.name).where(
                        cat.column_encryption_keys.c.name == cek
                    )
                ).first()
                if found is None:
                    raise StorageError(f"no column encryption key {cek!r}")
            conn.execute(
                cat.datasets.insert().values(
                    table_name=table_name,
                    party=party,
                    name=schema.table,
                    schema_json=schema.to_json(),
                    create_date=utc_now(),
                )
            )
            encrypted = [c for c in schema.columns if c.encrypted]
            if encrypted:
                conn.execute(
                    cat.encrypted_columns.insert(),
                    [
                        {
                            "table_name": table_name,
                            "column_name": c.name,
                            "sql_type": c.sql_type,
                            "encryption_type": _ENCRYPTION_CODES[c.encryption],
                            "encryption_type_desc": c.encryption.upper(),
                            "column_encryption_key_name": c.cek,
                            "encryption_algorithm_name": CELL_ALGORITHM,
                            "normalization_rule_version": NORMALIZATION_RULE_VERSION,
                        }
                        for c in encrypted
                    ],
                )
            table.create(conn)
        with self._lock:
            self._tables[(table_name, schema)] = table
        _log.info("created dataset table %s for party %s", table_name, party)
        return DatasetInfo(party=party, table_name=table_name, schema=schema)

    def dataset(self, party: str, name: str) -> DatasetInfo:
        """``party``'s dataset ``name``."""
        table_name = self.table_name_for(party, name)
        with self.read("reading the dataset catalog") as conn:
            row = conn.execute(
                sa.select(cat.datasets).where(cat.datasets.c.table_name == table_name)
            ).first()
        if row is None:
            raise StorageError(f"party {party!r} has no dataset {name!r}")
        return DatasetInfo(
            party=row.party,
            table_name=row.table_name,
            schema=DatasetSchema.from_json(row.schema_json),
        )

    def datasets(self, party: str | None = None) -> list[DatasetInfo]:
        """Every dataset, or those of ``party``."""
        query = sa.select(cat.datasets).order_by(cat.datasets.c.table_name)
        if party is not None:
            query = query.where(cat.datasets.c.party == party)
        with self.read("listing datasets") as conn:
            rows = conn.execute(query).all()
        return [
            DatasetInfo(
                party=r.party,
                table_name=r.table_name,
                schema=DatasetSchema.from_json(r.schema_json),
            )
            for r in rows
        ]

    def encrypted_columns(self, dataset: DatasetInfo) -> list[EncryptedColumnInfo]:
        """The encryption metadata of ``dataset``'s columns, in table order."""
        ec = cat.encrypted_columns
        with self.read("reading column metadata") as conn:
            rows = conn.execute(sa.select(ec).where(ec.c.table_name == dataset.table_name)).all()
        by_name = {r.column_name: r for r in rows}
        return [
            EncryptedColumnInfo(
                table_name=r.table_name,
                column_name=r.column_name,
                sql_type=r.sql_type,
                encryption_type="deterministic" if r.encryption_type == 1 else "randomized",
                column_encryption_key_name=r.column_encryption_key_name,
                encryption_algorithm_name=r.encryption_algorithm_name,
                normalization_rule_version=r.normalization_rule_version,
            )
            for name in dataset.schema.column_names
            if (r := by_name.get(name)) is not None
        ]

    def drop_dataset(self, dataset: DatasetInfo) -> None:
        """Drop ``dataset``'s table and its catalog entries."""
        table = self._table(dataset)
        with self.write(f"dropping dataset {dataset.name!r}") as conn:
            conn.execute(
                cat.encrypted_columns.delete().where(
                    cat.encrypted_columns.c.table_name == dataset.table_name
                )
            )
            conn.execute(
                cat.datasets.delete().where(cat.datasets.c.table_name == dataset.table_name)
            )
            table.drop(conn, checkfirst=True)
        with self._lock:
            for key in [k for k in self._tables if k[0] == dataset.table_name]:
                del self._tables[key]

    # -- rows -----------------------------------------------------------------------------

    def load(
        self,
        dataset: DatasetInfo,
        batches: Iterable[Mapping[str, Sequence[Any]]],
    ) -> int:
        """Insert every batch of rows in ONE transaction and return the row count.

        Each batch maps every schema column to an equal-length sequence: cells (``bytes``)
        for encrypted columns, plain values for the others, ``None`` for NULL. ``batches``
        may be a generator that encrypts as it goes; if it raises, or the database refuses
        a row, nothing of the whole load remains.
        """
        table = self._table(dataset)
        total = 0
        with self.write(f"loading into {dataset.name!r}") as conn:
            insert = _BulkInsert(conn, table, dataset.schema)
            for batch in batches:
                total += insert.execute(batch)
        _log.info("loaded %d rows into %s", total, dataset.table_name)
        return total

    def rows(
        self,
        dataset: DatasetInfo,
        *,
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Rows in load order, as stored (cells stay cells), optionally filtered by equality.

        ``where`` maps column names to the stored value to compare: for an encrypted
        column that is a deterministic cell, and the comparison is bytewise — as SQL Server
        compares deterministic ciphertext without an enclave. Randomized columns refuse
        equality (it could never match).
        """
        table = self._table(dataset)
        query = sa.select(*[table.c[n] for n in dataset.schema.column_names]).order_by(
            table.c[ROW_ID]
        )
        for name, value in (where or {}).items():
            spec = dataset.schema.column(name)
            if spec.encrypted and spec.encryption != "deterministic":
                raise StorageError(
                    f"column {name!r} is randomized: equality needs deterministic encryption"
                )
            query = query.where(
                table.c[name].is_(None) if value is None else table.c[name] == value
            )
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        names = dataset.schema.column_names
        with self.read(f"reading {dataset.name!r}") as conn:
            result = conn.execute(query).all()
        return [dict(zip(names, row, strict=True)) for row in result]

    def count(self, dataset: DatasetInfo) -> int:
        """The number of rows in ``dataset``."""
        table = self._table(dataset)
        with self.read(f"counting {dataset.name!r}") as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)

    # -- internals ------------------------------------------------------------------------

    def _table(self, dataset: DatasetInfo) -> sa.Table:
        with self._lock:
            key = (dataset.table_name, dataset.schema)
            table = self._tables.get(key)
            if table is None:
                table = _dataset_table(dataset.table_name, dataset.schema)
                self._tables[key] = table
            return table

    # -- transactions (also for components with tables of their own) ----------------------

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction on the store's database; SQLAlchemy errors propagate as
        they are (use :meth:`write` unless you handle them, e.g. to retry on a conflict).

        On SQLite it begins with ``BEGIN IMMEDIATE`` (the execution option
        ``cleanroom_write=True`` on a connection of :attr:`engine` does the same), so
        concurrent writers queue for the lock instead of failing on a read-to-write
        upgrade. Commits on success, rolls back on any exception.
        """
        with self._engine.connect() as conn:
            conn = conn.execution_options(cleanroom_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot on both databases); SQLAlchemy errors
        propagate as they are (use :meth:`read` unless you handle them)."""
        with self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self, what: str) -> Iterator[Connection]:
        """:meth:`writing` whose database errors become ``StorageError("<what> failed (…)")``.

        ``what`` names the operation (``"storing the approval"``); the message never
        carries a value (see :func:`storage_errors`). Any exception rolls back.
        """
        with storage_errors(what), self.writing() as conn:
            yield conn

    @contextmanager
    def read(self, what: str) -> Iterator[Connection]:
        """:meth:`reading` whose database errors become ``StorageError("<what> failed (…)")``."""
        with storage_errors(what), self.reading() as conn:
            yield conn


def _dataset_table(table_name: str, schema: DatasetSchema) -> sa.Table:
    columns: list[sa.Column[Any]] = [
        sa.Column(
            ROW_ID,
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        )
    ]
    for spec in schema.columns:
        kind: sa.types.TypeEngine[Any] = (
            sa.LargeBinary() if spec.encrypted else spec.column_type.sa_type()
        )
        columns.append(sa.Column(spec.name, kind, nullable=spec.nullable))
    return sa.Table(table_name, sa.MetaData(), *columns)


class _BulkInsert:
    """One prepared ``INSERT`` run with the driver's ``executemany``.

    Going below SQLAlchemy's statement layer matters for speed: per-row parameter
    dictionaries and per-value bind processing cost more than the database does. Cells
    (``bytes``) go to the driver untouched (BLOB / BYTEA); plaintext columns still pass
    through their SQLAlchemy type's bind processor, so they are stored as SQLAlchemy
    would store them and read back by :meth:`Store.rows` unchanged.
    """

    def __init__(self, conn: Connection, table: sa.Table, schema: DatasetSchema) -> None:
        dialect = conn.dialect
        self._conn = conn
        self._names = schema.column_names
        placeholder = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
        if placeholder is None:  # pragma: no cover - only sqlite3 and psycopg are supported
            raise ConfigurationError(f"unsupported DB-API paramstyle {dialect.paramstyle!r}")
        quote = dialect.identifier_preparer.quote
        # Identifiers are schema-validated ([A-Za-z_][A-Za-z0-9_]*) and quoted by the
        # dialect; every value is a bound parameter.
        target = f"{quote(table.name)} ({', '.join(quote(n) for n in self._names)})"
        values = ", ".join([placeholder] * len(self._names))
        self._sql = f"INSERT INTO {target} VALUES ({values})"  # noqa: S608
        self._processors: list[Any] = [
            None
            if spec.encrypted
            else table.c[spec.name].type.dialect_impl(dialect).bind_processor(dialect)
            for spec in schema.columns
        ]

    def execute(self, batch: Mapping[str, Sequence[Any]]) -> int:
        columns = _batch_columns(batch, self._names)
        prepared: list[Sequence[Any]] = []
        for values, processor in zip(columns, self._processors, strict=True):
            if processor is None:
                prepared.append(values)
            else:
                prepared.append([None if v is None else processor(v) for v in values])
        rows = list(zip(*prepared, strict=True))
        if rows:
            self._conn.exec_driver_sql(self._sql, rows)
        return len(rows)


def _batch_columns(batch: Mapping[str, Sequence[Any]], names: Sequence[str]) -> list[Sequence[Any]]:
    if set(batch) != set(names):
        missing = sorted(set(names) - set(batch))
        extra = sorted(set(batch) - set(names))
        raise SchemaError(
            f"batch columns differ from the schema (missing {missing}, extra {extra})"
        )
    lengths = {len(batch[n]) for n in names}
    if len(lengths) > 1:
        raise SchemaError("batch columns have different lengths")
    return [batch[n] for n in names]


# -- opening ------------------------------------------------------------------------------


def default_url(workdir: str | os.PathLike[str]) -> str:
    """The embedded default: one SQLite file, ``<workdir>/cleanroom.db``."""
    return f"sqlite:///{Path(workdir).resolve() / 'cleanroom.db'}"


def open_store(url: str, *, create: bool = True, echo: bool = False) -> Store:
    """Open the store at a SQLAlchemy URL and (by default) create its catalog.

    ``sqlite:///path/to/file.db`` (the file is created with mode 0600) or
    ``postgresql+psycopg://user@host:5432/db`` (add ``?options=-csearch_path%3Dname`` to
    keep the tables in another schema). ``echo`` logs SQL statements, never parameters.
    """
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigurationError("the store URL is not a valid database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(parsed, echo=echo)
    elif backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise ConfigurationError(
                "PostgreSQL stores use the psycopg driver: postgresql+psycopg://"
            )
        engine = sa.create_engine(parsed, echo=echo, hide_parameters=True, pool_pre_ping=True)
    else:
        raise ConfigurationError(f"unsupported store backend {backend!r}: use sqlite or postgresql")
    store = Store(engine)
    if create:
        store.create_catalog()
    return store


def _sqlite_engine(url: sa.engine.URL, *, echo: bool) -> Engine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database)
        if not path.parent.is_dir():
            raise ConfigurationError(
                f"the directory of the SQLite store does not exist: {path.parent}"
            )
        if not path.exists():
            # Create it private before SQLite does (its WAL files inherit the mode).
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    engine = sa.create_engine(
        url,
        echo=echo,
        hide_parameters=True,
        connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy (not pysqlite) decide where transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        # Takes effect only in a new, empty database file (before WAL mode is set): rows
        # of cells are large, and 16 KiB pages store them with fewer page splits.
        cursor.execute("PRAGMA page_size=16384")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # A bulk load of cells spills a small page cache to the WAL over and over; 64 MiB
        # halves the time of a 100,000-row encrypted load (allocated only when used).
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so two loads queue instead of deadlocking
        # on a read-to-write upgrade (which SQLite would fail at once, busy timeout or not).
        immediate = conn.get_execution_options().get("cleanroom_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


__all__ = [
    "CELL_ALGORITHM",
    "KEY_WRAP_ALGORITHM",
    "MAX_CEK_VALUES",
    "NORMALIZATION_RULE_VERSION",
    "ROW_ID",
    "ColumnEncryptionKeyInfo",
    "ColumnEncryptionKeyValue",
    "ColumnMasterKeyInfo",
    "DatasetInfo",
    "EncryptedColumnInfo",
    "Store",
    "default_url",
    "open_store",
    "storage_errors",
    "utc_now",
]
