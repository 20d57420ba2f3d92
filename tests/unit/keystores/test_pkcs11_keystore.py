"""Pkcs11KeyStore against a real PKCS#11 module: SoftHSM2 with a token made for these tests.

Locally these tests skip when SoftHSM2 is not installed; under ``CI=true`` they fail.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from pkcs11 import Attribute, KeyType, ObjectClass

from cleanroom.crypto import ColumnEncryptionKey
from cleanroom.crypto.wrapping import (
    sign_cmk_metadata,
    unwrap_cek,
    verify_cmk_metadata,
    wrap_cek,
)
from cleanroom.errors import (
    ConfigurationError,
    CryptoError,
    DecryptionError,
    KeyStoreError,
    KeyWrapError,
)
from cleanroom.keystores import KeyStore, Pkcs11KeyStore
from cleanroom.keystores.base import oaep_sha1

DOC = Path(__file__).parents[3] / "docs" / "keys.md"
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN = "cleanroom"  # the label docs/keys.md uses
PIN = "user-pin-4821"
SO_PIN = "so-pin-9137"


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh SoftHSM2 token in a temporary directory; yields the module path."""
    util = shutil.which("softhsm2-util")
    if not SOFTHSM_MODULE.is_file() or util is None:
        reason = f"SoftHSM2 is not installed ({SOFTHSM_MODULE}; apt-get install softhsm2)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("softhsm")
    tokens = directory / "tokens"
    tokens.mkdir()
    config = directory / "softhsm2.conf"
    config.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(config))
        subprocess.run(
            [util, "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN],
            check=True,
            capture_output=True,
        )
        # SoftHSM2 reads its configuration when the module is initialized; start afresh
        # in case another test loaded it with another configuration. (The store loads
        # modules by their real path, so this is the same library object.)
        pkcs11.lib(os.path.realpath(SOFTHSM_MODULE)).reinitialize()
        yield str(SOFTHSM_MODULE)


@pytest.fixture
def store(token: str) -> Iterator[Pkcs11KeyStore]:
    with Pkcs11KeyStore(token, TOKEN, PIN) as store:
        yield store


@pytest.fixture(scope="module")
def cmk(token: str) -> str:
    """One key generated on the token, shared by the tests that only use it."""
    with Pkcs11KeyStore(token, TOKEN, PIN) as store:
        return store.create_master_key("shared-cmk")


def test_is_a_key_store(store: Pkcs11KeyStore) -> None:
    assert isinstance(store, KeyStore)
    assert store.provider_name == "CLEANROOM_PKCS11"
    assert store.token_label == TOKEN


def test_generated_private_key_is_non_extractable(token: str, store: Pkcs11KeyStore) -> None:
    label = store.create_master_key("Not-Extractable")
    assert label == "not-extractable"
    # Inspect the key with a session of our own (the login is the process's).
    session = pkcs11.lib(os.path.realpath(token)).get_token(token_label=TOKEN).open()
    try:
        private = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, label=label)
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.TOKEN] is True
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            private[Attribute.PRIVATE_EXPONENT]
    finally:
        session.close()


def test_oaep_sha1_decrypt_and_sha256_sign_on_the_token(cmk: str, store: Pkcs11KeyStore) -> None:
    public = store.public_key(cmk)
    assert public.key_size == 2048
    assert public.public_numbers().e == 65537
    ciphertext = public.encrypt(b"c" * 32, oaep_sha1())
    assert store.decrypt(cmk, ciphertext) == b"c" * 32
    signature = store.sign(cmk, b"signed data")
    public.verify(signature, b"signed data", padding.PKCS1v15(), hashes.SHA256())
    store.verify(cmk, b"signed data", signature)
    with pytest.raises(CryptoError, match="does not verify"):
        store.verify(cmk, b"other data", signature)


def test_decrypt_of_garbage_is_opaque(cmk: str, store: Pkcs11KeyStore) -> None:
    with pytest.raises(DecryptionError) as caught:
        store.decrypt(cmk, bytes(256))
    assert str(caught.value) == DecryptionError.MESSAGE


def test_round_trip_wrap_unwrap_and_metadata(cmk: str, store: Pkcs11KeyStore) -> None:
    cek = ColumnEncryptionKey.generate()
    blob = wrap_cek(cek, store, cmk)
    assert unwrap_cek(blob, store, cmk.upper()) == cek
    signature = sign_cmk_metadata(store, cmk, allow_enclave_computations=True)
    verify_cmk_metadata(store, cmk, signature, allow_enclave_computations=True)


def test_wrong_cmk_on_the_token_is_refused(cmk: str, store: Pkcs11KeyStore) -> None:
    other = store.create_master_key("other-cmk")
    blob = wrap_cek(ColumnEncryptionKey.generate(), store, cmk)
    with pytest.raises(KeyWrapError, match="signature does not verify"):
        unwrap_cek(blob, store, other)


def test_duplicates_small_keys_and_missing_keys_are_refused(
    cmk: str, store: Pkcs11KeyStore
) -> None:
    with pytest.raises(KeyStoreError, match="already exists"):
        store.create_master_key(cmk)
    with pytest.raises(KeyStoreError, match="at least 2048"):
        store.create_master_key("too-small", key_size=1024)
    with pytest.raises(KeyStoreError, match="no RSA private key labelled 'absent'"):
        store.sign("absent", b"x")
    with pytest.raises(KeyStoreError, match="no RSA private key labelled 'absent'"):
        store.public_key("absent")
    with pytest.raises(KeyStoreError, match="PKCS#11 key label"):
        store.decrypt("../bad label", bytes(256))


def test_a_second_store_shares_the_login_but_must_know_the_pin(
    cmk: str, store: Pkcs11KeyStore, token: str
) -> None:
    with Pkcs11KeyStore(token, TOKEN, PIN) as second:
        assert second.public_key(cmk).public_numbers() == store.public_key(cmk).public_numbers()
    # Closing the second store leaves the first one working.
    store.sign(cmk, b"still logged in")
    with pytest.raises(KeyStoreError, match=r"PIN .* is incorrect") as caught:
        Pkcs11KeyStore(token, TOKEN, "wrong-pin-5555")
    assert "5555" not in str(caught.value)
    assert PIN not in str(caught.value)


def test_wrong_pin_on_a_fresh_login_is_refused(token: str) -> None:
    with pytest.raises(KeyStoreError, match=r"PIN .* is incorrect") as caught:
        Pkcs11KeyStore(token, TOKEN, "wrong-pin-6666")
    assert "6666" not in str(caught.value)


def test_construction_fails_early(token: str, tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="no PKCS#11 module"):
        Pkcs11KeyStore(tmp_path / "absent.so", TOKEN, PIN)
    with pytest.raises(KeyStoreError, match="no PKCS#11 token labelled 'absent'"):
        Pkcs11KeyStore(token, "absent", PIN)
    with pytest.raises(ConfigurationError, match="reserved"):
        Pkcs11KeyStore(token, TOKEN, PIN, provider_name="MSSQL_HSM")


def test_closed_store_is_unusable(cmk: str, token: str) -> None:
    store = Pkcs11KeyStore(token, TOKEN, PIN)
    store.close()
    store.close()  # idempotent
    with pytest.raises(KeyStoreError, match="closed"):
        store.sign(cmk, b"x")


def test_the_docs_example_runs(token: str) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    example = next(b for b in blocks if "Pkcs11KeyStore(" in b)
    namespace: dict[str, object] = {"pin": PIN}
    exec(compile(example, str(DOC), "exec"), namespace)  # noqa: S102
    assert namespace["key_path"] == "hospital-a-cmk"


def test_pin_is_redacted_and_pickling_is_refused(store: Pkcs11KeyStore) -> None:
    text = repr(store)
    assert PIN not in text
    assert "pin=<redacted>" in text
    with pytest.raises(TypeError):
        pickle.dumps(store)
