"""Enclave-enabled SQL: rich queries over randomized encrypted columns, in-place encryption.

The article's other half — SQL Server *Always Encrypted with secure enclaves* — on the
cleanroom store (SQLite or PostgreSQL):

* :func:`connect` gives a party a DB-API-style :class:`Connection` with column encryption;
  ``cursor.execute(sql, params)`` encrypts the parameters, attests the enclave, sends it the
  keys it needs sealed and bound to the statement text, and decrypts the results;
* :class:`QueryEngine` is the host side, in front of the store: it pushes what it can to
  the database (ciphertext equality on deterministic columns) and streams the rest through
  the :class:`Enclave`, which returns row positions, orderings and encrypted aggregates,
  never plaintext;
* ``ALTER TABLE t ALTER COLUMN c type ENCRYPTED WITH (…)`` encrypts, re-encrypts or decrypts
  a column in place, in the enclave, in one transaction;
* ``CREATE INDEX name ON t (c)`` builds a sealed enclave index: the sorted column encrypted
  as one cell under its own key, which range and equality queries search in the enclave.

Supported SQL and formats: ``docs/sql.md``, :mod:`cleanroom.sql.parser`,
:mod:`cleanroom.sql.package`.
"""

from cleanroom.sql.cursor import AttestationSettings, Connection, Cursor, connect
from cleanroom.sql.enclave import (
    AttestationInfo,
    Enclave,
    EnclaveStatement,
    LauncherPlatform,
    simulated_enclave,
)
from cleanroom.sql.engine import (
    KeyDescription,
    ParameterDescription,
    QueryEngine,
    QueryResult,
    ResultColumn,
    StatementDescription,
)
from cleanroom.sql.parser import parse

__all__ = [
    "AttestationInfo",
    "AttestationSettings",
    "Connection",
    "Cursor",
    "Enclave",
    "EnclaveStatement",
    "KeyDescription",
    "LauncherPlatform",
    "ParameterDescription",
    "QueryEngine",
    "QueryResult",
    "ResultColumn",
    "StatementDescription",
    "connect",
    "parse",
    "simulated_enclave",
]
