"""LocalKeyStore: a private directory of PEM keys."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from cleanroom.crypto import ColumnEncryptionKey
from cleanroom.crypto.wrapping import unwrap_cek, wrap_cek
from cleanroom.errors import ConfigurationError, CryptoError, DecryptionError, KeyStoreError
from cleanroom.keystores import KeyStore, LocalKeyStore
from cleanroom.keystores.base import oaep_sha1


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _drop_in(store: LocalKeyStore, name: str, data: bytes, mode: int = 0o600) -> None:
    path = store.directory / f"{name}.pem"
    path.write_bytes(data)
    path.chmod(mode)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> LocalKeyStore:
    store = LocalKeyStore(tmp_path_factory.mktemp("local") / "cmk")
    store.create_master_key("main")
    return store


def test_is_a_key_store(store: LocalKeyStore) -> None:
    assert isinstance(store, KeyStore)
    assert store.provider_name == "CLEANROOM_LOCAL_PEM"


def test_files_are_0600_in_a_0700_directory(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # the store must not depend on a careful umask
    try:
        store = LocalKeyStore(tmp_path / "keys")
        name = store.create_master_key("Fresh-Key_1.0")
    finally:
        os.umask(old_umask)
    assert name == "fresh-key_1.0"
    assert _mode(store.directory) == 0o700
    assert _mode(store.directory / "fresh-key_1.0.pem") == 0o600
    assert [p.name for p in store.directory.iterdir()] == ["fresh-key_1.0.pem"]  # no temp left
    assert store.key_names() == ["fresh-key_1.0"]


def test_keys_persist_and_paths_are_case_insensitive(store: LocalKeyStore) -> None:
    again = LocalKeyStore(store.directory)
    data = b"metadata to sign"
    signature = again.sign("MAIN", data)
    store.verify("main", data, signature)
    store.public_key("main").verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


def test_decrypts_oaep_sha1(store: LocalKeyStore) -> None:
    ciphertext = store.public_key("main").encrypt(b"k" * 32, oaep_sha1())
    assert store.decrypt("main", ciphertext) == b"k" * 32
    with pytest.raises(DecryptionError):
        store.decrypt("main", bytes(256))


def test_bad_signature_is_refused(store: LocalKeyStore) -> None:
    signature = bytearray(store.sign("main", b"data"))
    signature[0] ^= 1
    with pytest.raises(CryptoError, match="does not verify"):
        store.verify("main", b"data", bytes(signature))
    with pytest.raises(CryptoError):
        store.verify("main", b"other data", store.sign("main", b"data"))


def test_round_trip_wrap_unwrap(store: LocalKeyStore) -> None:
    cek = ColumnEncryptionKey.generate()
    assert unwrap_cek(wrap_cek(cek, store, "main"), store, "main") == cek


def test_existing_key_is_never_overwritten(store: LocalKeyStore) -> None:
    before = (store.directory / "main.pem").read_bytes()
    with pytest.raises(KeyStoreError, match="already exists"):
        store.create_master_key("MAIN")
    assert (store.directory / "main.pem").read_bytes() == before


@pytest.mark.parametrize(
    "name", ["", "../escape", "a/b", "..", ".hidden", "a b", "x" * 129, "k\x00", "ключ"]
)
def test_key_names_cannot_escape_the_directory(store: LocalKeyStore, name: str) -> None:
    with pytest.raises(KeyStoreError, match="local key name"):
        store.create_master_key(name)
    with pytest.raises(KeyStoreError, match="local key name"):
        store.public_key(name)


@pytest.mark.parametrize("size", [512, 1024, 2047, 2057])
def test_small_or_odd_key_sizes_are_refused(store: LocalKeyStore, size: int) -> None:
    with pytest.raises(KeyStoreError, match="bits"):
        store.create_master_key(f"k{size}", key_size=size)
    assert not (store.directory / f"k{size}.pem").exists()


def test_a_small_key_dropped_in_is_refused(store: LocalKeyStore) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    _drop_in(store, "small", _pem(small))
    with pytest.raises(KeyStoreError, match="1024 bits"):
        store.public_key("small")
    with pytest.raises(KeyStoreError, match="1024 bits"):
        wrap_cek(ColumnEncryptionKey.generate(), store, "small")


def test_non_rsa_and_broken_files_are_refused(store: LocalKeyStore) -> None:
    _drop_in(store, "ec", _pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(KeyStoreError, match="not an RSA key"):
        store.sign("ec", b"x")
    secret_looking = b"-----BEGIN PRIVATE KEY-----\nTOPSECRETBYTES\n-----END PRIVATE KEY-----\n"
    _drop_in(store, "broken", secret_looking)
    with pytest.raises(KeyStoreError) as caught:
        store.public_key("broken")
    assert "TOPSECRET" not in str(caught.value)
    with pytest.raises(KeyStoreError, match="no key named 'absent'"):
        store.decrypt("absent", bytes(256))


def test_a_key_file_readable_by_others_is_refused(store: LocalKeyStore) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _drop_in(store, "loose", _pem(key), mode=0o644)
    with pytest.raises(KeyStoreError, match="group or others"):
        store.public_key("loose")


def test_a_directory_open_to_others_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "open"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with pytest.raises(KeyStoreError, match="group or others"):
        LocalKeyStore(directory)
    file = tmp_path / "file"
    file.write_bytes(b"")
    with pytest.raises(KeyStoreError):
        LocalKeyStore(file)


@pytest.mark.parametrize("name", ["MSSQL_LOCAL", "mssql_anything", "MSSQL_CERTIFICATE_STORE"])
def test_reserved_provider_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigurationError, match="reserved"):
        LocalKeyStore(tmp_path / "k", provider_name=name)


def test_custom_provider_name(tmp_path: Path) -> None:
    assert LocalKeyStore(tmp_path / "k", provider_name="HOSPITAL_A").provider_name == "HOSPITAL_A"
    with pytest.raises(ConfigurationError):
        LocalKeyStore(tmp_path / "k", provider_name="has space")


def test_no_key_material_in_repr_and_no_pickling(store: LocalKeyStore) -> None:
    pem = (store.directory / "main.pem").read_text()
    body = "".join(pem.splitlines()[1:-1])
    text = repr(store)
    assert "LocalKeyStore" in text
    assert body[:40] not in text
    with pytest.raises(TypeError):
        pickle.dumps(store)
