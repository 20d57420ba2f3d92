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
(per block position, for encryption) with the XORs in numpy, and one-shot ``hmac.digest``
per cell — instead of a cipher object and an HMAC object per cell.
"""

from __future__ import annotations

import hmac
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
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


def synthetic_ivs(keys: DerivedKeys, values: Sequence[bytes]) -> list[bytes]:
    """Deterministic IVs: the first 16 bytes of HMAC-SHA256(iv_key, plaintext)."""
    iv_key = keys.iv_key
    return [hmac.digest(iv_key, value, "sha256")[:BLOCK] for value in values]


def random_ivs(count: int) -> list[bytes]:
    """Randomized IVs: 16 bytes each from the operating system's CSPRNG."""
    pool = os.urandom(BLOCK * count)
    return [pool[i : i + BLOCK] for i in range(0, BLOCK * count, BLOCK)]


def _pad(value: bytes) -> bytes:
    pad = BLOCK - len(value) % BLOCK
    return value + bytes((pad,)) * pad


def encrypt_cells(keys: DerivedKeys, values: Sequence[bytes], ivs: Sequence[bytes]) -> list[bytes]:
    """Encrypt ``values[i]`` with ``ivs[i]`` into Always Encrypted cells (order preserved)."""
    if len(values) != len(ivs):
        raise ValueError("one IV per value")
    out: list[bytes] = [b""] * len(values)
    groups: dict[int, list[int]] = defaultdict(list)
    for index, value in enumerate(values):
        groups[len(value) // BLOCK + 1].append(index)
    encryptor = Cipher(algorithms.AES(keys.enc_key), modes.ECB()).encryptor()  # noqa: S305 — CBC built by hand
    mac_key = keys.mac_key
    for blocks, indices in groups.items():
        for start in range(0, len(indices), CHUNK):
            chunk = indices[start : start + CHUNK]
            n = len(chunk)
            plain = np.frombuffer(b"".join(_pad(values[i]) for i in chunk), dtype=np.uint8)
            plain = plain.reshape(n, blocks, BLOCK)
            iv_bytes = b"".join(ivs[i] for i in chunk)
            body = np.empty((n, blocks + 1, BLOCK), dtype=np.uint8)
            body[:, 0, :] = np.frombuffer(iv_bytes, dtype=np.uint8).reshape(n, BLOCK)
            for j in range(blocks):
                mixed = np.bitwise_xor(plain[:, j, :], body[:, j, :])
                encrypted = encryptor.update(mixed.tobytes())
                body[:, j + 1, :] = np.frombuffer(encrypted, dtype=np.uint8).reshape(n, BLOCK)
            flat = body.tobytes()
            width = (blocks + 1) * BLOCK
            for k, index in enumerate(chunk):
                iv_and_ct = flat[k * width : (k + 1) * width]
                tag = hmac.digest(mac_key, _VERSION_BYTE + iv_and_ct + _VERSION_BYTE, "sha256")
                out[index] = _VERSION_BYTE + tag + iv_and_ct
    return out


def decrypt_cells(keys: DerivedKeys, cells: Sequence[bytes]) -> list[bytes] | None:
    """Decrypt Always Encrypted cells; ``None`` if any cell is malformed, tampered or foreign.

    Every tag is checked (all 32 bytes, constant time) before any AES work, so a padding
    error can only come from a cell that the key holder itself produced wrongly; callers
    turn ``None`` into one fixed error, so nothing tells one failure from another.
    """
    mac_key = keys.mac_key
    ok = True
    groups: dict[int, list[int]] = defaultdict(list)
    for index, cell in enumerate(cells):
        size = len(cell)
        if size < MIN_CELL_LENGTH or (size - HEADER_LENGTH) % BLOCK or cell[0] != VERSION:
            ok = False
            continue
        expected = hmac.digest(
            mac_key, _VERSION_BYTE + cell[1 + TAG_LENGTH :] + _VERSION_BYTE, "sha256"
        )
        ok &= hmac.compare_digest(expected, cell[1 : HEADER_LENGTH - BLOCK])
        groups[(size - HEADER_LENGTH) // BLOCK].append(index)
    if not ok:
        return None
    out: list[bytes] = [b""] * len(cells)
    decryptor = Cipher(algorithms.AES(keys.enc_key), modes.ECB()).decryptor()  # noqa: S305 — CBC built by hand
    positions = np.arange(BLOCK, dtype=np.int16)
    for blocks, indices in groups.items():
        for start in range(0, len(indices), CHUNK):
            chunk = indices[start : start + CHUNK]
            n = len(chunk)
            raw = b"".join(cells[i][1 + TAG_LENGTH :] for i in chunk)
            body = np.frombuffer(raw, dtype=np.uint8).reshape(n, blocks + 1, BLOCK)
            decrypted = decryptor.update(body[:, 1:, :].tobytes())
            plain = np.bitwise_xor(
                np.frombuffer(decrypted, dtype=np.uint8).reshape(n, blocks, BLOCK), body[:, :-1, :]
            )
            last = plain[:, -1, :]
            pad = last[:, -1].astype(np.int16)
            in_pad = positions[None, :] >= (BLOCK - pad)[:, None]
            valid = (pad >= 1) & (pad <= BLOCK) & np.all(~in_pad | (last == pad[:, None]), axis=1)
            if not bool(np.all(valid)):
                return None
            flat = plain.tobytes()
            width = blocks * BLOCK
            for k, index in enumerate(chunk):
                end = (k + 1) * width - int(pad[k])
                out[index] = flat[k * width : end]
    return out
