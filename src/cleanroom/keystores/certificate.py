"""A certificate and its private key, addressed the way SQL Server's certificate store is.

This provider reproduces ``MSSQL_CERTIFICATE_STORE`` of Microsoft's drivers so that keys
wrapped by SQL Server, SqlClient, JDBC or go-mssqldb unwrap here and the reverse. For that
reason, and only here, the provider name defaults to the reserved
``MSSQL_CERTIFICATE_STORE``: a peer driver reading our key metadata then finds the
certificate in its own store by the same key path. Pass another ``provider_name`` if the
keys are only ever read by cleanroom.

Key path: ``CurrentUser/My/<SHA-1 thumbprint>`` (``LocalMachine`` is accepted too; only the
``My`` store exists off Windows), compared case-insensitively. The store holds one
certificate and is read-only.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.utils import CryptographyDeprecationWarning

from cleanroom.errors import DecryptionError, KeyStoreError
from cleanroom.keystores.base import (
    MIN_RSA_KEY_SIZE,
    oaep_sha1,
    validate_provider_name,
    verify_pkcs1_sha256,
)

#: The provider name of SQL Server's certificate store provider.
MSSQL_CERTIFICATE_STORE: Final = "MSSQL_CERTIFICATE_STORE"

_LOCATIONS: Final = {"currentuser": "CurrentUser", "localmachine": "LocalMachine"}
_HEX = frozenset("0123456789abcdef")


@contextmanager
def _tolerate_negative_serial() -> Iterator[None]:
    # SQL Server's own test certificate (and certificates made by old Windows tools) has
    # a negative serial number; cryptography warns about exactly that and nothing else is
    # silenced here.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"Parsed a serial number which wasn't positive",
            category=CryptographyDeprecationWarning,
        )
        yield


def _read(source: bytes | str | os.PathLike[str], what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as error:
        raise KeyStoreError(f"cannot read the {what} {str(source)!r}: {error.strerror}") from None


def _password(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return value.encode("utf-8")


class CertificateKeyStore:
    """One certificate and its RSA private key, under a SQL Server certificate key path.

    Build it with :meth:`from_pfx` (a PKCS#12 file and its password) or :meth:`from_pem`
    (a PEM certificate and a PEM private key). The certificate must match the key and the
    key must have at least 2048 bits. ``create_master_key`` is not supported: make the
    certificate with your PKI and load it.
    """

    def __init__(
        self,
        certificate: x509.Certificate,
        private_key: rsa.RSAPrivateKey,
        *,
        provider_name: str = MSSQL_CERTIFICATE_STORE,
    ) -> None:
        self._provider_name = validate_provider_name(
            provider_name, reserved_allowed=frozenset({MSSQL_CERTIFICATE_STORE})
        )
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise KeyStoreError("a column master key certificate needs an RSA private key")
        if private_key.key_size < MIN_RSA_KEY_SIZE:
            raise KeyStoreError(
                f"the certificate key has {private_key.key_size} bits; "
                f"column master keys need {MIN_RSA_KEY_SIZE} or more"
            )
        with _tolerate_negative_serial():
            public = certificate.public_key()
        if (
            not isinstance(public, rsa.RSAPublicKey)
            or public.public_numbers() != private_key.public_key().public_numbers()
        ):
            raise KeyStoreError("the certificate does not belong to the private key")
        self._certificate = certificate
        self._key = private_key
        self._thumbprint = certificate.fingerprint(hashes.SHA1()).hex()  # noqa: S303

    @classmethod
    def from_pfx(
        cls,
        pfx: bytes | str | os.PathLike[str],
        *,
        password: str | bytes | None,
        provider_name: str = MSSQL_CERTIFICATE_STORE,
    ) -> CertificateKeyStore:
        """Load a PKCS#12 (``.pfx``/``.p12``) file (a path, or its bytes) with its password."""
        data = _read(pfx, "PFX file")
        try:
            with _tolerate_negative_serial():
                key, certificate, _chain = pkcs12.load_key_and_certificates(
                    data, _password(password)
                )
        except (ValueError, TypeError):
            raise KeyStoreError(
                "the PFX file does not load: wrong password or not a PKCS#12 file"
            ) from None
        if key is None or certificate is None:
            raise KeyStoreError("the PFX file must hold one certificate and its private key")
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyStoreError("the PFX file holds a non-RSA key")
        return cls(certificate, key, provider_name=provider_name)

    @classmethod
    def from_pem(
        cls,
        certificate: bytes | str | os.PathLike[str],
        private_key: bytes | str | os.PathLike[str],
        *,
        key_password: str | bytes | None = None,
        provider_name: str = MSSQL_CERTIFICATE_STORE,
    ) -> CertificateKeyStore:
        """Load a PEM certificate and a PEM private key (paths, or their bytes)."""
        cert_data = _read(certificate, "certificate file")
        key_data = _read(private_key, "private key file")
        try:
            with _tolerate_negative_serial():
                cert = x509.load_pem_x509_certificate(cert_data)
        except ValueError:
            raise KeyStoreError("the certificate is not a PEM X.509 certificate") from None
        try:
            key = serialization.load_pem_private_key(key_data, password=_password(key_password))
        except (ValueError, TypeError):
            raise KeyStoreError(
                "the private key does not load: wrong password or not a PEM private key"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyStoreError("the private key is not an RSA key")
        return cls(cert, key, provider_name=provider_name)

    @property
    def provider_name(self) -> str:
        """``MSSQL_CERTIFICATE_STORE`` unless another name was given."""
        return self._provider_name

    @property
    def thumbprint(self) -> str:
        """The certificate's SHA-1 thumbprint, lower-case hex."""
        return self._thumbprint

    @property
    def key_path(self) -> str:
        """The key path of this certificate: ``CurrentUser/My/<thumbprint>``."""
        return f"CurrentUser/My/{self._thumbprint}"

    @property
    def certificate(self) -> x509.Certificate:
        """The certificate (public)."""
        return self._certificate

    def create_master_key(self, key_path_or_name: str, *, key_size: int = 2048) -> str:
        """Not supported: a certificate store is read-only here."""
        raise KeyStoreError(
            "the certificate key store is read-only; create the certificate elsewhere "
            "and load it with CertificateKeyStore.from_pfx or from_pem"
        )

    def public_key(self, key_path: str) -> rsa.RSAPublicKey:
        """The certificate's public key, if ``key_path`` names this certificate."""
        self._check_path(key_path)
        return self._key.public_key()

    def decrypt(self, key_path: str, ciphertext: bytes) -> bytes:
        """RSA-OAEP (SHA-1) decryption with the certificate's private key."""
        self._check_path(key_path)
        try:
            return self._key.decrypt(ciphertext, oaep_sha1())
        except ValueError:
            raise DecryptionError() from None

    def sign(self, key_path: str, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 SHA-256 signature of ``data``."""
        self._check_path(key_path)
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def verify(self, key_path: str, data: bytes, signature: bytes) -> None:
        """Raise :class:`~cleanroom.errors.CryptoError` unless ``signature`` is valid."""
        verify_pkcs1_sha256(self.public_key(key_path), data, signature, key_path=key_path)

    def _check_path(self, key_path: str) -> None:
        if not isinstance(key_path, str):
            raise KeyStoreError("a certificate key path is a string")
        parts = key_path.split("/")
        if (
            len(parts) != 3
            or parts[0].lower() not in _LOCATIONS
            or parts[1].lower() != "my"
            or len(parts[2]) != 40
            or not set(parts[2].lower()) <= _HEX
        ):
            raise KeyStoreError(
                f"{key_path!r} is not a certificate key path like 'CurrentUser/My/<thumbprint>'"
            )
        if parts[2].lower() != self._thumbprint:
            raise KeyStoreError(
                f"no certificate with thumbprint {parts[2].lower()} in this store "
                f"(it holds {self._thumbprint})"
            )

    def __repr__(self) -> str:
        return (
            f"CertificateKeyStore(key_path={self.key_path!r}, "
            f"provider_name={self._provider_name!r})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("key stores cannot be pickled")


__all__ = ["MSSQL_CERTIFICATE_STORE", "CertificateKeyStore"]
