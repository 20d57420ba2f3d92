"""The encrypted store: key metadata and each party's encrypted table, on SQLite or PostgreSQL.

``open_store(url)`` returns a :class:`Store`. The store never sees a key or a plaintext
value of an encrypted column: parties encrypt with :mod:`cleanroom.client` before they
call it. Dataset tables are described by a declarative :class:`DatasetSchema` (JSON or
TOML); :func:`medical_record_schema` is the built-in one. See ``docs/store.md``.
"""

from cleanroom.store._store import (
    CELL_ALGORITHM,
    KEY_WRAP_ALGORITHM,
    MAX_CEK_VALUES,
    NORMALIZATION_RULE_VERSION,
    ROW_ID,
    ColumnEncryptionKeyInfo,
    ColumnEncryptionKeyValue,
    ColumnMasterKeyInfo,
    DatasetInfo,
    EncryptedColumnInfo,
    Store,
    default_url,
    open_store,
    storage_errors,
    utc_now,
)
from cleanroom.store._types import SUPPORTED_TYPES, ColumnType
from cleanroom.store.medical_record import MEDICAL_RECORD_TABLE, medical_record_schema
from cleanroom.store.schema import ColumnSpec, DatasetSchema, EncryptionKind, check_identifier

__all__ = [
    "CELL_ALGORITHM",
    "KEY_WRAP_ALGORITHM",
    "MAX_CEK_VALUES",
    "MEDICAL_RECORD_TABLE",
    "NORMALIZATION_RULE_VERSION",
    "ROW_ID",
    "SUPPORTED_TYPES",
    "ColumnEncryptionKeyInfo",
    "ColumnEncryptionKeyValue",
    "ColumnMasterKeyInfo",
    "ColumnSpec",
    "ColumnType",
    "DatasetInfo",
    "DatasetSchema",
    "EncryptedColumnInfo",
    "EncryptionKind",
    "Store",
    "check_identifier",
    "default_url",
    "medical_record_schema",
    "open_store",
    "storage_errors",
    "utc_now",
]
