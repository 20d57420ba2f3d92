"""Always Encrypted cryptography: cells, column encryption keys, typed values, key wrapping.

The public surface is re-exported here; raw primitives (the only place an IV is a
parameter) stay in the private ``_hazmat`` module.

Typical use::

    cek = ColumnEncryptionKey.generate()
    blob = wrap_cek(cek, key_store, key_path)              # what the store keeps
    cipher = CellCipher(cek, EncryptionType.RANDOMIZED)
    cells = cipher.encrypt_many(normalize_many(ages, "tinyint"))
    with CellWorkers(cipher) as workers:                   # large batches, every core
        cells = workers.encrypt_many(normalize_many(ages, "tinyint"))
"""

from cleanroom.crypto.cells import CellCipher, EncryptionType
from cleanroom.crypto.keys import CEK_LENGTH, ColumnEncryptionKey
from cleanroom.crypto.normalize import (
    NORMALIZATION_RULE_VERSION,
    SqlValue,
    denormalize,
    denormalize_many,
    normalize,
    normalize_many,
)
from cleanroom.crypto.parallel import CellWorkers
from cleanroom.crypto.sqltypes import SqlType
from cleanroom.crypto.wrapping import (
    KEY_ENCRYPTION_ALGORITHM,
    ParsedWrappedCek,
    WrappedKey,
    parse_wrapped_cek,
    sign_cmk_metadata,
    unwrap_any,
    unwrap_cek,
    verify_cmk_metadata,
    wrap_cek,
)

ALGORITHM = "AEAD_AES_256_CBC_HMAC_SHA256"

__all__ = [
    "ALGORITHM",
    "CEK_LENGTH",
    "KEY_ENCRYPTION_ALGORITHM",
    "NORMALIZATION_RULE_VERSION",
    "CellCipher",
    "CellWorkers",
    "ColumnEncryptionKey",
    "EncryptionType",
    "ParsedWrappedCek",
    "SqlType",
    "SqlValue",
    "WrappedKey",
    "denormalize",
    "denormalize_many",
    "normalize",
    "normalize_many",
    "parse_wrapped_cek",
    "sign_cmk_metadata",
    "unwrap_any",
    "unwrap_cek",
    "verify_cmk_metadata",
    "wrap_cek",
]
