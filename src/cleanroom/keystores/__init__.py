"""Column master key providers behind one small protocol, :class:`KeyStore`.

* :class:`LocalKeyStore` — a private directory of PEM files (development, the demo);
* :class:`CertificateKeyStore` — a PFX, or a PEM certificate and key, addressed like SQL
  Server's ``MSSQL_CERTIFICATE_STORE`` (interoperates with Microsoft's drivers);
* :class:`Pkcs11KeyStore` — an HSM through PKCS#11; keys never leave the token.

Wrapping column encryption keys with them is :mod:`cleanroom.crypto.wrapping`.
"""

from cleanroom.keystores.base import (
    MIN_RSA_KEY_SIZE,
    RESERVED_PROVIDER_PREFIX,
    KeyStore,
    validate_provider_name,
)
from cleanroom.keystores.certificate import MSSQL_CERTIFICATE_STORE, CertificateKeyStore
from cleanroom.keystores.local import LocalKeyStore
from cleanroom.keystores.pkcs11 import Pkcs11KeyStore

__all__ = [
    "MIN_RSA_KEY_SIZE",
    "MSSQL_CERTIFICATE_STORE",
    "RESERVED_PROVIDER_PREFIX",
    "CertificateKeyStore",
    "KeyStore",
    "LocalKeyStore",
    "Pkcs11KeyStore",
    "validate_provider_name",
]
