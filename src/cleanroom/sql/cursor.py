"""The client: a DB-API-style connection with column encryption and enclave computations.

``connect(engine, key_store, party=..., attestation=...)`` returns a :class:`Connection`;
``cursor.execute(sql, params)`` then does what SQL Server's drivers do:

1. **describe** the statement (which parameters to encrypt, under which key and type; which
   column encryption keys the enclave needs);
2. for each key the enclave needs: refuse it unless its column master key is
   enclave-enabled *and* the CMK metadata signature verifies with the party's key store;
   unwrap every key needed;
3. **attest** the enclave once per connection (or when it forgets the session): a fresh
   nonce and an ephemeral ECDH P-384 key; the evidence is appraised here against the
   connection's :class:`~cleanroom.attestation.AttestationPolicy` into
   :class:`~cleanroom.attestation.VerifiedClaims`, whose bound ``tee-pubkey`` must be the
   enclave's ECDH key; the session key is SHA-256 of the shared secret;
4. seal an **enclave package** (the keys, SHA-256 of the exact statement text, the next
   counter) and encrypt the parameters;
5. **execute**, and decrypt the result cells.

Parameters are a sequence for ``?`` placeholders or a mapping for ``@name`` (with or
without the ``@``). Each is coerced to the type of the column it is compared with (so text
such as ``"42"`` works for an ``int`` column, as in a CSV import).
"""

from __future__ import annotations

import base64
import itertools
import logging
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography import x509

from cleanroom.attestation import AttestationPolicy, VerifiedClaims, verify
from cleanroom.crypto import (
    CellCipher,
    CellWorkers,
    ColumnEncryptionKey,
    EncryptionType,
    WrappedKey,
    normalize,
    unwrap_any,
    verify_cmk_metadata,
)
from cleanroom.crypto.parallel import default_workers
from cleanroom.errors import (
    ConfigurationError,
    EvidenceError,
    KeyWrapError,
    NormalizationError,
    QueryError,
    SchemaError,
)
from cleanroom.keystores import KeyStore
from cleanroom.sql import package as pkg
from cleanroom.sql.enclave import SESSION_INVALID
from cleanroom.sql.engine import (
    KeyDescription,
    QueryEngine,
    QueryResult,
    StatementDescription,
    paused_gc,
)
from cleanroom.sql.evaluate import Decryptor, typed_values
from cleanroom.sql.parser import ParamKey
from cleanroom.store import ColumnType, check_identifier

_log = logging.getLogger("cleanroom.sql.client")

#: The fewest cells of one result column that the client decrypts in worker processes.
CLIENT_PARALLEL_MIN_CELLS: Final = 65_536


@dataclass(frozen=True, kw_only=True, slots=True)
class AttestationSettings:
    """How a connection appraises the enclave: a policy and the roots it trusts.

    ``trusted_roots`` are the roots for simulated evidence (the simulation root CA); the
    policy must say ``allow_simulation=True`` to accept it (loud, development only).
    """

    policy: AttestationPolicy
    trusted_roots: Sequence[x509.Certificate] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.policy, AttestationPolicy):
            raise ConfigurationError("policy must be an AttestationPolicy")
        object.__setattr__(self, "trusted_roots", tuple(self.trusted_roots))


@dataclass(slots=True)
class _Session:
    session_id: int
    key: bytes = field(repr=False)
    claims: VerifiedClaims
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def connect(
    engine: QueryEngine,
    key_store: KeyStore | Mapping[str, KeyStore],
    *,
    party: str,
    attestation: AttestationSettings | None = None,
    decrypt_workers: int | None = None,
) -> Connection:
    """A connection for ``party`` with column encryption enabled.

    ``key_store`` holds the party's column master keys (or maps provider names to key
    stores). Without ``attestation`` no key is ever sent to an enclave, and statements that
    need one fail. A result column of at least :data:`CLIENT_PARALLEL_MIN_CELLS` cells is
    decrypted in ``decrypt_workers`` forked processes (a :class:`~cleanroom.crypto.CellWorkers`;
    default one per CPU, at most four; ``0`` or ``1``: in this process only).
    """
    return Connection(
        engine, key_store, party=party, attestation=attestation, decrypt_workers=decrypt_workers
    )


class Connection:
    """A client connection (see :func:`connect`). Thread-safe; cursors are not."""

    def __init__(
        self,
        engine: QueryEngine,
        key_store: KeyStore | Mapping[str, KeyStore],
        *,
        party: str,
        attestation: AttestationSettings | None = None,
        decrypt_workers: int | None = None,
    ) -> None:
        if decrypt_workers is not None and decrypt_workers < 0:
            raise ConfigurationError("decrypt_workers must not be negative")
        self._decrypt_workers = default_workers() if decrypt_workers is None else decrypt_workers
        self._engine = engine
        self._party = check_identifier(party, "a party name")
        if isinstance(key_store, Mapping):
            self._key_stores: dict[str, KeyStore] = dict(key_store)
        else:
            self._key_stores = {key_store.provider_name: key_store}
        self._attestation = attestation
        self._session: _Session | None = None
        self._ceks: dict[tuple[str, bytes], ColumnEncryptionKey] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Connection(party={self._party!r}, engine={self._engine!r})"

    @property
    def claims(self) -> VerifiedClaims | None:
        """The verified claims of the current enclave session, if one was made."""
        return None if self._session is None else self._session.claims

    def cursor(self) -> Cursor:
        """A new cursor."""
        return Cursor(self)

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Cursor:
        """Shortcut: a new cursor that has executed ``sql``."""
        cursor = self.cursor()
        cursor.execute(sql, params)
        return cursor

    def close(self) -> None:
        """Forget the enclave session and zero the cached keys."""
        with self._lock:
            self._session = None
            for key in self._ceks.values():
                key.zero()
            self._ceks.clear()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the protocol ---------------------------------------------------------------------

    def _run(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> QueryResult:
        description = self._engine.describe(sql, party=self._party)
        values = _bind(description, params)
        keys = {k.key_id: self._key(k) for k in description.keys}
        encrypted = self._encrypt_parameters(description, values, keys)
        if not description.needs_enclave:
            result = self._engine.execute(sql, party=self._party, parameters=encrypted)
        else:
            try:
                result = self._execute_in_enclave(sql, description, encrypted, keys)
            except QueryError as error:
                if not str(error).startswith(SESSION_INVALID):
                    raise
                # The enclave forgot the session (restart, eviction): attest once more.
                with self._lock:
                    self._session = None
                result = self._execute_in_enclave(sql, description, encrypted, keys)
        return self._decrypt(result, description)

    def _execute_in_enclave(
        self,
        sql: str,
        description: StatementDescription,
        parameters: Mapping[ParamKey, Any],
        keys: Mapping[int, ColumnEncryptionKey],
    ) -> QueryResult:
        session = self._enclave_session()
        package_keys = [
            pkg.PackageKey(k.key_id, k.key_md_version, keys[k.key_id])
            for k in description.keys
            if k.requested_by_enclave
        ]
        package = pkg.seal_package(
            session_id=session.session_id,
            session_key=session.key,
            counter=next(session.counter),
            statement=sql,
            keys=package_keys,
        )
        return self._engine.execute(sql, party=self._party, parameters=parameters, package=package)

    def _enclave_session(self) -> _Session:
        with self._lock:
            if self._session is not None:
                return self._session
            if self._attestation is None:
                raise QueryError(
                    "this statement computes on encrypted columns in an enclave, and the "
                    "connection has no attestation settings (no key goes to an unattested enclave)"
                )
            nonce = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
            private = pkg.new_ecdh_key()
            info = self._engine.attest(pkg.attestation_parameters(nonce, private.public_key()))
            enclave_public = pkg.public_key_from_eck3(info.enclave_dh)
            claims = verify(
                info.evidence,
                self._attestation.policy,
                nonce=nonce,
                runtime_data=info.runtime_data,
                trusted_roots=self._attestation.trusted_roots,
            )
            if claims.tee_pubkey is None or dict(claims.tee_pubkey) != pkg.jwk_of(enclave_public):
                raise EvidenceError("the attested enclave key is not the enclave's ECDH key")
            session = _Session(
                session_id=info.session_id,
                key=pkg.derive_session_key(private, enclave_public),
                claims=claims,
            )
            self._session = session
            _log.info("attested the enclave (measurement %s...)", claims.measurement[:16])
            return session

    def _key(self, description: KeyDescription) -> ColumnEncryptionKey:
        if description.requested_by_enclave:
            self._check_enclave_key(description)
        cache_key = (description.name, description.key_md_version)
        with self._lock:
            cached = self._ceks.get(cache_key)
        if cached is not None:
            return cached
        wrapped = [
            WrappedKey(
                encrypted_value=v.encrypted_value,
                provider_name=v.provider_name,
                key_path=v.key_path,
                algorithm=v.algorithm,
            )
            for v in description.values
        ]
        cek = unwrap_any(wrapped, self._key_stores)
        with self._lock:
            self._ceks[cache_key] = cek
        return cek

    def _check_enclave_key(self, description: KeyDescription) -> None:
        """Only a CEK under an enclave-enabled CMK with a valid metadata signature goes out."""
        problems = []
        for value in description.values:
            where = f"{value.column_master_key} ({value.provider_name}:{value.key_path})"
            store = self._key_stores.get(value.provider_name)
            if not value.allow_enclave_computations or value.signature is None:
                problems.append(f"{where} is not enabled for enclave computations")
            elif store is None:
                problems.append(f"{where}: no key store for provider {value.provider_name!r}")
            else:
                try:
                    verify_cmk_metadata(
                        store, value.key_path, value.signature, allow_enclave_computations=True
                    )
                    return
                except KeyWrapError as error:
                    problems.append(str(error))
        raise KeyWrapError(
            f"column encryption key {description.name!r} may not be sent to an enclave: "
            + "; ".join(problems)
        )

    def _encrypt_parameters(
        self,
        description: StatementDescription,
        values: Mapping[ParamKey, Any],
        keys: Mapping[int, ColumnEncryptionKey],
    ) -> dict[ParamKey, Any]:
        out: dict[ParamKey, Any] = {}
        for param in description.parameters:
            value = values[param.key]
            if not param.encrypted or value is None:
                out[param.key] = value
                continue
            assert param.key_id is not None
            try:
                data = normalize(ColumnType.parse(param.sql_type).coerce(value), param.sql_type)
            except (NormalizationError, ValueError) as error:
                raise SchemaError(f"parameter for column {param.column!r}: {error}") from None
            cipher = CellCipher(
                keys[param.key_id], EncryptionType.parse(param.encryption or "randomized")
            )
            out[param.key] = cipher.encrypt(data)
        return out

    def _decrypt(self, result: QueryResult, description: StatementDescription) -> QueryResult:
        by_name = {k.name: k for k in description.keys}
        decoded: list[list[Any]] = []
        pools: dict[str, CellWorkers] = {}
        try:
            with paused_gc():
                for column, values in zip(result.columns, result.data, strict=True):
                    if not column.encrypted or not values:
                        decoded.append(values)
                        continue
                    if column.cek is None or column.cek not in by_name:
                        raise QueryError(f"no key described for result column {column.name!r}")
                    decryptor = self._decryptor(by_name[column.cek], len(values), pools)
                    if None not in values:
                        plain = decryptor.decrypt_many(values)
                        decoded.append(typed_values(plain, column.sql_type))
                        continue
                    present = [i for i, v in enumerate(values) if v is not None]
                    plain = decryptor.decrypt_many([values[i] for i in present])
                    typed = typed_values(plain, column.sql_type)
                    out: list[Any] = [None] * len(values)
                    for i, value in zip(present, typed, strict=True):
                        out[i] = value
                    decoded.append(out)
        finally:
            for pool in pools.values():
                pool.close()
        return QueryResult(columns=result.columns, data=tuple(decoded), rowcount=result.rowcount)

    def _decryptor(
        self, key: KeyDescription, cells: int, pools: dict[str, CellWorkers]
    ) -> Decryptor:
        """The key's cipher, or worker processes (forked for this result) for a large one."""
        pool = pools.get(key.name)
        if pool is not None:
            return pool
        cipher = CellCipher(self._key(key))
        if self._decrypt_workers > 1 and cells >= CLIENT_PARALLEL_MIN_CELLS:
            pool = CellWorkers(cipher, workers=self._decrypt_workers)
            pools[key.name] = pool
            return pool
        return cipher


def _bind(
    description: StatementDescription, params: Sequence[Any] | Mapping[str, Any]
) -> dict[ParamKey, Any]:
    wanted = {p.key for p in description.parameters}
    if isinstance(params, Mapping):
        given = {str(k).lower().lstrip("@"): v for k, v in params.items()}
        if any(isinstance(k, int) for k in wanted):
            raise QueryError("this statement uses ? placeholders: pass a sequence of values")
    elif isinstance(params, str | bytes):
        raise QueryError("parameters are a sequence or a mapping, not a string")
    else:
        given = dict(enumerate(params))  # type: ignore[arg-type]
        if any(isinstance(k, str) for k in wanted):
            raise QueryError("this statement uses @name parameters: pass a mapping")
    missing = wanted - set(given)
    if missing:
        shown = sorted(f"#{k + 1}" if isinstance(k, int) else f"@{k}" for k in missing)
        raise QueryError(f"missing parameter values: {', '.join(shown)}")
    if len(given) != len(wanted):
        raise QueryError(f"the statement takes {len(wanted)} parameters, {len(given)} were given")
    return {key: given[key] for key in wanted}  # type: ignore[index]


class Cursor:
    """A DB-API-style cursor: :meth:`execute`, then :meth:`fetchone`/:meth:`fetchall`."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._rows: list[tuple[Any, ...]] = []
        self._position = 0
        self.description: tuple[tuple[str, str, None, None, None, None, None], ...] | None = None
        self.rowcount = -1

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Cursor:
        """Run one statement with column encryption; parameters as DB-API ``qmark``/named."""
        result = self._connection._run(sql, params)
        with paused_gc():
            self._rows = result.rows
        self._position = 0
        self.rowcount = result.rowcount
        self.description = (
            tuple((c.name, c.sql_type, None, None, None, None, None) for c in result.columns)
            or None
        )
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next row, or ``None``."""
        if self._position >= len(self._rows):
            return None
        row = self._rows[self._position]
        self._position += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        """Up to ``size`` (default :attr:`arraysize`) more rows."""
        count = self.arraysize if size is None else size
        rows = self._rows[self._position : self._position + count]
        self._position += len(rows)
        return rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        """Every remaining row."""
        rows = self._rows[self._position :]
        self._position = len(self._rows)
        return rows

    def __iter__(self) -> Cursor:
        return self

    def __next__(self) -> tuple[Any, ...]:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def close(self) -> None:
        """Drop the rows."""
        self._rows = []


__all__ = ["AttestationSettings", "Connection", "Cursor", "connect"]
