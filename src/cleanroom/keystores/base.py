"""The :class:`KeyStore` protocol and what every column master key provider shares.

A column master key (CMK) is an RSA key pair (≥ 2048 bits) that lives in a key store. It
never encrypts data; it wraps column encryption keys (CEKs, see
:mod:`cleanroom.crypto.wrapping`) and signs the CMK metadata of enclave-enabled keys.
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cleanroom.errors import ConfigurationError, CryptoError, KeyStoreError

#: Provider names that start with this prefix belong to Microsoft's built-in providers.
RESERVED_PROVIDER_PREFIX: Final = "MSSQL_"

#: The smallest column master key accepted anywhere in cleanroom, in bits.
MIN_RSA_KEY_SIZE: Final = 2048

#: The largest key a store will generate, in bits (the blob format's length fields would
#: allow more; nothing needs it and generation would take minutes).
MAX_RSA_KEY_SIZE: Final = 8192

#: The public exponent of every key cleanroom generates.
PUBLIC_EXPONENT: Final = 65537


@runtime_checkable
class KeyStore(Protocol):
    """A provider of column master keys (RSA, ≥ 2048 bits), named by key paths.

    Guarantees every implementation gives:

    * The private key never leaves the store: callers get a public key, a decryption of
      a ciphertext they supply, or a signature over data they supply — never key bytes.
    * ``decrypt`` is RSAES-OAEP with SHA-1 and MGF1-SHA-1 and an empty label (what every
      Always Encrypted driver uses to wrap CEKs); ``sign`` is RSASSA-PKCS1-v1_5 with
      SHA-256 over ``data`` (the store hashes). Encryption (wrapping) needs only the
      public key, so it is not part of the protocol.
    * Errors are :class:`~cleanroom.errors.KeyStoreError` when a key cannot be found,
      created or used; :class:`~cleanroom.errors.DecryptionError` when a ciphertext does
      not decrypt; :class:`~cleanroom.errors.CryptoError` when a signature does not
      verify. No message, ``repr`` or log line carries key material, PINs or passwords.
    * ``provider_name`` is fixed at construction. Names starting with ``MSSQL_`` are
      reserved for Microsoft's providers and refused, except where a provider reproduces
      one of them byte for byte (see :class:`~cleanroom.keystores.CertificateKeyStore`).

    What it does not guarantee: that a key path means the same key in another process
    (paths are provider-specific names), or any access control beyond the provider's own
    (a file mode, a certificate password, a token PIN).
    """

    @property
    def provider_name(self) -> str:
        """The key store provider name recorded next to every key path."""
        ...

    def create_master_key(self, key_path_or_name: str, *, key_size: int = 2048) -> str:
        """Create a new RSA key pair in the store and return its key path.

        Read-only stores raise :class:`~cleanroom.errors.KeyStoreError`.
        """
        ...

    def public_key(self, key_path: str) -> rsa.RSAPublicKey:
        """The public half of the column master key at ``key_path``."""
        ...

    def decrypt(self, key_path: str, ciphertext: bytes) -> bytes:
        """RSAES-OAEP (SHA-1, MGF1-SHA-1, no label) decryption inside the store."""
        ...

    def sign(self, key_path: str, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 SHA-256 signature of ``data``, made inside the store."""
        ...

    def verify(self, key_path: str, data: bytes, signature: bytes) -> None:
        """Return if ``signature`` is a valid :meth:`sign` signature of ``data``; else raise."""
        ...


def validate_provider_name(name: str, *, reserved_allowed: frozenset[str] = frozenset()) -> str:
    """Check a custom key store provider name and return it.

    Names are 1–128 printable characters without whitespace and must not start with
    ``MSSQL_`` (in any case) unless listed in ``reserved_allowed``.
    """
    if not isinstance(name, str) or not name or len(name) > 128:
        raise ConfigurationError("a key store provider name is 1 to 128 characters")
    if not name.isprintable() or any(ch.isspace() for ch in name):
        raise ConfigurationError("a key store provider name has no spaces or control characters")
    if name.upper().startswith(RESERVED_PROVIDER_PREFIX) and name not in reserved_allowed:
        raise ConfigurationError(
            f"key store provider names starting with {RESERVED_PROVIDER_PREFIX!r} are reserved "
            f"for Microsoft's providers; choose another name than {name!r}"
        )
    return name


def check_key_size(key_size: int) -> None:
    """Refuse RSA key sizes below :data:`MIN_RSA_KEY_SIZE` (or absurdly large ones)."""
    if isinstance(key_size, bool) or not isinstance(key_size, int):
        raise KeyStoreError("the RSA key size is an integer number of bits")
    if key_size < MIN_RSA_KEY_SIZE:
        raise KeyStoreError(
            f"column master keys are RSA keys of at least {MIN_RSA_KEY_SIZE} bits, not {key_size}"
        )
    if key_size > MAX_RSA_KEY_SIZE or key_size % 8:
        raise KeyStoreError(
            f"RSA key size must be a multiple of 8 no larger than {MAX_RSA_KEY_SIZE} bits"
        )


def oaep_sha1() -> padding.OAEP:
    """The RSA-OAEP parameters of Always Encrypted: SHA-1, MGF1-SHA-1, empty label."""
    # SHA-1 here is what every Always Encrypted driver and SQL Server itself use; OAEP's
    # security does not rest on SHA-1's collision resistance.
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303


def verify_pkcs1_sha256(
    public_key: rsa.RSAPublicKey, data: bytes, signature: bytes, *, key_path: str
) -> None:
    """Verify an RSASSA-PKCS1-v1_5 SHA-256 signature; raise :class:`CryptoError` if bad."""
    try:
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise CryptoError(
            f"the signature does not verify under the column master key {key_path!r}"
        ) from None


__all__ = [
    "MAX_RSA_KEY_SIZE",
    "MIN_RSA_KEY_SIZE",
    "PUBLIC_EXPONENT",
    "RESERVED_PROVIDER_PREFIX",
    "KeyStore",
    "check_key_size",
    "oaep_sha1",
    "validate_provider_name",
    "verify_pkcs1_sha256",
]
