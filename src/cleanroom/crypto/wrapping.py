"""Column encryption keys wrapped by column master keys, and the CMK metadata signature.

A column encryption key (CEK) is stored only wrapped by a column master key (CMK) held in
a :class:`~cleanroom.keystores.KeyStore`, as the Always Encrypted ``ENCRYPTED_VALUE``
blob (``CREATE COLUMN ENCRYPTION KEY … ENCRYPTED_VALUE = 0x01…``, algorithm ``RSA_OAEP``).
All integers are little-endian::

    offset        field             size
    0             version           1      0x01
    1             key_path_length   2      bytes of the UTF-16LE key path
    3             ciphertext_length 2      = the CMK's RSA modulus size (256 for RSA-2048)
    5             key_path          kpl    UTF-16LE, no NUL; written lower-cased here
    5+kpl         ciphertext        ctl    RSAES-OAEP(SHA-1, MGF1-SHA-1, no label) of the CEK
    5+kpl+ctl     signature         ctl    RSASSA-PKCS1-v1_5 SHA-256 over bytes [0, 5+kpl+ctl)

The key path inside the blob is informational (drivers never check it against the CMK
they use); SQL Server itself keeps the path's case while most drivers lower-case it, so
the signature is always checked over the bytes as found. :func:`unwrap_cek` checks the
format strictly, verifies the signature *before* decrypting, and accepts only a 32-byte
CEK. A CEK may carry two wrapped values during CMK rotation (old and new CMK);
:func:`unwrap_any` tries each.

The CMK metadata signature (``CREATE COLUMN MASTER KEY … ENCLAVE_COMPUTATIONS (SIGNATURE
= 0x…)``) binds a CMK's provider name and key path to the decision that the CMK may be used
by enclaves; a client verifies it before any CEK under that CMK is sent to an enclave::

    message   = UTF-16LE(lower(provider_name + key_path + ("true" | "false")))
    signature = RSASSA-PKCS1-v1_5 SHA-256 of message, by the CMK
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from cleanroom.crypto.keys import CEK_LENGTH, ColumnEncryptionKey, as_key
from cleanroom.errors import CryptoError, DecryptionError, KeyStoreError, KeyWrapError
from cleanroom.keystores.base import MIN_RSA_KEY_SIZE, KeyStore, oaep_sha1

#: Version byte of the wrapped-CEK blob.
WRAPPED_CEK_VERSION: Final = 0x01

#: The key encryption algorithm name recorded with each wrapped value.
KEY_ENCRYPTION_ALGORITHM: Final = "RSA_OAEP"

#: At most this many wrapped values per CEK (SQL Server's limit: one old, one new CMK).
MAX_WRAPPED_VALUES: Final = 2

_HEADER = struct.Struct("<BHH")
_MIN_MODULUS_BYTES = MIN_RSA_KEY_SIZE // 8


@dataclass(frozen=True, slots=True)
class ParsedWrappedCek:
    """The fields of a wrapped-CEK blob, as found (nothing here is verified)."""

    key_path: str
    """The key path written in the blob (informational; case as found)."""
    ciphertext: bytes = field(repr=False)
    """RSA-OAEP ciphertext of the CEK (as long as the CMK's modulus)."""
    signature: bytes = field(repr=False)
    """The CMK's PKCS#1 v1.5 SHA-256 signature over :attr:`signed_bytes`."""
    signed_bytes: bytes = field(repr=False)
    """The blob up to the signature: what the signature covers."""


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """One wrapped value of a CEK, with the CMK metadata needed to unwrap it.

    This is a row of ``sys.column_encryption_key_values`` joined with its column master
    key, or one value of a TDS CEK table entry.
    """

    encrypted_value: bytes = field(repr=False)
    """The wrapped-CEK blob."""
    provider_name: str
    """The key store provider name of the CMK (e.g. ``MSSQL_CERTIFICATE_STORE``)."""
    key_path: str
    """The CMK's key path in that key store."""
    algorithm: str = KEY_ENCRYPTION_ALGORITHM
    """The key encryption algorithm; only ``RSA_OAEP`` exists."""


#: How :func:`unwrap_any` finds the key store of a provider name.
KeyStoreResolver = Mapping[str, KeyStore] | Callable[[str], KeyStore | None]


def parse_wrapped_cek(blob: bytes) -> ParsedWrappedCek:
    """Split a wrapped-CEK blob into its fields, checking the layout strictly.

    Raises :class:`~cleanroom.errors.KeyWrapError` if the version is not 0x01, a length is
    impossible (odd or empty key path, ciphertext shorter than an RSA-2048 modulus), the
    total length is not exactly header + path + 2 × ciphertext, or the path is not UTF-16LE.
    The signature is not checked here; use :func:`unwrap_cek`.
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise KeyWrapError("a wrapped column encryption key is bytes")
    blob = bytes(blob)
    if len(blob) < _HEADER.size:
        raise KeyWrapError(f"the wrapped CEK is truncated ({len(blob)} bytes)")
    version, path_length, ciphertext_length = _HEADER.unpack_from(blob)
    if version != WRAPPED_CEK_VERSION:
        raise KeyWrapError(
            f"unsupported wrapped CEK version 0x{version:02x} "
            f"(expected 0x{WRAPPED_CEK_VERSION:02x})"
        )
    if path_length == 0 or path_length % 2:
        raise KeyWrapError(
            f"the wrapped CEK's key path length ({path_length} bytes) is not valid UTF-16"
        )
    if ciphertext_length < _MIN_MODULUS_BYTES:
        raise KeyWrapError(
            f"the wrapped CEK's ciphertext length ({ciphertext_length} bytes) is shorter "
            f"than an RSA-{MIN_RSA_KEY_SIZE} modulus"
        )
    expected = _HEADER.size + path_length + 2 * ciphertext_length
    if len(blob) != expected:
        raise KeyWrapError(
            f"the wrapped CEK is {len(blob)} bytes but its length fields say {expected}"
        )
    path_end = _HEADER.size + path_length
    signed_end = path_end + ciphertext_length
    try:
        key_path = blob[_HEADER.size : path_end].decode("utf-16-le")
    except UnicodeDecodeError:
        raise KeyWrapError("the wrapped CEK's key path is not valid UTF-16LE") from None
    return ParsedWrappedCek(
        key_path=key_path,
        ciphertext=blob[path_end:signed_end],
        signature=blob[signed_end:],
        signed_bytes=blob[:signed_end],
    )


def wrap_cek(cek: ColumnEncryptionKey | bytes, key_store: KeyStore, key_path: str) -> bytes:
    """Wrap ``cek`` under the column master key ``key_path`` of ``key_store``.

    Encrypts with the CMK's public key (RSA-OAEP SHA-1), writes the lower-cased key path,
    and has the key store sign the blob. Returns the ``ENCRYPTED_VALUE`` bytes. Errors of
    the key store propagate as :class:`~cleanroom.errors.KeyStoreError`.
    """
    key = as_key(cek)
    if not isinstance(key_path, str) or not key_path:
        raise KeyWrapError("a column master key path is a non-empty string")
    path_bytes = key_path.lower().encode("utf-16-le")
    if len(path_bytes) > 0xFFFF:
        raise KeyWrapError("the column master key path is too long for the wrapped-CEK format")
    public_key = key_store.public_key(key_path)
    if public_key.key_size < MIN_RSA_KEY_SIZE:
        raise KeyWrapError(
            f"the column master key {key_path!r} has {public_key.key_size} bits; "
            f"at least {MIN_RSA_KEY_SIZE} are needed"
        )
    ciphertext = public_key.encrypt(key.secret_bytes(), oaep_sha1())
    signed = _HEADER.pack(WRAPPED_CEK_VERSION, len(path_bytes), len(ciphertext)) + path_bytes
    signed += ciphertext
    signature = key_store.sign(key_path, signed)
    if len(signature) != len(ciphertext):
        raise KeyWrapError(
            f"the key store returned a {len(signature)}-byte signature for a "
            f"{len(ciphertext)}-byte modulus"
        )
    return signed + signature


def unwrap_cek(blob: bytes, key_store: KeyStore, key_path: str) -> ColumnEncryptionKey:
    """Verify and unwrap a wrapped-CEK blob with the CMK ``key_path`` of ``key_store``.

    Order: parse strictly; check the ciphertext length against the CMK's modulus; verify
    the CMK's signature over the blob; only then decrypt, and require 32 bytes. Every
    failure raises :class:`~cleanroom.errors.KeyWrapError` saying which step failed and
    never quoting key bytes.
    """
    parsed = parse_wrapped_cek(blob)
    try:
        public_key = key_store.public_key(key_path)
    except KeyStoreError as error:
        raise KeyWrapError(
            f"cannot unwrap the CEK with column master key {key_path!r}: {error}"
        ) from error
    modulus_bytes = (public_key.key_size + 7) // 8
    if len(parsed.ciphertext) != modulus_bytes:
        raise KeyWrapError(
            f"wrong column master key: the CEK was wrapped under a {len(parsed.ciphertext) * 8}"
            f"-bit key (path in blob: {parsed.key_path!r}), but {key_path!r} is "
            f"{public_key.key_size} bits"
        )
    try:
        key_store.verify(key_path, parsed.signed_bytes, parsed.signature)
    except CryptoError:
        raise KeyWrapError(
            f"the wrapped CEK's signature does not verify under column master key "
            f"{key_path!r} (path in blob: {parsed.key_path!r}): the blob was altered, or "
            "it was wrapped by another (wrong) column master key"
        ) from None
    except KeyStoreError as error:
        raise KeyWrapError(
            f"cannot verify the wrapped CEK with column master key {key_path!r}: {error}"
        ) from error
    try:
        material = key_store.decrypt(key_path, parsed.ciphertext)
    except DecryptionError:
        # A valid signature and a failed decryption means the CMK signed a blob it did
        # not encrypt: a broken writer, not a wrong key.
        raise KeyWrapError(
            f"the wrapped CEK's signature verified but its ciphertext does not decrypt "
            f"under column master key {key_path!r}"
        ) from None
    except KeyStoreError as error:
        raise KeyWrapError(
            f"cannot decrypt the wrapped CEK with column master key {key_path!r}: {error}"
        ) from error
    if len(material) != CEK_LENGTH:
        raise KeyWrapError(
            f"the unwrapped CEK is {len(material)} bytes; Always Encrypted keys are "
            f"{CEK_LENGTH} bytes"
        )
    return ColumnEncryptionKey.from_bytes(material)


def unwrap_any(values: Sequence[WrappedKey], key_stores: KeyStoreResolver) -> ColumnEncryptionKey:
    """Unwrap a CEK from any of its (at most two) wrapped values — CMK rotation.

    ``key_stores`` maps a provider name to a key store (a mapping, or a function returning
    ``None`` for unknown providers). Values are tried in order; the first that unwraps
    wins. If none does, :class:`~cleanroom.errors.KeyWrapError` lists why each failed.
    """
    if not values:
        raise KeyWrapError("the column encryption key has no wrapped values")
    if len(values) > MAX_WRAPPED_VALUES:
        raise KeyWrapError(
            f"a column encryption key has at most {MAX_WRAPPED_VALUES} wrapped values, "
            f"not {len(values)}"
        )
    failures: list[str] = []
    for value in values:
        where = f"{value.provider_name}:{value.key_path}"
        if value.algorithm.upper() != KEY_ENCRYPTION_ALGORITHM:
            failures.append(f"{where}: unsupported key encryption algorithm {value.algorithm!r}")
            continue
        store = _resolve(key_stores, value.provider_name)
        if store is None:
            failures.append(f"{where}: no key store for provider {value.provider_name!r}")
            continue
        try:
            return unwrap_cek(value.encrypted_value, store, value.key_path)
        except KeyWrapError as error:
            failures.append(f"{where}: {error}")
    raise KeyWrapError(
        f"none of the {len(values)} wrapped values of the CEK unwrapped: " + "; ".join(failures)
    )


def _resolve(key_stores: KeyStoreResolver, provider_name: str) -> KeyStore | None:
    if isinstance(key_stores, Mapping):
        store = key_stores.get(provider_name)
        if store is None:
            # Provider names are matched case-insensitively, as SQL Server does.
            wanted = provider_name.upper()
            store = next((s for n, s in key_stores.items() if n.upper() == wanted), None)
        return store
    return key_stores(provider_name)


def cmk_metadata_message(
    provider_name: str, key_path: str, *, allow_enclave_computations: bool
) -> bytes:
    """The bytes the CMK metadata signature covers (see the module docstring)."""
    flag = "true" if allow_enclave_computations else "false"
    return (provider_name + key_path + flag).lower().encode("utf-16-le")


def sign_cmk_metadata(
    key_store: KeyStore, key_path: str, *, allow_enclave_computations: bool
) -> bytes:
    """Sign a CMK's metadata with the CMK itself (done once, when the CMK is registered).

    The result is the ``ENCLAVE_COMPUTATIONS (SIGNATURE = …)`` value; the provider name is
    ``key_store.provider_name``.
    """
    message = cmk_metadata_message(
        key_store.provider_name, key_path, allow_enclave_computations=allow_enclave_computations
    )
    return key_store.sign(key_path, message)


def verify_cmk_metadata(
    key_store: KeyStore,
    key_path: str,
    signature: bytes,
    *,
    allow_enclave_computations: bool,
) -> None:
    """Check a CMK metadata signature; raise :class:`~cleanroom.errors.KeyWrapError` if bad.

    Call it with ``allow_enclave_computations=True`` before sending any CEK wrapped by
    this CMK to an enclave: it proves the CMK's owner enabled enclave use for exactly this
    provider name and key path.
    """
    message = cmk_metadata_message(
        key_store.provider_name, key_path, allow_enclave_computations=allow_enclave_computations
    )
    try:
        key_store.verify(key_path, message, bytes(signature))
    except CryptoError:
        raise KeyWrapError(
            f"the CMK metadata signature of {key_store.provider_name}:{key_path} does not "
            f"verify for allow_enclave_computations={allow_enclave_computations}"
        ) from None
    except KeyStoreError as error:
        raise KeyWrapError(
            f"cannot verify the CMK metadata signature of {key_path!r}: {error}"
        ) from error


__all__ = [
    "KEY_ENCRYPTION_ALGORITHM",
    "MAX_WRAPPED_VALUES",
    "WRAPPED_CEK_VERSION",
    "KeyStoreResolver",
    "ParsedWrappedCek",
    "WrappedKey",
    "cmk_metadata_message",
    "parse_wrapped_cek",
    "sign_cmk_metadata",
    "unwrap_any",
    "unwrap_cek",
    "verify_cmk_metadata",
    "wrap_cek",
]
