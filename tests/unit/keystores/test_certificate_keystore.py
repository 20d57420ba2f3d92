"""CertificateKeyStore against real key material from SQL Server and go-mssqldb."""

from __future__ import annotations

import datetime
import pickle
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from cleanroom.crypto import ColumnEncryptionKey
from cleanroom.crypto.cells import CellCipher, EncryptionType
from cleanroom.crypto.wrapping import parse_wrapped_cek, unwrap_cek, wrap_cek
from cleanroom.errors import ConfigurationError, DecryptionError, KeyStoreError
from cleanroom.keystores import MSSQL_CERTIFICATE_STORE, CertificateKeyStore, KeyStore

VECTORS = Path(__file__).parents[2] / "vectors" / "always_encrypted_keys"
PFX = VECTORS / "sqlclient-native-Certificate.pfx"
PFX_PASSWORD = "P@zzw0rD!SqlvN3x+"
NATIVE_THUMBPRINT = "b3c66ffbe1db57419792e24aa970455bfac30757"
GO_CERT = VECTORS / "go-mssqldb-always-encrypted_pub.pem"
GO_KEY = VECTORS / "go-mssqldb-always-encrypted.pem"
GO_THUMBPRINT = "0be978ba81eed610015fd8b7caef55f1614ca3b6"
NEGATIVE_SERIAL_WARNING = (
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)
GO_CEK = "0ff9e45335df3dec7be0649f741e6ea870e9d49d16fe4be7437ce22489f48ead"


@pytest.fixture(scope="module")
def native() -> CertificateKeyStore:
    return CertificateKeyStore.from_pfx(PFX, password=PFX_PASSWORD)


@pytest.fixture(scope="module")
def go() -> CertificateKeyStore:
    return CertificateKeyStore.from_pem(GO_CERT, GO_KEY)


def test_is_a_read_only_key_store(native: CertificateKeyStore) -> None:
    assert isinstance(native, KeyStore)
    assert native.provider_name == MSSQL_CERTIFICATE_STORE
    assert native.thumbprint == NATIVE_THUMBPRINT
    assert native.key_path == f"CurrentUser/My/{NATIVE_THUMBPRINT}"
    with pytest.raises(KeyStoreError, match="read-only"):
        native.create_master_key("anything")


def test_loading_the_negative_serial_certificate_is_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        store = CertificateKeyStore.from_pfx(PFX.read_bytes(), password=PFX_PASSWORD.encode())
    assert store.thumbprint == NATIVE_THUMBPRINT
    # The suppression is scoped to loading: cryptography still warns outside it.
    with pytest.warns(CryptographyDeprecationWarning, match="serial number"):
        pkcs12.load_key_and_certificates(PFX.read_bytes(), PFX_PASSWORD.encode())


@pytest.mark.parametrize("n", [1, 2, 3])
def test_unwraps_the_sql_server_native_blobs(native: CertificateKeyStore, n: int) -> None:
    blob = (VECTORS / f"sqlclient-native-FinalCell{n}.bin").read_bytes()
    plaintext = (VECTORS / f"sqlclient-native-Plaintext{n}.bin").read_bytes()
    assert unwrap_cek(blob, native, native.key_path).secret_bytes() == plaintext


def test_unwraps_the_go_mssqldb_blob_and_decrypts_its_cell(go: CertificateKeyStore) -> None:
    assert go.thumbprint == GO_THUMBPRINT
    blob = (VECTORS / "go-mssqldb-cekv.key").read_bytes()
    key_path = parse_wrapped_cek(blob).key_path
    assert key_path == f"currentuser/my/{GO_THUMBPRINT}"
    cek = unwrap_cek(blob, go, key_path)
    assert cek.secret_bytes().hex() == GO_CEK
    cell = (VECTORS / "go-mssqldb-column_value.enc").read_bytes()
    plaintext = CellCipher(cek, EncryptionType.RANDOMIZED).decrypt(cell)
    assert plaintext.decode("utf-16-le") == "12345     "


@pytest.mark.parametrize(
    "key_path",
    [
        f"CurrentUser/My/{NATIVE_THUMBPRINT}",
        f"currentuser/my/{NATIVE_THUMBPRINT.upper()}",
        f"LocalMachine/MY/{NATIVE_THUMBPRINT}",
    ],
)
def test_key_paths_compare_case_insensitively(native: CertificateKeyStore, key_path: str) -> None:
    blob = (VECTORS / "sqlclient-native-FinalCell3.bin").read_bytes()
    expected = (VECTORS / "sqlclient-native-Plaintext3.bin").read_bytes()
    assert unwrap_cek(blob, native, key_path).secret_bytes() == expected


@pytest.mark.parametrize(
    ("key_path", "message"),
    [
        (f"CurrentUser/My/{GO_THUMBPRINT}", "no certificate with thumbprint"),
        (f"CurrentUser/Root/{NATIVE_THUMBPRINT}", "not a certificate key path"),
        (f"Elsewhere/My/{NATIVE_THUMBPRINT}", "not a certificate key path"),
        (f"CurrentUser/My/{NATIVE_THUMBPRINT[:-1]}", "not a certificate key path"),
        (f"CurrentUser/My/{NATIVE_THUMBPRINT[:-1]}g", "not a certificate key path"),
        (NATIVE_THUMBPRINT, "not a certificate key path"),
    ],
)
def test_other_key_paths_are_refused(
    native: CertificateKeyStore, key_path: str, message: str
) -> None:
    with pytest.raises(KeyStoreError, match=message):
        native.public_key(key_path)
    with pytest.raises(KeyStoreError, match=message):
        native.sign(key_path, b"x")


def test_round_trip_with_a_certificate(go: CertificateKeyStore) -> None:
    cek = ColumnEncryptionKey.generate()
    blob = wrap_cek(cek, go, go.key_path)
    assert parse_wrapped_cek(blob).key_path == go.key_path.lower()
    assert unwrap_cek(blob, go, go.key_path) == cek


def test_decrypt_failure_is_opaque(native: CertificateKeyStore) -> None:
    with pytest.raises(DecryptionError) as caught:
        native.decrypt(native.key_path, bytes(256))
    assert str(caught.value) == DecryptionError.MESSAGE


def test_wrong_pfx_password_is_refused_without_echoing_it() -> None:
    with pytest.raises(KeyStoreError, match="wrong password") as caught:
        CertificateKeyStore.from_pfx(PFX, password="not-the-password-xyzzy")
    assert "xyzzy" not in str(caught.value)
    assert PFX_PASSWORD not in str(caught.value)


@pytest.mark.filterwarnings(NEGATIVE_SERIAL_WARNING)
def test_certificate_and_key_must_match(native: CertificateKeyStore) -> None:
    go_key = serialization.load_pem_private_key(GO_KEY.read_bytes(), password=None)
    assert isinstance(go_key, rsa.RSAPrivateKey)
    with pytest.raises(KeyStoreError, match="does not belong"):
        CertificateKeyStore(native.certificate, go_key)
    with pytest.raises(KeyStoreError, match="does not belong"):
        CertificateKeyStore.from_pem(GO_CERT, _native_key_pem())


def _native_key_pem() -> bytes:
    key, _cert, _chain = pkcs12.load_key_and_certificates(PFX.read_bytes(), PFX_PASSWORD.encode())
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_small_certificate_keys_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "small")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(small.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(small, hashes.SHA256())
    )
    with pytest.raises(KeyStoreError, match="1024 bits"):
        CertificateKeyStore(certificate, small)


def test_unreadable_or_malformed_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="cannot read"):
        CertificateKeyStore.from_pfx(tmp_path / "absent.pfx", password="x")
    with pytest.raises(KeyStoreError, match=r"not a PEM X\.509"):
        CertificateKeyStore.from_pem(GO_KEY, GO_KEY)
    with pytest.raises(KeyStoreError, match="private key does not load"):
        CertificateKeyStore.from_pem(GO_CERT, GO_CERT)


def test_provider_name_may_be_custom_but_not_another_reserved_one() -> None:
    custom = CertificateKeyStore.from_pem(GO_CERT, GO_KEY, provider_name="HOSPITAL_CERTS")
    assert custom.provider_name == "HOSPITAL_CERTS"
    with pytest.raises(ConfigurationError, match="reserved"):
        CertificateKeyStore.from_pem(GO_CERT, GO_KEY, provider_name="MSSQL_CNG_STORE")


def test_repr_names_the_path_only_and_pickling_is_refused(native: CertificateKeyStore) -> None:
    assert repr(native) == (
        f"CertificateKeyStore(key_path='CurrentUser/My/{NATIVE_THUMBPRINT}', "
        "provider_name='MSSQL_CERTIFICATE_STORE')"
    )
    with pytest.raises(TypeError):
        pickle.dumps(native)
