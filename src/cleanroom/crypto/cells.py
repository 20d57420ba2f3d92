"""Always Encrypted cells: :class:`CellCipher` and :class:`EncryptionType`.

The byte format is SQL Server's ``AEAD_AES_256_CBC_HMAC_SHA256`` (documented in
:mod:`cleanroom.crypto._hazmat` and ``docs/formats.md``): a cell written here decrypts in
Microsoft's drivers, and a cell they write decrypts here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NoReturn

import numpy as np
import numpy.typing as npt

from cleanroom.crypto import _hazmat
from cleanroom.crypto.keys import ColumnEncryptionKey, as_key
from cleanroom.errors import DecryptionError


class EncryptionType(enum.IntEnum):
    """Always Encrypted encryption types (the values are the TDS/catalog codes)."""

    DETERMINISTIC = 1
    """Same plaintext, same cell: allows equality search, leaks equality."""
    RANDOMIZED = 2
    """A fresh random IV per cell: reveals nothing but length class. The safe default."""

    @classmethod
    def parse(cls, name: str | EncryptionType) -> EncryptionType:
        """``"Randomized"`` / ``"deterministic"`` / an ``EncryptionType`` → the member."""
        if isinstance(name, EncryptionType):
            return name
        try:
            return cls[str(name).strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown encryption type {name!r}: expected 'randomized' or 'deterministic'"
            ) from None


def _all_bytes(items: Sequence[object]) -> bool:
    """Whether every item is exactly ``bytes`` (one C-level pass, no Python loop)."""
    return set(map(type, items)) <= {bytes}


def _cells(cells: Sequence[object]) -> list[bytes]:
    """``cells`` as a list of ``bytes``; anything not bytes-like is a bad cell."""
    data = list(cells)
    if _all_bytes(data):
        return data  # type: ignore[return-value]  # checked: every item is bytes
    out = []
    for cell in data:
        if not isinstance(cell, bytes | bytearray | memoryview):
            raise DecryptionError()
        out.append(bytes(cell))
    return out


class CellCipher:
    """Encrypts and decrypts Always Encrypted cells under one column encryption key.

    ``CellCipher(cek, EncryptionType.RANDOMIZED).encrypt(value)`` — ``value`` is the
    already-normalized plaintext (see :func:`cleanroom.crypto.normalize`). Decryption works
    for both types (the cell does not say which one made it). Any malformed, truncated,
    tampered or foreign cell raises :class:`~cleanroom.errors.DecryptionError` with one
    fixed message.

    The batch forms are the fast path for whole columns; they preserve order. A
    ``decrypt_many`` that meets one bad cell raises for the whole batch.
    """

    __slots__ = ("_keys", "encryption_type")

    def __init__(
        self,
        cek: ColumnEncryptionKey | bytes,
        encryption_type: EncryptionType = EncryptionType.RANDOMIZED,
    ) -> None:
        key = as_key(cek)
        self._keys = _hazmat.derive_keys(key.secret_bytes())
        self.encryption_type = EncryptionType.parse(encryption_type)

    def encrypt(self, plaintext: bytes) -> bytes:
        """One cell for one normalized plaintext value."""
        return self.encrypt_many((plaintext,))[0]

    def decrypt(self, cell: bytes) -> bytes:
        """The normalized plaintext inside one cell."""
        return self.decrypt_many((cell,))[0]

    def encrypt_many(self, values: Sequence[bytes]) -> list[bytes]:
        """Cells for many plaintexts, batched (much faster than a loop of :meth:`encrypt`)."""
        data = list(values)
        for index, value in enumerate(data if not _all_bytes(data) else ()):
            if type(value) is not bytes:
                if not isinstance(value, bytes | bytearray | memoryview):
                    raise TypeError("CellCipher encrypts bytes; normalize typed values first")
                data[index] = bytes(value)
        if self.encryption_type is EncryptionType.DETERMINISTIC:
            return _hazmat.encrypt_cells(self._keys, data, _hazmat.SYNTHETIC_IVS)
        return _hazmat.encrypt_cells(self._keys, data, _hazmat.RANDOM_IVS)

    def decrypt_many(self, cells: Sequence[bytes]) -> list[bytes]:
        """Plaintexts of many cells, batched; raises if any one of them is bad."""
        plain = _hazmat.decrypt_cells(self._keys, _cells(cells))
        if plain is None:
            raise DecryptionError()
        return plain

    def decrypt_array(
        self, cells: Sequence[bytes]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """:meth:`decrypt_many` without a bytes object per cell: a ``uint8`` array with one
        row per cell (plaintext left-aligned, zero-filled to the longest padded width) and
        the plaintext lengths; raises if any cell is bad.

        Example: ``plain, lengths = cipher.decrypt_array(cells)``; when every length is 8
        (integer columns), ``plain[:, :8].copy().view("<i8").ravel()`` are the int64 values.
        """
        result = _hazmat.decrypt_cells_array(self._keys, _cells(cells))
        if result is None:
            raise DecryptionError()
        return result

    def decrypt_matrix(
        self, cells: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """:meth:`decrypt_array` for cells of one length held as the rows of a 2-D ``uint8``
        array (any strides, e.g. one column's slice of a batch of joined rows): no list of
        ``bytes``, no join. Every tag is checked before any decryption; raises if any cell
        is bad or ``cells`` is not a 2-D ``uint8`` array.
        """
        result = _hazmat.decrypt_cells_matrix(self._keys, cells)
        if result is None:
            raise DecryptionError()
        return result

    def __repr__(self) -> str:
        return f"CellCipher(<redacted key>, {self.encryption_type.name})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("cell ciphers hold key material and cannot be pickled")
