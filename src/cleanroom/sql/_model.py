"""The records the engine and the client exchange (describe results, query results)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from cleanroom.sql.evaluate import ColumnBinding
from cleanroom.sql.parser import ParamKey, Plan
from cleanroom.store import ColumnSpec, DatasetInfo


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
    plan: Plan
    dataset: DatasetInfo
    specs: dict[str, ColumnSpec]  # lower-case name -> spec
    bindings: dict[str, ColumnBinding]
    keys: list[KeyDescription]
    parameters: list[ParameterDescription]
    needs_enclave: bool
    target: ColumnBinding | None = None


__all__ = [
    "KeyDescription",
    "ParameterDescription",
    "QueryResult",
    "ResultColumn",
    "StatementDescription",
    "WrappedValue",
]
