"""The party's client: keys, tables, encrypted import, decrypted reads."""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleanroom.client import _ingest
from cleanroom.crypto.cells import CellCipher, EncryptionType
from cleanroom.crypto.keys import ColumnEncryptionKey
from cleanroom.crypto.normalize import denormalize_many, normalize
from cleanroom.crypto.parallel import CellWorkers, PendingCells, default_workers, fork_available
from cleanroom.crypto.wrapping import (
    WrappedKey,
    sign_cmk_metadata,
    unwrap_any,
    wrap_cek,
)
from cleanroom.errors import ConfigurationError, NormalizationError, SchemaError, StorageError
from cleanroom.keystores import KeyStore
from cleanroom.store import (
    MEDICAL_RECORD_TABLE,
    ColumnEncryptionKeyValue,
    ColumnMasterKeyInfo,
    ColumnSpec,
    DatasetInfo,
    DatasetSchema,
    Store,
    check_identifier,
    medical_record_schema,
)

if TYPE_CHECKING:
    import pandas as pd

_log = logging.getLogger("cleanroom.client")

#: ``progress(rows_written, rows_total)``, called after each batch is written.
ProgressCallback = Callable[[int, int], None]

DEFAULT_BATCH_SIZE = 10_000

#: Imports with fewer cells than this encrypt in this process: starting worker processes
#: would cost more than it saves.
PARALLEL_MIN_CELLS = 50_000
#: At most this many cells are encrypted ahead of the insert (about 100 bytes each).
_AHEAD_CELLS = 2_000_000


@dataclass(frozen=True, slots=True)
class PartyKeys:
    """The names of a party's column master key (and its key path) and column encryption key."""

    column_master_key: str
    key_store_provider_name: str
    key_path: str
    column_encryption_key: str
    allow_enclave_computations: bool


class PartyClient:
    """A data owner's driver: it encrypts before the store sees a value and decrypts after.

    ``PartyClient(store, key_store, party="hospital_a")`` — the key store holds the party's
    column master key; the store holds only that key's metadata, the column encryption
    key wrapped by it, and cells. Column encryption keys live unwrapped only in this
    object's memory.

    Typical use::

        client.create_keys()                     # CMK in the key store, wrapped CEK in the store
        client.create_dataset()                  # the built-in MedicalRecord table
        client.import_csv("hospital_a.csv")      # validated, encrypted, one transaction
        client.read(limit=5)                     # decrypted with the party's own keys

    A large import encrypts on ``workers`` processes forked for that import (default:
    :func:`cleanroom.crypto.parallel.default_workers`; ``0`` or ``1``: in this process),
    each batch of rows as soon as it is validated, while the next ones are still being
    checked and earlier ones written; see :class:`cleanroom.crypto.CellWorkers`. The cells
    are the same either way.
    """

    def __init__(
        self,
        store: Store,
        key_store: KeyStore,
        *,
        party: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int | None = None,
    ) -> None:
        self._party = check_identifier(party, "a party name")
        if batch_size < 1:
            raise ConfigurationError("batch_size must be at least 1")
        if workers is not None and workers < 0:
            raise ConfigurationError("workers must be at least 0")
        self._workers = workers
        self._store = store
        self._key_store = key_store
        self._batch_size = batch_size
        self._ceks: dict[str, ColumnEncryptionKey] = {}
        self._lock = threading.Lock()

    @property
    def party(self) -> str:
        """The party this client acts for."""
        return self._party

    @property
    def store(self) -> Store:
        """The store this client writes to."""
        return self._store

    @property
    def default_cmk_name(self) -> str:
        """``CMK_<party>``: the name of the party's column master key in the store."""
        return f"CMK_{self._party}"

    @property
    def default_cek_name(self) -> str:
        """``CEK_<party>``: the name of the party's column encryption key."""
        return f"CEK_{self._party}"

    def __repr__(self) -> str:
        return f"PartyClient(party={self._party!r}, store={self._store!r})"

    # -- keys -----------------------------------------------------------------------------

    def create_keys(
        self,
        *,
        cmk_name: str | None = None,
        cek_name: str | None = None,
        allow_enclave_computations: bool = True,
    ) -> PartyKeys:
        """Create a CMK in the key store and a fresh CEK wrapped by it; register both.

        With ``allow_enclave_computations`` (the default: the clean room computes in an
        enclave) the CMK metadata is signed by the CMK, as SQL Server's
        ``ENCLAVE_COMPUTATIONS (SIGNATURE = …)``.
        """
        cmk = cmk_name or self.default_cmk_name
        cek_label = cek_name or self.default_cek_name
        check_identifier(cmk, "a column master key name")
        check_identifier(cek_label, "a column encryption key name")
        if cmk in self._store.column_master_key_names():
            # Checked before touching the key store, so a refusal leaves no orphan key.
            raise StorageError(f"column master key {cmk!r} is already registered in the store")
        key_path = self._key_store.create_master_key(cmk.lower())
        signature = (
            sign_cmk_metadata(self._key_store, key_path, allow_enclave_computations=True)
            if allow_enclave_computations
            else None
        )
        self._store.add_column_master_key(
            ColumnMasterKeyInfo(
                name=cmk,
                key_store_provider_name=self._key_store.provider_name,
                key_path=key_path,
                allow_enclave_computations=allow_enclave_computations,
                signature=signature,
            )
        )
        cek = ColumnEncryptionKey.generate()
        blob = wrap_cek(cek, self._key_store, key_path)
        self._store.add_column_encryption_key(cek_label, [ColumnEncryptionKeyValue(cmk, blob)])
        with self._lock:
            self._ceks[cek_label] = cek
        _log.info("party %s created keys %s / %s", self._party, cmk, cek_label)
        return PartyKeys(
            column_master_key=cmk,
            key_store_provider_name=self._key_store.provider_name,
            key_path=key_path,
            column_encryption_key=cek_label,
            allow_enclave_computations=allow_enclave_computations,
        )

    def rotate_master_key(
        self,
        new_cmk_name: str,
        *,
        cek_name: str | None = None,
        allow_enclave_computations: bool = True,
    ) -> PartyKeys:
        """Start a CMK rotation: a new CMK, and the CEK wrapped by it as a second value.

        The CEK (and so every cell) stays the same. Until
        :meth:`finish_master_key_rotation` drops the old value, either CMK unwraps it.
        """
        cek_label = cek_name or self.default_cek_name
        check_identifier(new_cmk_name, "a column master key name")
        if new_cmk_name in self._store.column_master_key_names():
            raise StorageError(
                f"column master key {new_cmk_name!r} is already registered in the store"
            )
        cek = self.column_encryption_key(cek_label)
        key_path = self._key_store.create_master_key(new_cmk_name.lower())
        signature = (
            sign_cmk_metadata(self._key_store, key_path, allow_enclave_computations=True)
            if allow_enclave_computations
            else None
        )
        self._store.add_column_master_key(
            ColumnMasterKeyInfo(
                name=new_cmk_name,
                key_store_provider_name=self._key_store.provider_name,
                key_path=key_path,
                allow_enclave_computations=allow_enclave_computations,
                signature=signature,
            )
        )
        blob = wrap_cek(cek, self._key_store, key_path)
        self._store.add_column_encryption_key_value(
            cek_label, ColumnEncryptionKeyValue(new_cmk_name, blob)
        )
        _log.info("party %s wrapped %s under a second CMK %s", self._party, cek_label, new_cmk_name)
        return PartyKeys(
            column_master_key=new_cmk_name,
            key_store_provider_name=self._key_store.provider_name,
            key_path=key_path,
            column_encryption_key=cek_label,
            allow_enclave_computations=allow_enclave_computations,
        )

    def finish_master_key_rotation(self, old_cmk_name: str, *, cek_name: str | None = None) -> None:
        """End a CMK rotation: drop the CEK value wrapped by ``old_cmk_name``."""
        self._store.drop_column_encryption_key_value(
            cek_name or self.default_cek_name, old_cmk_name
        )

    def column_encryption_key(self, name: str) -> ColumnEncryptionKey:
        """Unwrap the CEK ``name`` with this party's key store (tries each wrapped value)."""
        with self._lock:
            cached = self._ceks.get(name)
        if cached is not None:
            return cached
        info = self._store.column_encryption_key(name)
        wrapped = []
        for value in info.values:
            cmk = self._store.column_master_key(value.column_master_key_name)
            wrapped.append(
                WrappedKey(
                    encrypted_value=value.encrypted_value,
                    provider_name=cmk.key_store_provider_name,
                    key_path=cmk.key_path,
                    algorithm=value.encryption_algorithm_name,
                )
            )
        cek = unwrap_any(wrapped, {self._key_store.provider_name: self._key_store})
        with self._lock:
            self._ceks[name] = cek
        return cek

    # -- datasets -------------------------------------------------------------------------

    def create_dataset(self, schema: DatasetSchema | None = None) -> DatasetInfo:
        """Create this party's table for ``schema`` (default: the built-in MedicalRecord).

        Encrypted columns without a CEK use the party's default CEK, which must exist
        (see :meth:`create_keys`) and must unwrap with this client's key store.
        """
        resolved = (schema or medical_record_schema()).with_default_cek(self.default_cek_name)
        for cek in sorted({c.cek for c in resolved.columns if c.encrypted and c.cek}):
            self.column_encryption_key(cek)  # fail now if the keys are not ours
        return self._store.create_dataset(self._party, resolved)

    def dataset(self, name: str = MEDICAL_RECORD_TABLE) -> DatasetInfo:
        """This party's dataset ``name``."""
        return self._store.dataset(self._party, name)

    # -- import ---------------------------------------------------------------------------

    def import_csv(
        self,
        path: str | Path,
        *,
        dataset: str = MEDICAL_RECORD_TABLE,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Validate, encrypt and load a CSV file (header = column names); return the row count.

        The whole file is validated first: a bad value raises
        :class:`~cleanroom.errors.SchemaError` naming its line and column (never the value
        of an encrypted column), and nothing is written. The load is one transaction.
        """
        info = self.dataset(dataset)
        return self._load(info, functools.partial(_ingest.read_csv, path, info.schema), progress)

    def import_dataframe(
        self,
        frame: pd.DataFrame,
        *,
        dataset: str = MEDICAL_RECORD_TABLE,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Like :meth:`import_csv`, for a pandas DataFrame (errors name the row position)."""
        info = self.dataset(dataset)
        return self._load(
            info, functools.partial(_ingest.read_dataframe, frame, info.schema), progress
        )

    def import_records(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        dataset: str = MEDICAL_RECORD_TABLE,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Like :meth:`import_csv`, for a sequence of ``{column: value}`` mappings."""
        info = self.dataset(dataset)
        return self._load(
            info, functools.partial(_ingest.read_records, records, info.schema), progress
        )

    def _load(
        self,
        info: DatasetInfo,
        read: Callable[..., _ingest.Columns],
        progress: ProgressCallback | None,
    ) -> int:
        ciphers: dict[str, CellCipher] = {}
        shared: dict[tuple[str | None, str], CellCipher] = {}
        for spec in info.schema.columns:
            if spec.encrypted:
                kind = (spec.cek, spec.encryption)
                if kind not in shared:
                    shared[kind] = self._cipher(spec)
                ciphers[spec.name] = shared[kind]
        size = self._batch_size
        with _ColumnEncryption(ciphers, batch_size=size, workers=self._workers) as encryption:
            # Each batch starts encrypting (on the workers) as soon as it is validated;
            # nothing is written before the whole input has been validated.
            data = read(ready=encryption.ready, chunk_rows=size)
            total = data.rows

            def batches() -> Iterator[dict[str, list[Any]]]:
                for number, start in enumerate(range(0, total, size)):
                    stop = min(start + size, total)
                    batch: dict[str, list[Any]] = {}
                    for name, values in data.values.items():
                        if name in ciphers:
                            batch[name] = encryption.take(name, number, values, start, stop)
                        else:
                            batch[name] = values[start:stop]
                    yield batch
                    if progress is not None:
                        progress(stop, total)

            written = self._store.load(info, batches())
        _log.info("party %s imported %d rows into %s", self._party, written, info.name)
        return written

    def _cipher(self, spec: ColumnSpec) -> CellCipher:
        if spec.cek is None:
            raise SchemaError(f"encrypted column {spec.name!r} names no column encryption key")
        return CellCipher(
            self.column_encryption_key(spec.cek), EncryptionType.parse(spec.encryption)
        )

    # -- read -----------------------------------------------------------------------------

    def read(
        self,
        dataset: str = MEDICAL_RECORD_TABLE,
        *,
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Rows of this party's dataset, decrypted, in load order.

        ``where`` maps column names to *plaintext* values for an equality search. On an
        encrypted column the value is encrypted here (the column must be deterministic)
        and the store compares ciphertext, as SQL Server does without an enclave.
        """
        info = self.dataset(dataset)
        stored_where = {
            name: self._search_value(info.schema.column(name), value)
            for name, value in (where or {}).items()
        }
        rows = self._store.rows(info, where=stored_where, limit=limit, offset=offset)
        return self._decrypt_rows(info.schema, rows)

    def read_dataframe(
        self,
        dataset: str = MEDICAL_RECORD_TABLE,
        *,
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """:meth:`read` as a DataFrame with the schema's columns."""
        import pandas as pd

        info = self.dataset(dataset)
        rows = self.read(dataset, where=where, limit=limit)
        return pd.DataFrame(rows, columns=list(info.schema.column_names))

    def _search_value(self, spec: ColumnSpec, value: Any) -> Any:
        try:
            typed = spec.column_type.coerce(value)
        except ValueError as error:
            raise SchemaError(f"search on column {spec.name!r}: {error}") from None
        if typed is None or not spec.encrypted:
            return typed
        if spec.encryption != "deterministic":
            raise StorageError(
                f"column {spec.name!r} is randomized: equality needs deterministic encryption"
            )
        try:
            data = normalize(typed, spec.column_type.sql_type)
        except NormalizationError as error:
            raise SchemaError(f"search on column {spec.name!r}: {error}") from None
        return self._cipher(spec).encrypt(data)

    def _decrypt_rows(
        self, schema: DatasetSchema, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        for spec in schema.columns:
            if not spec.encrypted:
                continue
            present = [i for i, row in enumerate(rows) if row[spec.name] is not None]
            if not present:
                continue
            cipher = self._cipher(spec)
            plain = cipher.decrypt_many([rows[i][spec.name] for i in present])
            sql_type = spec.column_type.sql_type
            if spec.column_type.is_integer:
                # Few distinct values (ages, codes): read each one once.
                distinct = list(set(plain))
                memo = dict(zip(distinct, denormalize_many(distinct, sql_type), strict=True))
                values = [memo[data] for data in plain]
            else:
                values = denormalize_many(plain, sql_type)
            for index, value in zip(present, values, strict=True):
                rows[index][spec.name] = value
        return rows

    # -- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Zero and forget every column encryption key this client unwrapped (idempotent).

        Keys it returned from :meth:`column_encryption_key` are zeroed too. The store and
        the key store were passed in and stay open (their owner closes them); the client
        stays usable and unwraps a key again when it next needs one.
        """
        with self._lock:
            unwrapped, self._ceks = list(self._ceks.values()), {}
        for cek in unwrapped:
            cek.zero()

    def __enter__(self) -> PartyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ColumnEncryption:
    """The encrypted columns of one import, encrypted batch by batch ahead of the insert.

    ``ready(number, rows, columns)`` receives each batch of normalized encrypted columns as
    soon as it is validated (batch ``number`` holds rows ``number * batch_size`` onwards).
    If the import is large (:data:`PARALLEL_MIN_CELLS`), each batch goes at once to worker
    processes (one :class:`CellWorkers` per distinct key and encryption type), up to
    :data:`_AHEAD_CELLS` cells ahead of the insert, so encryption overlaps validation and
    the insert. ``take(name, number, values, start, stop)`` returns batch ``number`` of a column as
    cells; small imports encrypt there, in this process. Closing stops the workers.
    """

    def __init__(
        self, ciphers: Mapping[str, CellCipher], *, batch_size: int, workers: int | None
    ) -> None:
        self._ciphers = ciphers
        self._size = batch_size
        self._workers = workers
        self._parallel: bool | None = None  # decided at the first batch
        self._pools: dict[int, CellWorkers] = {}
        self._waiting: collections.deque[tuple[str, int, list[bytes | None]]] = collections.deque()
        self._sent: dict[tuple[str, int], _Sent] = {}
        self._held = 0  # cells sent and not yet taken
        self._stack = contextlib.ExitStack()

    def ready(self, number: int, rows: int, columns: Mapping[str, list[bytes | None]]) -> None:
        if self._parallel is None:
            workers = default_workers() if self._workers is None else self._workers
            cells = rows * len(self._ciphers)
            self._parallel = cells >= PARALLEL_MIN_CELLS and workers > 1 and fork_available()
        if self._parallel:
            self._waiting.extend((name, number, values) for name, values in columns.items())
            self._fill()

    def take(
        self, name: str, number: int, values: list[bytes | None], start: int, stop: int
    ) -> list[bytes | None]:
        sent = self._sent.pop((name, number), None)
        if sent is None:
            if self._parallel:  # pragma: no cover - batches are sent in the order taken
                raise AssertionError("an encrypted batch was taken before it was sent")
            return _encrypt_column(self._ciphers[name], values[start:stop])
        self._held -= sent.count
        self._fill()
        return sent.result()

    def _fill(self) -> None:
        while self._waiting and self._held < _AHEAD_CELLS:
            name, number, values = self._waiting.popleft()
            pool = self._pool(name)
            if None not in values:
                sent = _Sent(pool.submit_encrypt(values), None, len(values))  # type: ignore[arg-type]
            else:
                present = [i for i, v in enumerate(values) if v is not None]
                cells = pool.submit_encrypt([values[i] for i in present])  # type: ignore[misc]
                sent = _Sent(cells, present, len(values))
            self._sent[(name, number)] = sent
            self._held += sent.count

    def _pool(self, name: str) -> CellWorkers:
        # Columns under the same key and encryption type share one cipher, so one pool.
        cipher = self._ciphers[name]
        pool = self._pools.get(id(cipher))
        if pool is None:
            pool = self._stack.enter_context(CellWorkers(cipher, workers=self._workers))
            self._pools[id(cipher)] = pool
        return pool

    def __enter__(self) -> _ColumnEncryption:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


@dataclass(frozen=True, slots=True)
class _Sent:
    """One batch of one column on its way through the workers (NULLs stay here)."""

    pending: PendingCells
    present: list[int] | None  # the non-NULL positions, or None if there is no NULL
    count: int

    def result(self) -> list[bytes | None]:
        cells = self.pending.result()
        if self.present is None:
            return cells  # type: ignore[return-value]  # a fresh list; no NULL in this batch
        out: list[bytes | None] = [None] * self.count
        for index, cell in zip(self.present, cells, strict=True):
            out[index] = cell
        return out


def _encrypt_column(cipher: CellCipher, values: list[bytes | None]) -> list[bytes | None]:
    present = [i for i, v in enumerate(values) if v is not None]
    if len(present) == len(values):
        return list(cipher.encrypt_many(values))  # type: ignore[arg-type]  # no None here
    out: list[bytes | None] = [None] * len(values)
    cells = cipher.encrypt_many([values[i] for i in present])  # type: ignore[misc]
    for index, cell in zip(present, cells, strict=True):
        out[index] = cell
    return out


__all__ = ["DEFAULT_BATCH_SIZE", "PartyClient", "PartyKeys", "ProgressCallback"]
