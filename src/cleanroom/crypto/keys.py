"""Secret key objects: a column encryption key that cannot leak by accident.

A :class:`ColumnEncryptionKey` holds the 32-byte plaintext CEK of Always Encrypted. It
redacts itself in ``repr``/``str``, refuses to be pickled or copied, compares in
constant time, and can be zeroed (``with key: ...`` or :meth:`ColumnEncryptionKey.zero`).
Reading the bytes takes an explicit call, :meth:`ColumnEncryptionKey.secret_bytes`.

Python cannot promise that no copy of a secret survives in memory (bytes objects are
immutable and the allocator reuses pages); zeroing the one buffer we own is the part
that Python allows.
"""

from __future__ import annotations

import hmac
import secrets
from types import TracebackType
from typing import NoReturn, Self

from cleanroom.errors import ConfigurationError

CEK_LENGTH = 32


class ColumnEncryptionKey:
    """A 32-byte Always Encrypted column encryption key (the plaintext root key)."""

    __slots__ = ("_buffer", "_zeroed")

    def __init__(self, material: bytes | bytearray | memoryview, /) -> None:
        if not isinstance(material, bytes | bytearray | memoryview):
            raise TypeError("a column encryption key is built from bytes")
        if len(material) != CEK_LENGTH:
            raise ConfigurationError(
                f"a column encryption key is exactly {CEK_LENGTH} bytes, got {len(material)}"
            )
        self._buffer = bytearray(material)
        self._zeroed = False

    @classmethod
    def generate(cls) -> Self:
        """A fresh key from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(CEK_LENGTH))

    @classmethod
    def from_bytes(cls, material: bytes | bytearray | memoryview, /) -> Self:
        """Wrap existing key material (copied; zero your own copy if you can)."""
        return cls(material)

    def secret_bytes(self) -> bytes:
        """The key material. Every call site of this method handles a secret."""
        if self._zeroed:
            raise ConfigurationError("this column encryption key has been zeroed")
        return bytes(self._buffer)

    def zero(self) -> None:
        """Overwrite the key material in place; the key is unusable afterwards."""
        for i in range(len(self._buffer)):
            self._buffer[i] = 0
        self._zeroed = True

    @property
    def zeroed(self) -> bool:
        return self._zeroed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.zero()

    def __len__(self) -> int:
        return CEK_LENGTH

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ColumnEncryptionKey):
            return NotImplemented
        return hmac.compare_digest(self._buffer, other._buffer)

    def __hash__(self) -> int:
        raise TypeError("column encryption keys are not hashable")

    def __repr__(self) -> str:
        return "ColumnEncryptionKey(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("column encryption keys cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError("column encryption keys cannot be copied")

    def __deepcopy__(self, memo: object) -> NoReturn:
        raise TypeError("column encryption keys cannot be copied")


def as_key(cek: ColumnEncryptionKey | bytes | bytearray | memoryview) -> ColumnEncryptionKey:
    """Accept a key object or raw bytes (validated) and return a key object."""
    if isinstance(cek, ColumnEncryptionKey):
        return cek
    return ColumnEncryptionKey(cek)
