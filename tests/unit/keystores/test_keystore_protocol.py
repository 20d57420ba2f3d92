"""The KeyStore protocol, provider names, key sizes, and the public surface of the package."""

from __future__ import annotations

import pytest

import cleanroom.keystores
from cleanroom.errors import ConfigurationError, KeyStoreError
from cleanroom.keystores import KeyStore, validate_provider_name
from cleanroom.keystores.base import check_key_size


def test_public_surface_is_pinned() -> None:
    assert cleanroom.keystores.__all__ == [
        "MIN_RSA_KEY_SIZE",
        "MSSQL_CERTIFICATE_STORE",
        "RESERVED_PROVIDER_PREFIX",
        "CertificateKeyStore",
        "KeyStore",
        "LocalKeyStore",
        "Pkcs11KeyStore",
        "validate_provider_name",
    ]
    for name in cleanroom.keystores.__all__:
        assert getattr(cleanroom.keystores, name) is not None


def test_protocol_documents_its_guarantees() -> None:
    doc = KeyStore.__doc__ or ""
    assert "never leaves the store" in doc
    assert "OAEP" in doc
    assert "MSSQL_" in doc


def test_an_object_missing_a_method_is_not_a_key_store() -> None:
    class SignsOnly:
        provider_name = "X"

        def sign(self, key_path: str, data: bytes) -> bytes:
            return b""

    assert not isinstance(SignsOnly(), KeyStore)


@pytest.mark.parametrize("name", ["CLEANROOM_LOCAL_PEM", "HOSPITAL_A", "x", "MSSQL", "AMSSQL_X"])
def test_acceptable_provider_names(name: str) -> None:
    assert validate_provider_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "MSSQL_",
        "MSSQL_CERTIFICATE_STORE",
        "mssql_custom",
        "Mssql_Custom",
        "",
        "a b",
        "x\n",
        "x" * 129,
    ],
)
def test_refused_provider_names(name: str) -> None:
    with pytest.raises(ConfigurationError):
        validate_provider_name(name)


def test_a_reserved_name_is_allowed_only_where_listed() -> None:
    allowed = frozenset({"MSSQL_CERTIFICATE_STORE"})
    assert validate_provider_name("MSSQL_CERTIFICATE_STORE", reserved_allowed=allowed)
    with pytest.raises(ConfigurationError):
        validate_provider_name("MSSQL_CNG_STORE", reserved_allowed=allowed)


@pytest.mark.parametrize("size", [2048, 3072, 4096, 8192])
def test_key_sizes_accepted(size: int) -> None:
    check_key_size(size)


@pytest.mark.parametrize("size", [0, 1024, 2040, 2049, 8200, True])
def test_key_sizes_refused(size: int) -> None:
    with pytest.raises(KeyStoreError):
        check_key_size(size)
