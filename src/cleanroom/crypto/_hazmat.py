"""Raw primitives of AEAD_AES_256_CBC_HMAC_SHA256 — private to ``cleanroom.crypto``.

This is the only module where an IV is a parameter. Application code uses
:class:`cleanroom.crypto.CellCipher`; a test fails if any package outside
``cleanroom.crypto`` imports this module.

Cell layout (SQL Server Always Encrypted, algorithm version 0x01)::

    cell = 0x01 ‖ tag(32) ‖ IV(16) ‖ AES-256-CBC(enc_key, IV, PKCS7(plaintext))
    tag  = HMAC-SHA256(mac_key, 0x01 ‖ IV ‖ ciphertext ‖ 0x01)

    enc_key = HMAC-SHA256(CEK, UTF-16LE(label("encryption key")))
    mac_key = HMAC-SHA256(CEK, UTF-16LE(label("MAC key")))
    iv_key  = HMAC-SHA256(CEK, UTF-16LE(label("IV key")))
    label(p) = "Microsoft SQL Server cell {p} with encryption algorithm:"
               "AEAD_AES_256_CBC_HMAC_SHA256 and key length:256"
    deterministic IV = HMAC-SHA256(iv_key, plaintext)[:16]; randomized IV = 16 CSPRNG bytes

Speed: CBC *decryption* is parallel across blocks, and CBC *encryption* of many cells is
parallel across cells. Both are done here as one AES-ECB call over all the blocks of a batch
(per block position, for encryption) with the XORs in numpy. Each tag copies one keyed
HMAC state made once per batch (``HMAC.copy()`` skips OpenSSL 3's per-object key setup and
algorithm fetch, about 2.5× faster than a fresh ``hmac.digest`` per cell). Cells of one
length that are already rows of an array (:func:`decrypt_cells_matrix`) skip the list,
the join and the per-cell length of the ``bytes`` forms.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ALGORITHM_NAME = "AEAD_AES_256_CBC_HMAC_SHA256"
VERSION = 0x01
_VERSION_BYTE = b"\x01"
BLOCK = 16
TAG_LENGTH = 32
HEADER_LENGTH = 1 + TAG_LENGTH + BLOCK  # version ‖ tag ‖ IV
MIN_CELL_LENGTH = HEADER_LENGTH + BLOCK  # 65: an empty plaintext still pads to one block

#: How many cells one internal batch holds (bounds the temporary numpy buffers).
CHUNK = 65_536


def _label(purpose: str) -> bytes:
    text = (
        f"Microsoft SQL Server cell {purpose} with encryption algorithm:{ALGORITHM_NAME}"
        " and key length:256"
    )
    return text.encode("utf-16-le")


_ENC_LABEL = _label("encryption key")
_MAC_LABEL = _label("MAC key")
_IV_LABEL = _label("IV key")


@dataclass(frozen=True, slots=True, repr=False)
class DerivedKeys:
    """The three keys derived from one CEK. Private: never leaves ``cleanroom.crypto``."""

    enc_key: bytes
    mac_key: bytes
    iv_key: bytes

    def __repr__(self) -> str:
        return "DerivedKeys(<redacted>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("derived keys cannot be pickled")


def derive_keys(cek: bytes) -> DerivedKeys:
    """Derive the encryption, MAC and IV keys from a 32-byte CEK (the CEK is the HMAC key)."""
    return DerivedKeys(
        enc_key=hmac.digest(cek, _ENC_LABEL, "sha256"),
        mac_key=hmac.digest(cek, _MAC_LABEL, "sha256"),
        iv_key=hmac.digest(cek, _IV_LABEL, "sha256"),
    )


def _keyed_hmac(key: bytes) -> crypto_hmac.HMAC:
    return crypto_hmac.HMAC(key, hashes.SHA256())


RANDOM_IVS: Final = "random"
SYNTHETIC_IVS: Final = "synthetic"
IvSource = Literal["random", "synthetic"] | Sequence[bytes]


def _ivs_for(keys: DerivedKeys, values: list[bytes], source: IvSource) -> bytes:
    """The IVs of one batch, concatenated."""
    if source == RANDOM_IVS:
        return os.urandom(BLOCK * len(values))
    if source == SYNTHETIC_IVS:
        copy = _keyed_hmac(keys.iv_key).copy
        ivs = []
        for value in values:
            state = copy()
            state.update(value)
            ivs.append(state.finalize()[:BLOCK])
        return b"".join(ivs)
    raise ValueError("unknown IV source")


def encrypt_cells(keys: DerivedKeys, values: Sequence[bytes], ivs: IvSource) -> list[bytes]:
    """Encrypt ``values`` into Always Encrypted cells, order preserved.

    ``ivs`` is ``"random"`` (CSPRNG), ``"synthetic"`` (deterministic encryption) or,
    for known-answer tests only, one explicit 16-byte IV per value.
    """
    explicit: Sequence[bytes] | None = None if isinstance(ivs, str) else ivs
    if explicit is not None and (
        len(explicit) != len(values) or any(len(iv) != BLOCK for iv in explicit)
    ):
        raise ValueError("one 16-byte IV per value")
    encryptor = Cipher(algorithms.AES(keys.enc_key), modes.ECB()).encryptor()  # noqa: S305 — CBC built by hand
    copy_mac = _keyed_hmac(keys.mac_key).copy
    out: list[bytes] = [b""] * len(values)
    for length, indices in _groups_by_length(values):
        for start in range(0, len(indices), CHUNK):
            chunk = indices[start : start + CHUNK]
            batch = _take(values, chunk)
            if explicit is not None:
                iv_bytes = b"".join(_take(explicit, chunk))
            else:
                iv_bytes = _ivs_for(keys, batch, ivs)
            cells = _encrypt_equal_length(encryptor, copy_mac, batch, length, iv_bytes)
            _put(out, chunk, cells)
    return out


def _take(values: Sequence[bytes], chunk: range | list[int]) -> list[bytes]:
    """``values[i] for i in chunk`` — a plain slice when ``chunk`` is a range."""
    if isinstance(chunk, range):
        return list(values[chunk.start : chunk.stop])
    return [values[i] for i in chunk]


def _put(out: list[bytes], chunk: range | list[int], items: list[bytes]) -> None:
    """``out[i] = item`` for ``chunk`` and ``items`` — a slice assignment for a range."""
    if isinstance(chunk, range):
        out[chunk.start : chunk.stop] = items
        return
    for index, item in zip(chunk, items, strict=True):
        out[index] = item


def _groups_by_length(values: Sequence[bytes]) -> list[tuple[int, range | list[int]]]:
    """Indices of ``values`` grouped by exact length (one group, a range, in the common case)."""
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    if len(lengths) == 0:
        return []
    if bool(np.all(lengths == lengths[0])):
        return [(int(lengths[0]), range(len(values)))]
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    starts = np.flatnonzero(np.diff(sorted_lengths)) + 1
    return [
        (int(sorted_lengths[first]), part.tolist())
        for first, part in zip(np.concatenate(([0], starts)), np.split(order, starts), strict=True)
    ]


def _tags(copy_mac: Any, messages: bytes, step: int) -> bytes:
    """HMAC-SHA256 of each ``step``-byte MAC input in ``messages``, concatenated."""
    tags: list[bytes] = []
    append = tags.append
    for offset in range(0, len(messages), step):
        state = copy_mac()
        state.update(messages[offset : offset + step])
        append(state.finalize())
    return b"".join(tags)


def _encrypt_equal_length(
    encryptor: Any, copy_mac: Any, batch: list[bytes], length: int, iv_bytes: bytes
) -> list[bytes]:
    n = len(batch)
    blocks = length // BLOCK + 1
    width = (blocks + 1) * BLOCK  # IV ‖ ciphertext
    plain = np.empty((n, blocks * BLOCK), dtype=np.uint8)
    if length:
        plain[:, :length] = np.frombuffer(b"".join(batch), dtype=np.uint8).reshape(n, length)
    plain[:, length:] = blocks * BLOCK - length  # PKCS7: 1..16 bytes of the pad length
    # MAC input per cell, built in place: 0x01 ‖ IV ‖ ciphertext ‖ 0x01.
    message = np.empty((n, width + 2), dtype=np.uint8)
    message[:, 0] = VERSION
    message[:, -1] = VERSION
    previous = np.frombuffer(iv_bytes, dtype=np.uint8).reshape(n, BLOCK)
    message[:, 1 : 1 + BLOCK] = previous
    for j in range(blocks):
        mixed = np.bitwise_xor(plain[:, j * BLOCK : (j + 1) * BLOCK], previous)
        previous = np.frombuffer(encryptor.update(mixed.tobytes()), dtype=np.uint8).reshape(
            n, BLOCK
        )
        message[:, 1 + (j + 1) * BLOCK : 1 + (j + 2) * BLOCK] = previous
    tags = _tags(copy_mac, message.tobytes(), width + 2)
    size = 1 + TAG_LENGTH + width
    cells = np.empty((n, size), dtype=np.uint8)
    cells[:, 0] = VERSION
    cells[:, 1 : 1 + TAG_LENGTH] = np.frombuffer(tags, dtype=np.uint8).reshape(n, TAG_LENGTH)
    cells[:, 1 + TAG_LENGTH :] = message[:, 1:-1]
    packed = cells.tobytes()
    return [packed[k : k + size] for k in range(0, n * size, size)]


def decrypt_cells(keys: DerivedKeys, cells: Sequence[bytes]) -> list[bytes] | None:
    """Decrypt Always Encrypted cells; ``None`` if any cell is malformed, tampered or foreign.

    Every tag is checked (all 32 bytes, constant time) before any AES work, so a padding
    error can only come from a cell that the key holder itself produced wrongly; callers
    turn ``None`` into one fixed error, so nothing tells one failure from another.
    """
    out: list[bytes] = [b""] * len(cells)
    for chunk, blocks in _decrypt_chunks(keys, cells):
        if blocks is None:
            return None
        plain, pad = blocks
        packed = plain.tobytes()
        width = plain.shape[1]
        ends = (np.arange(1, len(pad) + 1) * width - pad).tolist()
        _put(out, chunk, [packed[k * width : end] for k, end in enumerate(ends)])
    return out


def decrypt_cells_array(
    keys: DerivedKeys, cells: Sequence[bytes]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]] | None:
    """:func:`decrypt_cells` as one array: plaintexts left-aligned in rows of the longest
    padded width (zero-filled), and each plaintext's length; ``None`` as there.

    No per-cell Python object is made: fixed-width plaintexts (every integer type is 8
    bytes) are then read with one ``numpy`` view.
    """
    n = len(cells)
    parts: list[tuple[range | list[int], npt.NDArray[np.uint8], npt.NDArray[np.int64]]] = []
    for chunk, blocks in _decrypt_chunks(keys, cells):
        if blocks is None:
            return None
        plain, pad = blocks
        parts.append((chunk, plain, plain.shape[1] - pad))
    width = max((plain.shape[1] for _, plain, _ in parts), default=0)
    if len(parts) == 1 and len(parts[0][0]) == n:
        return parts[0][1], parts[0][2]
    out = np.zeros((n, width), dtype=np.uint8)
    lengths = np.zeros(n, dtype=np.int64)
    for chunk, plain, size in parts:
        rows = np.arange(chunk.start, chunk.stop) if isinstance(chunk, range) else np.array(chunk)
        out[rows, : plain.shape[1]] = plain
        lengths[rows] = size
    return out, lengths


def _decrypt_chunks(
    keys: DerivedKeys, cells: Sequence[bytes]
) -> Iterator[tuple[range | list[int], tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]] | None]]:
    """Per chunk of equal-length cells: its indices and (plaintext blocks, pad lengths),
    or ``None`` for the first chunk that fails (then nothing more)."""
    lengths = np.fromiter(map(len, cells), dtype=np.int64, count=len(cells))
    if bool(np.any((lengths < MIN_CELL_LENGTH) | ((lengths - HEADER_LENGTH) % BLOCK != 0))):
        yield range(0), None
        return
    decryptor = Cipher(algorithms.AES(keys.enc_key), modes.ECB()).decryptor()  # noqa: S305 — CBC built by hand
    copy_mac = _keyed_hmac(keys.mac_key).copy
    for length, indices in _groups_by_length(cells):
        for start in range(0, len(indices), CHUNK):
            chunk = indices[start : start + CHUNK]
            blocks = _decrypt_equal_length(decryptor, copy_mac, _take(cells, chunk), length)
            yield chunk, blocks
            if blocks is None:
                return


_POSITIONS = np.arange(BLOCK, dtype=np.int16)


def _decrypt_equal_length(
    decryptor: Any, copy_mac: Any, batch: list[bytes], length: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]] | None:
    """Plaintext blocks ``(n, blocks × 16)`` of equal-length cells and each one's pad length."""
    cells = np.frombuffer(b"".join(batch), dtype=np.uint8).reshape(len(batch), length)
    if not _tags_ok(copy_mac, cells):
        return None
    return _open_verified(decryptor, cells)


def _tags_ok(copy_mac: Any, cells: npt.NDArray[np.uint8]) -> bool:
    """Whether every row of ``cells`` (equal-length cells) has version 0x01 and its tag."""
    n, length = cells.shape
    # MAC input per cell: 0x01 ‖ IV ‖ ciphertext ‖ 0x01.
    message = np.empty((n, length - 1 - TAG_LENGTH + 2), dtype=np.uint8)
    message[:, 0] = VERSION
    message[:, -1] = VERSION
    message[:, 1:-1] = cells[:, 1 + TAG_LENGTH :]
    tags = _tags(copy_mac, message.tobytes(), message.shape[1])
    # One constant-time comparison over the whole batch: all 32 bytes of every tag.
    tags_ok = hmac.compare_digest(tags, cells[:, 1 : 1 + TAG_LENGTH].tobytes())
    return tags_ok and bool(np.all(cells[:, 0] == VERSION))


def _open_verified(
    decryptor: Any, cells: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]] | None:
    """CBC-decrypt rows of equal-length cells whose tags were checked; ``None`` on bad padding."""
    n, length = cells.shape
    blocks = (length - HEADER_LENGTH) // BLOCK
    body = cells[:, 1 + TAG_LENGTH :].reshape(n, blocks + 1, BLOCK)
    decrypted = decryptor.update(body[:, 1:, :].tobytes())
    plain = np.bitwise_xor(
        np.frombuffer(decrypted, dtype=np.uint8).reshape(n, blocks, BLOCK), body[:, :-1, :]
    )
    last = plain[:, -1, :]
    pad = last[:, -1].astype(np.int16)
    in_pad = _POSITIONS[None, :] >= (BLOCK - pad)[:, None]
    valid = (pad >= 1) & (pad <= BLOCK) & np.all(~in_pad | (last == pad[:, None]), axis=1)
    if not bool(np.all(valid)):
        return None
    return plain.reshape(n, blocks * BLOCK), pad.astype(np.int64)


def decrypt_cells_matrix(
    keys: DerivedKeys, cells: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]] | None:
    """:func:`decrypt_cells_array` for cells of one length given as the rows of a 2-D
    ``uint8`` array (any strides: e.g. a column sliced out of a batch of joined rows).

    No list of cells, no join and no per-cell length: the array's width is every cell's
    length. Every tag of every row is checked (constant time) before any AES work;
    ``None`` if anything is wrong (not a 2-D ``uint8`` array, a bad length, version, tag
    or padding), like :func:`decrypt_cells_array`.
    """
    if not isinstance(cells, np.ndarray) or cells.ndim != 2 or cells.dtype != np.uint8:
        return None
    n, length = cells.shape
    if n == 0:
        return np.zeros((0, 0), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    if length < MIN_CELL_LENGTH or (length - HEADER_LENGTH) % BLOCK != 0:
        return None
    copy_mac = _keyed_hmac(keys.mac_key).copy
    chunks = [cells[start : start + CHUNK] for start in range(0, n, CHUNK)]
    # No early exit: every chunk's tags are computed whatever an earlier chunk gave.
    verified = [_tags_ok(copy_mac, chunk) for chunk in chunks]
    if not all(verified):
        return None
    decryptor = Cipher(algorithms.AES(keys.enc_key), modes.ECB()).decryptor()  # noqa: S305 — CBC built by hand
    parts = []
    for chunk in chunks:
        part = _open_verified(decryptor, chunk)
        if part is None:
            return None
        parts.append(part)
    plain = parts[0][0] if len(parts) == 1 else np.concatenate([p for p, _ in parts])
    pad = parts[0][1] if len(parts) == 1 else np.concatenate([d for _, d in parts])
    return plain, plain.shape[1] - pad
