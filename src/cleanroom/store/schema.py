"""Declarative dataset schemas (JSON or TOML).

A schema names a table, its columns (SQL type, encrypted or not, deterministic or
randomized, under which column encryption key), which column is the label, and optional
validation rules (allowed categories, inclusive min/max). Example (JSON)::

    {
      "table": "MedicalRecords",
      "label": "risk",
      "columns": [
        {"name": "risk", "type": "tinyint", "categories": [0, 1, 2, 3, 4]},
        {"name": "age", "type": "int", "min": 0, "max": 120},
        {"name": "site", "type": "nvarchar(40)", "encryption": "deterministic"},
        {"name": "notes", "type": "nvarchar(max)", "encrypted": false}
      ]
    }

Columns are encrypted, randomized, by default. ``cek`` may be omitted: the party's client
fills in its own column encryption key when it creates the table. Column and table names
are identifiers (``[A-Za-z_][A-Za-z0-9_]*``, at most 48 characters) so that they are safe
and identical on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from cleanroom.errors import SchemaError
from cleanroom.store._types import ColumnType

EncryptionKind = Literal["deterministic", "randomized"]
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
_COLUMN_KEYS = frozenset(
    {"name", "type", "encrypted", "encryption", "cek", "categories", "min", "max", "nullable"}
)
_SCHEMA_KEYS = frozenset({"table", "label", "columns"})


def check_identifier(name: str, what: str) -> str:
    """Return ``name`` if it is a safe identifier, else raise :class:`SchemaError`."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise SchemaError(f"{what} must match [A-Za-z_][A-Za-z0-9_]* (at most 48 characters)")
    return name


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One column of a dataset schema.

    ``encryption`` is ignored when ``encrypted`` is false. ``categories`` (allowed values)
    and ``minimum``/``maximum`` (inclusive) are checked on import, before anything is
    written.
    """

    name: str
    sql_type: str
    encrypted: bool = True
    encryption: EncryptionKind = "randomized"
    cek: str | None = None
    categories: tuple[Any, ...] | None = None
    minimum: Any = None
    maximum: Any = None
    nullable: bool = True
    column_type: ColumnType = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_identifier(self.name, "a column name")
        if self.encryption not in ("deterministic", "randomized"):
            raise SchemaError(
                f"column {self.name!r}: encryption must be deterministic or randomized"
            )
        if self.cek is not None:
            check_identifier(self.cek, f"column {self.name!r}: the CEK name")
        try:
            parsed = ColumnType.parse(self.sql_type)
        except ValueError as error:
            raise SchemaError(f"column {self.name!r}: {error}") from None
        object.__setattr__(self, "column_type", parsed)
        object.__setattr__(self, "sql_type", str(parsed))
        # Categories and bounds are written in the column's own type, so coerce them now
        # and fail at construction rather than on the first import.
        try:
            if self.categories is not None:
                coerced = tuple(parsed.coerce(c) for c in self.categories)
                object.__setattr__(self, "categories", coerced)
            for attr in ("minimum", "maximum"):
                bound = getattr(self, attr)
                if bound is not None:
                    object.__setattr__(self, attr, parsed.coerce(bound))
        except ValueError as error:
            raise SchemaError(f"column {self.name!r}: categories/min/max: {error}") from None

    def coerce(self, value: Any) -> Any:
        """Coerce and validate one value; raise :class:`ValueError` that never quotes it."""
        result = self.column_type.coerce(value)
        if result is None:
            if not self.nullable:
                raise ValueError("a value is required")
            return None
        if self.categories is not None and result not in self.categories:
            raise ValueError("not one of the allowed categories")
        if self.minimum is not None and result < self.minimum:
            raise ValueError("below the minimum")
        if self.maximum is not None and result > self.maximum:
            raise ValueError("above the maximum")
        return result

    def coerce_many(self, values: Sequence[Any]) -> list[Any]:
        """:meth:`coerce` a whole column; on a bad value raise :class:`ValueError`.

        The error does not say which value; call :meth:`coerce` per value to find it.
        """
        result = self.column_type.coerce_many(values)
        if not self.nullable and None in result:
            raise ValueError("a value is required")
        if self.categories is not None:
            allowed = set(self.categories)
            allowed.add(None)
            if not all(v in allowed for v in result):
                raise ValueError("not one of the allowed categories")
        low, high = self.minimum, self.maximum
        if low is not None and any(v is not None and v < low for v in result):
            raise ValueError("below the minimum")
        if high is not None and any(v is not None and v > high for v in result):
            raise ValueError("above the maximum")
        return result

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this column (defaults left out)."""
        out: dict[str, Any] = {"name": self.name, "type": self.sql_type}
        if not self.encrypted:
            out["encrypted"] = False
        elif self.encryption != "randomized":
            out["encryption"] = self.encryption
        if self.encrypted and self.cek is not None:
            out["cek"] = self.cek
        if self.categories is not None:
            out["categories"] = [_jsonable(c) for c in self.categories]
        if self.minimum is not None:
            out["min"] = _jsonable(self.minimum)
        if self.maximum is not None:
            out["max"] = _jsonable(self.maximum)
        if not self.nullable:
            out["nullable"] = False
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSpec:
        """Build a column from its JSON/TOML form."""
        if not isinstance(data, Mapping):
            raise SchemaError("each column must be an object")
        unknown = set(data) - _COLUMN_KEYS
        if unknown:
            raise SchemaError(f"unknown column keys: {', '.join(sorted(unknown))}")
        if "name" not in data or "type" not in data:
            raise SchemaError("each column needs a name and a type")
        categories = data.get("categories")
        return cls(
            name=data["name"],
            sql_type=str(data["type"]),
            encrypted=bool(data.get("encrypted", True)),
            encryption=data.get("encryption", "randomized"),
            cek=data.get("cek"),
            categories=tuple(categories) if categories is not None else None,
            minimum=data.get("min"),
            maximum=data.get("max"),
            nullable=bool(data.get("nullable", True)),
        )


@dataclass(frozen=True, slots=True)
class DatasetSchema:
    """A table of one party's dataset: its columns and which of them is the label."""

    table: str
    columns: tuple[ColumnSpec, ...]
    label: str | None = None

    def __post_init__(self) -> None:
        check_identifier(self.table, "the table name")
        if not self.columns:
            raise SchemaError("a schema needs at least one column")
        names = [c.name.lower() for c in self.columns]
        if len(set(names)) != len(names):
            raise SchemaError("column names must be unique (case-insensitively)")
        if self.label is not None and self.label not in self.column_names:
            raise SchemaError(f"the label {self.label!r} is not a column")

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in table order."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> ColumnSpec:
        """The column called ``name``."""
        for spec in self.columns:
            if spec.name == name:
                return spec
        raise SchemaError(f"no column {name!r} in {self.table}")

    def with_default_cek(self, cek: str) -> DatasetSchema:
        """A copy whose encrypted columns without a CEK use ``cek``."""
        columns = tuple(
            replace(c, cek=cek) if c.encrypted and c.cek is None else c for c in self.columns
        )
        return replace(self, columns=columns)

    def plaintext(self) -> DatasetSchema:
        """A copy with no column encrypted (for comparisons and benchmarks only)."""
        return replace(self, columns=tuple(replace(c, encrypted=False) for c in self.columns))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the schema."""
        out: dict[str, Any] = {"table": self.table}
        if self.label is not None:
            out["label"] = self.label
        out["columns"] = [c.to_dict() for c in self.columns]
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no extra spaces) of the schema."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetSchema:
        """Build a schema from its JSON/TOML form; raise :class:`SchemaError` if invalid."""
        if not isinstance(data, Mapping):
            raise SchemaError("a schema must be an object")
        unknown = set(data) - _SCHEMA_KEYS
        if unknown:
            raise SchemaError(f"unknown schema keys: {', '.join(sorted(unknown))}")
        columns = data.get("columns")
        if not isinstance(columns, Sequence) or isinstance(columns, str | bytes):
            raise SchemaError("'columns' must be a list")
        if "table" not in data:
            raise SchemaError("a schema needs a 'table'")
        return cls(
            table=data["table"],
            columns=tuple(ColumnSpec.from_dict(c) for c in columns),
            label=data.get("label"),
        )

    @classmethod
    def from_json(cls, text: str) -> DatasetSchema:
        """Parse a JSON schema."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SchemaError(f"schema is not valid JSON (line {error.lineno})") from None
        return cls.from_dict(data)

    @classmethod
    def from_toml(cls, text: str) -> DatasetSchema:
        """Parse a TOML schema (``table``, ``label`` and an array of ``[[columns]]``)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise SchemaError(f"schema is not valid TOML: {error}") from None
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> DatasetSchema:
        """Read a ``.json`` or ``.toml`` schema file."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as error:
            raise SchemaError(f"cannot read schema file {file}: {error.strerror}") from None
        if file.suffix.lower() == ".toml":
            return cls.from_toml(text)
        return cls.from_json(text)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


__all__ = ["ColumnSpec", "DatasetSchema", "EncryptionKind", "check_identifier"]
