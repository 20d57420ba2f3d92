"""Always Encrypted cryptography: cells, column encryption keys, typed values, key wrapping.

The public surface is re-exported here; raw primitives (the only place an IV is a
parameter) stay in the private ``_hazmat`` module.
"""

from cleanroom.crypto.cells import CellCipher, EncryptionType
from cleanroom.crypto.keys import CEK_LENGTH, ColumnEncryptionKey

ALGORITHM = "AEAD_AES_256_CBC_HMAC_SHA256"
NORMALIZATION_RULE_VERSION = 1

__all__ = [
    "ALGORITHM",
    "CEK_LENGTH",
    "NORMALIZATION_RULE_VERSION",
    "CellCipher",
    "ColumnEncryptionKey",
    "EncryptionType",
]
