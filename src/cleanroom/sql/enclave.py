"""The enclave side of enclave-enabled SQL: sessions, package checks, computations on plaintext.

An :class:`Enclave` lives in the enclave host process (the query engine calls it in
process; on real hardware it is the code inside the TEE). It

1. **attests**: for each client session it makes an ephemeral ECDH P-384 key, binds its
   public JWK and the client's nonce into REPORTDATA and returns the platform's evidence
   (:meth:`Enclave.attest`), then derives the session key from the client's ECDH key;
2. **opens packages**: :meth:`Enclave.begin` decrypts an enclave package with the session
   key and refuses it unless its query hash is SHA-256 of the very statement text it is asked
   to run and its counter is higher than every counter that session used before;
3. **computes without returning plaintext**: the statement it verified is parsed *here*, so
   the host cannot ask for another predicate; predicate results are row positions, ORDER BY
   results are permutations, MIN/MAX are cells re-encrypted under the column's key. The only
   exception is the one the statement asks for: ``ALTER COLUMN`` to plaintext decrypts;
4. **seals and searches indexes** (:mod:`cleanroom.sql.index`): ``CREATE INDEX`` returns the
   sorted column sealed as one cell under its key; a query gets the candidate row ids from
   it, then evaluates its whole predicate on the rows the host reads.

Keys in a package are usable for that one statement: :meth:`EnclaveStatement.close` zeroes
them, and a new statement needs a new package.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from cleanroom.crypto import (
    CellCipher,
    CellWorkers,
    EncryptionType,
    denormalize,
    normalize_many,
)
from cleanroom.crypto.parallel import default_workers
from cleanroom.errors import DecryptionError, QueryError
from cleanroom.sql import package as pkg
from cleanroom.sql.evaluate import (
    ColumnBinding,
    ColumnData,
    Decryptor,
    decrypt_column,
    evaluate,
    extreme,
    ordering,
    plain_column,
    split,
    top_candidates,
)
from cleanroom.sql.index import IndexBuilder, IndexCache, narrowing
from cleanroom.sql.parser import (
    AlterColumnPlan,
    CreateIndexPlan,
    Param,
    ParamKey,
    SelectPlan,
    leaf_values,
    leaves,
    parse,
)
from cleanroom.tee import Evidence, Platform

_log = logging.getLogger("cleanroom.sql.enclave")

#: Message prefix of the error for an unknown or evicted session (SQL Server error 33195).
SESSION_INVALID: Final = "invalid enclave session"
DEFAULT_MAX_SESSIONS: Final = 256
#: The fewest cells one enclave call decrypts in worker processes (fewer: in this process).
PARALLEL_MIN_CELLS: Final = 16_384


@dataclass(frozen=True, slots=True)
class AttestationInfo:
    """What the enclave returns for attestation parameters (result set 3 of the describe).

    ``runtime_data`` is ``{"nonce", "tee-pubkey"}`` whose hash the evidence binds;
    ``enclave_dh`` is the ECK3 blob of the same key the JWK describes.
    """

    session_id: int
    evidence: Evidence
    runtime_data: Mapping[str, Any]
    enclave_dh: bytes = field(repr=False)


@dataclass(slots=True)
class _Session:
    key: bytes = field(repr=False)
    last_counter: int = -1


class LauncherPlatform:
    """An in-process :class:`~cleanroom.tee.Platform` backed by a ``SimulatedLauncher``.

    For running the enclave inside the engine's own process on the simulated TEE
    (development only; the launcher's ``allow_simulation=True`` already said so). The
    measurement is the launcher's measurement of the bundle (``prepare_bundle``), so the
    same reference value admits this in-process enclave and a launched one.
    """

    def __init__(self, launcher: Any, *, measurement: str, config_id: bytes | None = None) -> None:
        self._launcher = launcher
        self._measurement = measurement
        self._config_id = config_id

    @property
    def tee(self) -> str:
        """Always ``"simulated"``."""
        return "simulated"

    def evidence(self, report_data: bytes) -> Evidence:
        """Evidence signed by the launcher for ``report_data``."""
        result = self._launcher.sign_report(
            measurement=self._measurement, config_id=self._config_id, report_data=report_data
        )
        assert isinstance(result, Evidence)
        return result

    def __repr__(self) -> str:
        return f"LauncherPlatform(measurement={self._measurement[:16]}...)"


def simulated_enclave(
    launcher: Any,
    *,
    config_id: bytes | None = None,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    decrypt_workers: int | None = None,
) -> tuple[Enclave, str]:
    """An in-process :class:`Enclave` on the simulated TEE, and its measurement (hex).

    ``launcher`` is a :class:`~cleanroom.tee.SimulatedLauncher` (built with
    ``allow_simulation=True``). The measurement is that of the bundle the launcher would
    run; put it in the client's policy ``allowed_measurements``. Development only.
    ``max_sessions`` and ``decrypt_workers`` are passed to :class:`Enclave`.
    """
    import shutil

    bundle = launcher.prepare_bundle()
    shutil.rmtree(bundle.path, ignore_errors=True)
    platform = LauncherPlatform(launcher, measurement=bundle.measurement, config_id=config_id)
    enclave = Enclave(platform, max_sessions=max_sessions, decrypt_workers=decrypt_workers)
    return enclave, bundle.measurement


class Enclave:
    """Sessions with clients and the computations they allow (see the module docstring).

    ``platform`` produces the evidence. At most ``max_sessions`` sessions are kept; the
    oldest is forgotten first (its client re-attests on :data:`SESSION_INVALID`).

    A statement that decrypts at least :data:`PARALLEL_MIN_CELLS` cells in one call spreads
    them over ``decrypt_workers`` processes forked for that statement (a
    :class:`~cleanroom.crypto.CellWorkers`, default: one per CPU, at most four); they hold
    the statement's keys and stop when it closes. ``decrypt_workers=0`` (or 1) decrypts in
    this process only.
    """

    def __init__(
        self,
        platform: Platform,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        decrypt_workers: int | None = None,
    ) -> None:
        if max_sessions < 1:
            raise QueryError("max_sessions must be at least 1")
        if decrypt_workers is not None and decrypt_workers < 0:
            raise QueryError("decrypt_workers must not be negative")
        self._platform = platform
        self._max_sessions = max_sessions
        self._decrypt_workers = default_workers() if decrypt_workers is None else decrypt_workers
        # Private seam for tests: the fewest cells one call decrypts in worker processes.
        self._parallel_min_cells = PARALLEL_MIN_CELLS
        self._sessions: OrderedDict[int, _Session] = OrderedDict()
        self._lock = threading.Lock()
        # Decoded sealed indexes, reused across statements (see cleanroom.sql.index).
        self._index_cache = IndexCache()

    def __repr__(self) -> str:
        return f"Enclave(platform={self._platform!r}, sessions={len(self._sessions)})"

    def attest(self, parameters: bytes) -> AttestationInfo:
        """Start a session for the client whose nonce and ECDH key ``parameters`` carry."""
        nonce, client_public = pkg.parse_attestation_parameters(parameters)
        private = pkg.new_ecdh_key()
        jwk = pkg.jwk_of(private.public_key())
        runtime_data = {"nonce": nonce, "tee-pubkey": jwk}
        from cleanroom.attestation import report_data_for

        evidence = self._platform.evidence(report_data_for(nonce, jwk))
        key = pkg.derive_session_key(private, client_public)
        session_id = secrets.randbits(63)
        with self._lock:
            self._sessions[session_id] = _Session(key)
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)
        return AttestationInfo(
            session_id=session_id,
            evidence=evidence,
            runtime_data=runtime_data,
            enclave_dh=pkg.eck3_blob(private.public_key()),
        )

    def begin(
        self,
        package: bytes,
        statement: str,
        *,
        columns: Mapping[str, ColumnBinding],
        parameters: Mapping[ParamKey, Any],
        target: ColumnBinding | None = None,
    ) -> EnclaveStatement:
        """Open ``package`` for ``statement`` and return a handle to compute with its keys.

        Refuses (:class:`QueryError`) a package for an unknown session, bound to another
        statement text, or whose counter is not above every counter seen in its session;
        :class:`DecryptionError` if it does not decrypt under the session key.
        """
        session_id = pkg.package_session_id(package)
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise QueryError(f"{SESSION_INVALID}: attest again")
            opened = pkg.open_package(package, session.key)
            if opened.session_id != session_id:  # pragma: no cover - same bytes
                raise DecryptionError()
            if not pkg.same_hash(opened.query_hash, pkg.query_hash(statement)):
                _zero(opened.keys)
                raise QueryError("the enclave package is bound to another statement: refused")
            if opened.counter <= session.last_counter:
                _zero(opened.keys)
                raise QueryError("the enclave package counter was already used: replay refused")
            session.last_counter = opened.counter
        keys = {key.key_id: key for key in opened.keys}
        try:
            plan = parse(statement)
            if not isinstance(plan, SelectPlan | AlterColumnPlan | CreateIndexPlan):
                raise QueryError("this statement needs no enclave")
            return EnclaveStatement(
                plan,
                keys,
                columns,
                parameters,
                target,
                workers=self._decrypt_workers,
                parallel_min_cells=self._parallel_min_cells,
                index_cache=self._index_cache,
            )
        except BaseException:
            _zero(opened.keys)
            raise


def _zero(keys: Sequence[pkg.PackageKey]) -> None:
    for key in keys:
        key.cek.zero()


class EnclaveStatement:
    """The enclave's computations for one verified statement. Close it when done."""

    def __init__(
        self,
        plan: SelectPlan | AlterColumnPlan | CreateIndexPlan,
        keys: Mapping[int, pkg.PackageKey],
        columns: Mapping[str, ColumnBinding],
        parameters: Mapping[ParamKey, Any],
        target: ColumnBinding | None,
        *,
        workers: int = 0,
        parallel_min_cells: int = PARALLEL_MIN_CELLS,
        index_cache: IndexCache | None = None,
    ) -> None:
        self._plan = plan
        self._index_cache = index_cache if index_cache is not None else IndexCache(entries=0)
        self._builder: IndexBuilder | None = None
        self._keys = dict(keys)
        self._workers = workers
        self._parallel_min_cells = parallel_min_cells
        self._pools: dict[str, CellWorkers] = {}
        self._scanned = False
        self._sort_keys: list[dict[str, ColumnData]] = []
        self._columns = dict(columns)
        self._ciphers: dict[str, CellCipher] = {}
        for name, binding in self._columns.items():
            if binding.encrypted and binding.key_id is not None and binding.key_id in self._keys:
                self._ciphers[name] = self._cipher_for(binding)
        self._target = target
        if isinstance(plan, SelectPlan):
            _, self._residual = split(plan.where, self._columns)
            self._params = self._decrypt_parameters(plan, parameters)
        else:
            self._residual = ()
            self._params = {}

    def _cipher_for(self, binding: ColumnBinding) -> CellCipher:
        key = self._keys.get(binding.key_id if binding.key_id is not None else -1)
        if key is None or binding.key_md_version is None:
            raise QueryError(f"the enclave package carries no key for column {binding.name!r}")
        if not pkg.same_hash(key.key_md_version, binding.key_md_version):
            raise QueryError(f"the key metadata of column {binding.name!r} changed: describe again")
        return CellCipher(key.cek, EncryptionType.parse(binding.encryption or "randomized"))

    def _cipher(self, column: str) -> CellCipher:
        cipher = self._ciphers.get(column)
        if cipher is None:
            raise QueryError(f"the enclave package carries no key for column {column!r}")
        return cipher

    def _decrypt_parameters(
        self, plan: SelectPlan, parameters: Mapping[ParamKey, Any]
    ) -> dict[ParamKey, Any]:
        out: dict[ParamKey, Any] = {}
        for leaf in leaves(plan.where):
            binding = self._columns[leaf.column]
            for value in leaf_values(leaf):
                if not isinstance(value, Param) or value.key in out:
                    continue
                if value.key not in parameters:
                    raise QueryError(f"no value for parameter {_shown(value.key)}")
                given = parameters[value.key]
                if given is None or not binding.encrypted:
                    out[value.key] = given
                elif leaf.column in self._ciphers:
                    plain = self._cipher(leaf.column).decrypt(given)
                    out[value.key] = denormalize(plain, binding.sql_type)
        return out

    # -- SELECT -------------------------------------------------------------------------

    def _data(
        self, batch: Mapping[str, Sequence[Any]], names: Sequence[str], *, may_fork: bool = True
    ) -> dict[str, ColumnData]:
        data: dict[str, ColumnData] = {}
        for name in names:
            binding = self._columns[name]
            values = batch[name]
            if binding.encrypted:
                decryptor = self._decryptor(name, len(values), may_fork=may_fork)
                data[name] = decrypt_column(values, decryptor, binding.sql_type)
            else:
                data[name] = plain_column(values, binding)
        return data

    def _decryptor(self, column: str, cells: int, *, may_fork: bool) -> Decryptor:
        """The column's cipher, or its worker processes for a large call.

        Workers are forked (once per column and statement) only where ``may_fork``: forking
        copies only the calling thread, so it must not happen on the host's helper thread
        while another thread may hold a lock (see :mod:`cleanroom.crypto.parallel`).
        """
        cipher = self._cipher(column)
        pool = self._pools.get(column)
        if pool is not None:
            return pool
        if self._workers > 1 and may_fork and cells >= self._parallel_min_cells:
            pool = CellWorkers(cipher, workers=self._workers)
            self._pools[column] = pool
            return pool
        return cipher

    @property
    def residual_columns(self) -> tuple[str, ...]:
        """The columns the residual predicate reads (what :meth:`filter` needs)."""
        names = dict.fromkeys(leaf.column for term in self._residual for leaf in leaves(term))
        return tuple(names)

    def filter(self, batch: Mapping[str, Sequence[Any]]) -> npt.NDArray[np.intp]:
        """Positions of the rows of ``batch`` where the statement's residual predicate holds."""
        names = self.residual_columns
        if not names:
            rows = len(next(iter(batch.values()))) if batch else 0
            return np.arange(rows, dtype=np.intp)
        return evaluate(self._residual, self._data(batch, names), self._params)

    def order(self, batch: Mapping[str, Sequence[Any]]) -> npt.NDArray[np.intp]:
        """The permutation that sorts ``batch`` by the statement's ORDER BY."""
        names = self._order_columns()
        data = self._data(batch, names)
        return self._ordering(data)

    def _order_columns(self) -> list[str]:
        plan = self._plan
        if not isinstance(plan, SelectPlan) or not plan.order:
            raise QueryError("the statement has no ORDER BY")
        return list(dict.fromkeys(k.column for k in plan.order))

    def _ordering(self, data: Mapping[str, ColumnData]) -> npt.NDArray[np.intp]:
        plan = self._plan
        assert isinstance(plan, SelectPlan)
        return ordering([(data[k.column], k.descending) for k in plan.order])

    def scan_columns(self, *, top: bool = False, sort: bool = False) -> tuple[str, ...]:
        """The columns :meth:`scan` reads: the residual predicate's, ORDER BY's if needed."""
        names = list(self.residual_columns)
        if top or sort:
            names += self._order_columns()
        return tuple(dict.fromkeys(names))

    def scan(
        self, batch: Mapping[str, Sequence[Any]], *, top: int | None = None, sort: bool = False
    ) -> npt.NDArray[np.intp]:
        """Positions (ascending) of the rows of ``batch`` to keep.

        The rows where the residual predicate holds; with ``top``, only the first ``top`` of
        them by the ORDER BY (``TOP (n) … ORDER BY``: a batch's other rows cannot be in the
        result). With ``sort``, the enclave also keeps the ORDER BY values of those rows (in
        its memory, like the keys) for :meth:`scanned_order`, so that sorting needs no
        second decryption. Each column is decrypted once per call.
        """
        if top is not None and top < 0:
            raise QueryError("TOP must not be negative")
        names = self.scan_columns(top=top is not None, sort=sort)
        first, self._scanned = not self._scanned, True
        if not names:
            rows = len(next(iter(batch.values()))) if batch else 0
            return np.arange(rows, dtype=np.intp)
        # Only the first call may fork workers: the host makes it on its own thread, and
        # later calls of a pipelined scan come from a helper thread (see _select.pipelined).
        data = self._data(batch, names, may_fork=first)
        hits = evaluate(self._residual, data, self._params)
        if len(hits) != len(next(iter(data.values()))):
            data = {name: column.take(hits) for name, column in data.items()}
        if top is not None and len(hits) > top:
            chosen = self._first(data, top)
            hits = hits[chosen]
            data = {name: column.take(chosen) for name, column in data.items()}
        if sort:
            self._sort_keys.append({name: data[name] for name in self._order_columns()})
        return hits

    def _first(self, data: Mapping[str, ColumnData], top: int) -> npt.NDArray[np.intp]:
        """Positions (ascending) of the first ``top`` rows of ``data`` by the ORDER BY."""
        plan = self._plan
        assert isinstance(plan, SelectPlan)
        key = plan.order[0]
        # Sort only the rows that can be among the first: those whose first key is no
        # further than the top-th value (ties included); the stable sort of that subset in
        # row order is the full sort restricted to it.
        few = top_candidates(data[key.column], top, descending=key.descending)
        if len(few) < len(data[key.column]):
            data = {name: column.take(few) for name, column in data.items()}
        return np.sort(few[self._ordering(data)[:top]])

    def scanned_order(self) -> npt.NDArray[np.intp]:
        """The permutation sorting every row kept so far by :meth:`scan` with ``sort=True``.

        The rows are numbered in the order the scans returned them; the kept values are
        then dropped.
        """
        names = self._order_columns()
        parts, self._sort_keys = self._sort_keys, []
        data = {name: ColumnData.concat([part[name] for part in parts]) for name in names}
        return self._ordering(data)

    def extreme(
        self, function: Literal["min", "max"], column: str, cells: Sequence[Any]
    ) -> bytes | None:
        """MIN/MAX of an encrypted column, as a cell freshly encrypted under its key."""
        plan = self._plan
        if not isinstance(plan, SelectPlan) or not any(
            getattr(i, "function", None) == function and getattr(i, "column", None) == column
            for i in plan.items
        ):
            raise QueryError(f"the statement computes no {function.upper()}({column})")
        binding = self._columns[column]
        cipher = self._cipher(column)
        data = decrypt_column(cells, cipher, binding.sql_type)
        best = extreme(data, function)
        if best is None:
            return None
        return cipher.encrypt(cipher.decrypt(cells[best]))

    # -- sealed enclave index (cleanroom.sql.index) -------------------------------------------

    def _index_cipher(self, column: str) -> tuple[CellCipher, bytes]:
        """A randomized cipher under ``column``'s key (whatever the column's type), and the key."""
        self._cipher(column)  # the package carries the column's key, with the right metadata
        binding = self._columns[column]
        assert binding.key_id is not None
        cek = self._keys[binding.key_id].cek
        return CellCipher(cek, EncryptionType.RANDOMIZED), cek.secret_bytes()

    def index_add(self, row_ids: npt.NDArray[np.int64], cells: Sequence[Any]) -> None:
        """``CREATE INDEX``: decrypt one batch of the column (row ids ascending) and keep it."""
        plan = self._plan
        if not isinstance(plan, CreateIndexPlan):
            raise QueryError("the statement is not a CREATE INDEX")
        if self._builder is None:
            self._builder = IndexBuilder(table=plan.table, binding=self._columns[plan.column])
        first, self._scanned = not self._scanned, True
        data = self._data({plan.column: cells}, [plan.column], may_fork=first)
        self._builder.add(row_ids, data[plan.column])

    def index_seal(self) -> tuple[bytes, int, int]:
        """``CREATE INDEX``: the sealed index of every batch added: ``(blob, rows, max_row_id)``."""
        plan = self._plan
        if not isinstance(plan, CreateIndexPlan):
            raise QueryError("the statement is not a CREATE INDEX")
        builder = self._builder or IndexBuilder(
            table=plan.table, binding=self._columns[plan.column]
        )
        self._builder = None
        return builder.seal(self._index_cipher(plan.column)[0])

    def index_candidates(
        self, column: str, blob: bytes
    ) -> tuple[npt.NDArray[np.int64], int] | None:
        """Row ids (ascending) that may satisfy the predicate, by ``column``'s sealed index,
        and the last row id it covers (the host must also read every later row).

        ``None`` when a parameter cannot be searched in the index (the host then scans).
        :class:`DecryptionError` for a blob that is not an index sealed under the column's
        key; :class:`QueryError` for one sealed for another table, column, type or key.
        """
        plan = self._plan
        if not isinstance(plan, SelectPlan):
            raise QueryError("the statement is not a SELECT")
        terms = narrowing(self._residual, column)
        binding = self._columns.get(column)
        if not terms or binding is None or not binding.encrypted:
            raise QueryError(f"the statement has no predicate an index on {column!r} answers")
        assert binding.key_md_version is not None
        cipher, secret = self._index_cipher(column)
        opened = self._index_cache.open(cipher, secret, blob)
        if (
            opened.table != plan.table.lower()
            or opened.column != column
            or opened.sql_type != binding.sql_type
            or not pkg.same_hash(opened.key_md_version, binding.key_md_version)
        ):
            raise QueryError("the enclave index belongs to another table, column or key: refused")
        hits = opened.candidates(terms, self._params)
        return None if hits is None else (hits, opened.max_row_id)

    # -- ALTER COLUMN -------------------------------------------------------------------

    def transform(self, values: Sequence[Any]) -> list[Any]:
        """Re-encode a batch of the altered column: encrypt, re-encrypt or decrypt it."""
        plan = self._plan
        target = self._target
        if not isinstance(plan, AlterColumnPlan) or target is None:
            raise QueryError("the statement is not an ALTER COLUMN")
        if (target.encrypted != (plan.cek is not None)) or (
            target.encrypted and target.encryption != plan.encryption
        ):
            raise QueryError("the target encoding does not match the statement")
        source = self._columns[plan.column]
        present = [i for i, v in enumerate(values) if v is not None]
        items = [values[i] for i in present]
        if source.encrypted:
            plain = self._cipher(plan.column).decrypt_many(items)
        else:
            plain = normalize_many(items, source.sql_type)
        if target.encrypted:
            converted: list[Any] = self._cipher_for(target).encrypt_many(plain)
        else:
            from cleanroom.crypto import denormalize_many

            converted = list(denormalize_many(plain, target.sql_type))
        out: list[Any] = [None] * len(values)
        for index, value in zip(present, converted, strict=True):
            out[index] = value
        return out

    def close(self) -> None:
        """Stop the statement's decryption workers, zero its keys; the handle is then unusable."""
        pools = list(self._pools.values())
        self._pools.clear()
        self._sort_keys = []
        self._builder = None
        for pool in pools:
            pool.close()
        _zero(list(self._keys.values()))
        self._keys.clear()
        self._ciphers.clear()

    def __enter__(self) -> EnclaveStatement:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shown(key: ParamKey) -> str:
    return f"#{key + 1}" if isinstance(key, int) else f"@{key}"


__all__ = [
    "DEFAULT_MAX_SESSIONS",
    "PARALLEL_MIN_CELLS",
    "SESSION_INVALID",
    "AttestationInfo",
    "Enclave",
    "EnclaveStatement",
    "LauncherPlatform",
    "simulated_enclave",
]
