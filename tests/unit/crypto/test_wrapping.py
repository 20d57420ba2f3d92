"""CEK wrapping (the ENCRYPTED_VALUE blob), rotation and the CMK metadata signature."""

from __future__ import annotations

import functools
import hashlib
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import event, given, settings
from hypothesis import strategies as st

from cleanroom.crypto import ColumnEncryptionKey
from cleanroom.crypto.wrapping import (
    KeyStoreResolver,
    ParsedWrappedCek,
    WrappedKey,
    cmk_metadata_message,
    parse_wrapped_cek,
    sign_cmk_metadata,
    unwrap_any,
    unwrap_cek,
    verify_cmk_metadata,
    wrap_cek,
)
from cleanroom.errors import KeyStoreError, KeyWrapError
from cleanroom.keystores import CertificateKeyStore, KeyStore, LocalKeyStore
from cleanroom.keystores.base import oaep_sha1

VECTORS = Path(__file__).parents[2] / "vectors" / "always_encrypted_keys"
PFX_PASSWORD = "P@zzw0rD!SqlvN3x+"
NATIVE_PATH = "CurrentUser/My/b3c66ffbe1db57419792e24aa970455bfac30757"
# §2.4 of the reference: PKCS#1 v1.5 is deterministic, so this signature is exact.
METADATA_SIGNATURE_TRUE = bytes.fromhex(
    "0611b443d331cb570cfd3629c48ebf33ac6c5265a626360adbb490188e2e2fa20e8619da4275cf7eb15e1d911cf1"
    "3b85390f2c6d4f87665f1a19a4a479161f088c686dc5835980b84267d6646004e6e00276ea69dc8c708747d6deca"
    "8ae9a0b62009d97a8b2a902d9133424ce481b9fca5c291d243d8d1775805326029a41f0c50ff381ad946f284aff8"
    "0a8d5071044dfd2c3e24c564416c46dc9ce1420747a0cc7d62f1da1866247f36aa4ab586676501fd8fa266900fb2"
    "7406685e316cec0ce764055efea02121ea2a2409f59e04033b864865fdf4a23f2d3172b7b9e9b70cf83e432bd4c4"
    "0a0085736e2ac8ff3dcb6739cde6189abb3913cbb2a9074215e5"
)


def _assert_no_secret(error: BaseException, *secrets: bytes) -> None:
    """No secret appears in the error, its repr, or anything it chains to."""
    seen: BaseException | None = error
    while seen is not None:
        for text in (str(seen), repr(seen)):
            for secret in secrets:
                assert secret.hex() not in text.lower()
                assert repr(secret) not in text
        seen = seen.__cause__ or seen.__context__


@functools.cache
def _native_store() -> CertificateKeyStore:
    # Loading the PFX runs its password KDF; hypothesis examples share one store.
    return CertificateKeyStore.from_pfx(
        VECTORS / "sqlclient-native-Certificate.pfx", password=PFX_PASSWORD
    )


@pytest.fixture(scope="module")
def native_store() -> CertificateKeyStore:
    return _native_store()


@pytest.fixture(scope="module")
def native_blob() -> bytes:
    return (VECTORS / "sqlclient-native-FinalCell1.bin").read_bytes()


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> LocalKeyStore:
    store = LocalKeyStore(tmp_path_factory.mktemp("cmk") / "keys")
    store.create_master_key("cmk-old")
    store.create_master_key("cmk-new")
    return store


# --- the real blobs -------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3])
def test_sql_server_native_blobs_unwrap(native_store: CertificateKeyStore, n: int) -> None:
    blob = (VECTORS / f"sqlclient-native-FinalCell{n}.bin").read_bytes()
    expected = (VECTORS / f"sqlclient-native-Plaintext{n}.bin").read_bytes()
    cek = unwrap_cek(blob, native_store, NATIVE_PATH)
    assert isinstance(cek, ColumnEncryptionKey)
    assert cek.secret_bytes() == expected


def test_parse_native_blob_keeps_the_path_as_found(native_blob: bytes) -> None:
    parsed = parse_wrapped_cek(native_blob)
    assert parsed.key_path == NATIVE_PATH  # mixed case, as SQL Server wrote it
    assert len(parsed.ciphertext) == 256
    assert len(parsed.signature) == 256
    assert parsed.signed_bytes == native_blob[:371]
    assert parsed.ciphertext.hex() not in repr(parsed)


# --- our own blobs ----------------------------------------------------------------------


def test_wrap_writes_the_documented_layout(local_store: LocalKeyStore) -> None:
    cek = ColumnEncryptionKey.generate()
    blob = wrap_cek(cek, local_store, "CMK-Old")
    path = "cmk-old".encode("utf-16-le")
    assert blob[0] == 0x01
    assert struct.unpack_from("<HH", blob, 1) == (len(path), 256)
    assert blob[5 : 5 + len(path)] == path  # lower-cased UTF-16LE
    assert len(blob) == 5 + len(path) + 2 * 256
    ciphertext = blob[5 + len(path) : 5 + len(path) + 256]
    assert local_store.decrypt("cmk-old", ciphertext) == cek.secret_bytes()
    local_store.public_key("cmk-old").verify(
        blob[5 + len(path) + 256 :],
        blob[: 5 + len(path) + 256],
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    assert unwrap_cek(blob, local_store, "cmk-old") == cek


def test_wrap_is_randomized(local_store: LocalKeyStore) -> None:
    cek = ColumnEncryptionKey.generate()
    assert wrap_cek(cek, local_store, "cmk-old") != wrap_cek(cek, local_store, "cmk-old")


def test_wrap_with_the_native_certificate_unwraps(native_store: CertificateKeyStore) -> None:
    cek = ColumnEncryptionKey.generate()
    blob = wrap_cek(cek, native_store, NATIVE_PATH)
    assert parse_wrapped_cek(blob).key_path == NATIVE_PATH.lower()
    assert unwrap_cek(blob, native_store, NATIVE_PATH.upper()) == cek


def test_wrap_accepts_raw_32_bytes_but_not_other_lengths(local_store: LocalKeyStore) -> None:
    raw = bytes(range(32))
    assert unwrap_cek(wrap_cek(raw, local_store, "cmk-old"), local_store, "cmk-old") == (
        ColumnEncryptionKey(raw)
    )
    with pytest.raises(ValueError, match="32 bytes"):
        wrap_cek(bytes(16), local_store, "cmk-old")


# --- tampering: every byte region ----------------------------------------------------------


def _flip(blob: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(blob)
    out[index] ^= mask
    return bytes(out)


@pytest.mark.parametrize(
    ("region", "index", "message"),
    [
        ("version", 0, "version"),
        ("key path length", 1, "length"),
        ("key path length high byte", 2, "length"),
        ("ciphertext length", 3, "length"),
        ("ciphertext length high byte", 4, "length"),
        ("key path", 5, "signature does not verify"),
        ("key path end", 114, "signature does not verify"),
        ("ciphertext", 115, "signature does not verify"),
        ("ciphertext end", 370, "signature does not verify"),
        ("signature", 371, "signature does not verify"),
        ("signature end", 626, "signature does not verify"),
    ],
)
def test_tampered_region_is_refused(
    native_store: CertificateKeyStore, native_blob: bytes, region: str, index: int, message: str
) -> None:
    cek = (VECTORS / "sqlclient-native-Plaintext1.bin").read_bytes()
    with pytest.raises(KeyWrapError, match=message) as caught:
        unwrap_cek(_flip(native_blob, index), native_store, NATIVE_PATH)
    _assert_no_secret(caught.value, cek)


@settings(max_examples=150, deadline=None)
@given(index=st.integers(min_value=0, max_value=626), mask=st.integers(min_value=1, max_value=255))
def test_any_flipped_bit_is_refused(index: int, mask: int) -> None:
    blob = (VECTORS / "sqlclient-native-FinalCell1.bin").read_bytes()
    with pytest.raises(KeyWrapError):
        unwrap_cek(_flip(blob, index, mask), _native_store(), NATIVE_PATH)


@pytest.mark.parametrize("length", [0, 1, 4, 5, 114, 115, 370, 371, 626])
def test_truncated_blob_is_refused(
    native_store: CertificateKeyStore, native_blob: bytes, length: int
) -> None:
    with pytest.raises(KeyWrapError, match=r"truncated|length"):
        unwrap_cek(native_blob[:length], native_store, NATIVE_PATH)


def test_extended_blob_is_refused(native_store: CertificateKeyStore, native_blob: bytes) -> None:
    with pytest.raises(KeyWrapError, match="length"):
        unwrap_cek(native_blob + b"\x00", native_store, NATIVE_PATH)


def test_parse_refuses_impossible_lengths() -> None:
    path = "k".encode("utf-16-le")
    odd = struct.pack("<BHH", 1, 3, 256) + b"abc" + bytes(512)
    with pytest.raises(KeyWrapError, match="UTF-16"):
        parse_wrapped_cek(odd)
    empty_path = struct.pack("<BHH", 1, 0, 256) + bytes(512)
    with pytest.raises(KeyWrapError, match="UTF-16"):
        parse_wrapped_cek(empty_path)
    small_modulus = struct.pack("<BHH", 1, len(path), 128) + path + bytes(256)
    with pytest.raises(KeyWrapError, match="RSA-2048"):
        parse_wrapped_cek(small_modulus)
    lone_surrogate = "\ud800".encode("utf-16-le", "surrogatepass")
    bad_text = struct.pack("<BHH", 1, 2, 256) + lone_surrogate + bytes(512)
    with pytest.raises(KeyWrapError, match="UTF-16LE"):
        parse_wrapped_cek(bad_text)
    good = struct.pack("<BHH", 1, len(path), 256) + path + bytes(512)
    assert parse_wrapped_cek(good) == ParsedWrappedCek(
        key_path="k", ciphertext=bytes(256), signature=bytes(256), signed_bytes=good[:263]
    )


# --- wrong column master key ----------------------------------------------------------------


def test_wrong_cmk_is_refused(local_store: LocalKeyStore) -> None:
    cek = ColumnEncryptionKey.generate()
    blob = wrap_cek(cek, local_store, "cmk-old")
    with pytest.raises(KeyWrapError, match="wrong") as caught:
        unwrap_cek(blob, local_store, "cmk-new")
    assert "signature does not verify" in str(caught.value)
    _assert_no_secret(caught.value, cek.secret_bytes())


def test_native_blob_with_a_local_cmk_is_refused(
    local_store: LocalKeyStore, native_blob: bytes
) -> None:
    with pytest.raises(KeyWrapError, match="signature does not verify"):
        unwrap_cek(native_blob, local_store, "cmk-old")


def test_cmk_of_another_size_is_named_as_wrong(local_store: LocalKeyStore, tmp_path: Path) -> None:
    big = LocalKeyStore(tmp_path / "big")
    big.create_master_key("big", key_size=3072)
    blob = wrap_cek(ColumnEncryptionKey.generate(), local_store, "cmk-old")
    with pytest.raises(KeyWrapError, match=r"wrong column master key.*2048-bit"):
        unwrap_cek(blob, big, "big")


def test_cmk_missing_from_the_store_is_a_key_wrap_error(
    local_store: LocalKeyStore, native_store: CertificateKeyStore, native_blob: bytes
) -> None:
    with pytest.raises(KeyWrapError, match="no key named"):
        unwrap_cek(native_blob, local_store, "absent")
    with pytest.raises(KeyWrapError, match="no certificate with thumbprint"):
        unwrap_cek(native_blob, native_store, "CurrentUser/My/" + "0" * 40)


def test_signed_garbage_is_refused_after_the_signature(local_store: LocalKeyStore) -> None:
    # A blob that the CMK really signed but whose ciphertext was not made with it.
    path = "cmk-old".encode("utf-16-le")
    signed = struct.pack("<BHH", 1, len(path), 256) + path + bytes(255) + b"\x01"
    blob = signed + local_store.sign("cmk-old", signed)
    with pytest.raises(KeyWrapError, match=r"signature verified but .* does not decrypt"):
        unwrap_cek(blob, local_store, "cmk-old")


def test_unwrapped_key_must_be_32_bytes(local_store: LocalKeyStore) -> None:
    short = bytes(range(16))
    path = "cmk-old".encode("utf-16-le")
    ciphertext = local_store.public_key("cmk-old").encrypt(short, oaep_sha1())
    signed = struct.pack("<BHH", 1, len(path), 256) + path + ciphertext
    blob = signed + local_store.sign("cmk-old", signed)
    with pytest.raises(KeyWrapError, match="16 bytes") as caught:
        unwrap_cek(blob, local_store, "cmk-old")
    _assert_no_secret(caught.value, short)


# --- rotation ---------------------------------------------------------------------------


def test_rotation_tries_each_wrapped_value(
    local_store: LocalKeyStore, native_store: CertificateKeyStore
) -> None:
    cek = ColumnEncryptionKey.generate()
    old = WrappedKey(wrap_cek(cek, local_store, "cmk-old"), local_store.provider_name, "cmk-old")
    new = WrappedKey(
        wrap_cek(cek, native_store, NATIVE_PATH), native_store.provider_name, NATIVE_PATH
    )
    both: dict[str, KeyStore] = {
        local_store.provider_name: local_store,
        native_store.provider_name: native_store,
    }
    assert unwrap_any([old, new], both) == cek
    # Only the new CMK is reachable: the first value fails, the second unwraps.
    assert unwrap_any([old, new], {native_store.provider_name: native_store}) == cek
    # Only the old one, found through a function and a differently-cased provider name.
    assert unwrap_any([new, old], lambda name: both.get(name.upper())) == cek
    assert unwrap_any([new, old], {"cleanroom_local_pem": local_store}) == cek


def test_rotation_skips_a_tampered_value(local_store: LocalKeyStore) -> None:
    cek = ColumnEncryptionKey.generate()
    good = wrap_cek(cek, local_store, "cmk-new")
    bad = _flip(wrap_cek(cek, local_store, "cmk-old"), 40)
    values = [
        WrappedKey(bad, local_store.provider_name, "cmk-old"),
        WrappedKey(good, local_store.provider_name, "cmk-new"),
    ]
    assert unwrap_any(values, {local_store.provider_name: local_store}) == cek


def test_rotation_fails_when_no_value_unwraps(
    local_store: LocalKeyStore, native_blob: bytes
) -> None:
    cek = ColumnEncryptionKey.generate()
    values = [
        WrappedKey(native_blob, "MSSQL_CERTIFICATE_STORE", NATIVE_PATH),
        WrappedKey(
            wrap_cek(cek, local_store, "cmk-old"),
            local_store.provider_name,
            "cmk-old",
            algorithm="RSA_PKCS1",
        ),
    ]
    resolver: KeyStoreResolver = {local_store.provider_name: local_store}
    with pytest.raises(KeyWrapError) as caught:
        unwrap_any(values, resolver)
    text = str(caught.value)
    assert "none of the 2 wrapped values" in text
    assert "no key store for provider 'MSSQL_CERTIFICATE_STORE'" in text
    assert "unsupported key encryption algorithm 'RSA_PKCS1'" in text
    _assert_no_secret(caught.value, cek.secret_bytes())


def test_rotation_refuses_no_values_and_more_than_two(local_store: LocalKeyStore) -> None:
    resolver = {local_store.provider_name: local_store}
    with pytest.raises(KeyWrapError, match="no wrapped values"):
        unwrap_any([], resolver)
    value = WrappedKey(
        wrap_cek(ColumnEncryptionKey.generate(), local_store, "cmk-old"),
        local_store.provider_name,
        "cmk-old",
    )
    with pytest.raises(KeyWrapError, match="at most 2"):
        unwrap_any([value, value, value], resolver)
    assert value.encrypted_value.hex()[:64] not in repr(value)


# --- CMK metadata signature --------------------------------------------------------------


def test_cmk_metadata_message_matches_the_reference() -> None:
    message = cmk_metadata_message(
        "MSSQL_CERTIFICATE_STORE", NATIVE_PATH, allow_enclave_computations=True
    )
    assert message == (
        "mssql_certificate_storecurrentuser/my/b3c66ffbe1db57419792e24aa970455bfac30757true"
    ).encode("utf-16-le")
    assert hashlib.sha256(message).hexdigest() == (
        "1e222bb04ba741315d21ddf713322afe6b8436db364b41a45593750ff8862575"
    )
    false = cmk_metadata_message(
        "MSSQL_CERTIFICATE_STORE", NATIVE_PATH, allow_enclave_computations=False
    )
    assert hashlib.sha256(false).hexdigest() == (
        "1c046b0aad380d02ce1dda790091e8e524d550b95362fe6f42c7e75bdaf8120b"
    )


def test_cmk_metadata_signature_known_answer(native_store: CertificateKeyStore) -> None:
    signature = sign_cmk_metadata(native_store, NATIVE_PATH, allow_enclave_computations=True)
    assert signature == METADATA_SIGNATURE_TRUE
    verify_cmk_metadata(
        native_store, NATIVE_PATH.lower(), METADATA_SIGNATURE_TRUE, allow_enclave_computations=True
    )


def test_cmk_metadata_signature_is_refused_when_anything_differs(
    native_store: CertificateKeyStore, local_store: LocalKeyStore
) -> None:
    with pytest.raises(KeyWrapError, match="allow_enclave_computations=False"):
        verify_cmk_metadata(
            native_store, NATIVE_PATH, METADATA_SIGNATURE_TRUE, allow_enclave_computations=False
        )
    with pytest.raises(KeyWrapError, match="does not verify"):
        verify_cmk_metadata(
            native_store,
            NATIVE_PATH,
            _flip(METADATA_SIGNATURE_TRUE, 100),
            allow_enclave_computations=True,
        )
    renamed = CertificateKeyStore.from_pfx(
        VECTORS / "sqlclient-native-Certificate.pfx",
        password=PFX_PASSWORD,
        provider_name="CLEANROOM_CERTIFICATE",
    )
    with pytest.raises(KeyWrapError, match="CLEANROOM_CERTIFICATE"):
        verify_cmk_metadata(
            renamed, NATIVE_PATH, METADATA_SIGNATURE_TRUE, allow_enclave_computations=True
        )
    with pytest.raises(KeyWrapError, match="cannot verify"):
        verify_cmk_metadata(
            local_store, "absent", METADATA_SIGNATURE_TRUE, allow_enclave_computations=True
        )


def test_cmk_metadata_round_trip_with_a_local_key(local_store: LocalKeyStore) -> None:
    signature = sign_cmk_metadata(local_store, "cmk-new", allow_enclave_computations=True)
    verify_cmk_metadata(local_store, "cmk-new", signature, allow_enclave_computations=True)
    with pytest.raises(KeyWrapError):
        verify_cmk_metadata(local_store, "cmk-old", signature, allow_enclave_computations=True)


def test_wrap_propagates_key_store_errors(local_store: LocalKeyStore) -> None:
    with pytest.raises(KeyStoreError, match="no key named"):
        wrap_cek(ColumnEncryptionKey.generate(), local_store, "absent")
    with pytest.raises(KeyWrapError, match="non-empty"):
        wrap_cek(ColumnEncryptionKey.generate(), local_store, "")


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    material=st.binary(min_size=32, max_size=32),
    casing=st.lists(st.booleans(), min_size=len(NATIVE_PATH), max_size=len(NATIVE_PATH)),
)
def test_round_trip_for_any_key_and_path_casing(material: bytes, casing: list[bool]) -> None:
    store = _native_store()
    pairs = zip(NATIVE_PATH, casing, strict=True)
    key_path = "".join(c.upper() if up else c.lower() for c, up in pairs)
    blob = wrap_cek(ColumnEncryptionKey(material), store, key_path)
    assert parse_wrapped_cek(blob).key_path == NATIVE_PATH.lower()
    assert unwrap_cek(blob, store, NATIVE_PATH).secret_bytes() == material


@st.composite
def _wrapped_blobs(draw: st.DrawFn) -> tuple[bytes, ParsedWrappedCek | None]:
    """A well-formed blob and its fields; then, half of the time, one mutation (the
    expected fields are then ``None``: it may or may not still parse)."""
    path = draw(st.text(min_size=1, max_size=40)).encode("utf-16-le")  # no lone surrogates
    modulus = draw(st.sampled_from([256, 384, 512]) | st.integers(256, 300))
    ciphertext = draw(st.binary(min_size=modulus, max_size=modulus))
    signature = draw(st.binary(min_size=modulus, max_size=modulus))
    signed = struct.pack("<BHH", 1, len(path), modulus) + path + ciphertext
    blob = signed + signature
    if not draw(st.booleans()):
        event("mutation: none")
        return blob, ParsedWrappedCek(path.decode("utf-16-le"), ciphertext, signature, signed)
    mutation = draw(st.sampled_from(["flip", "truncate", "extend", "header", "odd path"]))
    event(f"mutation: {mutation}")
    if mutation == "flip":
        index = draw(st.integers(0, len(blob) - 1))
        blob = _flip(blob, index, draw(st.integers(1, 255)))
    elif mutation == "truncate":
        blob = blob[: draw(st.integers(0, len(blob) - 1))]
    elif mutation == "extend":
        blob += draw(st.binary(min_size=1, max_size=8))
    elif mutation == "header":
        header = struct.pack(
            "<BHH",
            draw(st.integers(0, 2)),
            draw(st.sampled_from([len(path), len(path) + 1, len(path) - 1, 0])),
            draw(st.sampled_from([modulus, modulus - 1, 255, 0xFFFF])),
        )
        blob = header + blob[5:]
    else:  # an odd number of key path bytes, lengths kept consistent
        shorter = path[:-1]
        blob = struct.pack("<BHH", 1, len(shorter), modulus) + shorter + ciphertext + signature
    return blob, None


@settings(max_examples=300, deadline=None)
@given(
    case=st.one_of(
        _wrapped_blobs(),
        st.tuples(st.binary(max_size=700), st.none()),
    )
)
def test_parsing_arbitrary_bytes_raises_only_key_wrap_error(
    case: tuple[bytes, ParsedWrappedCek | None],
) -> None:
    data, expected = case
    try:
        parsed = parse_wrapped_cek(data)
    except KeyWrapError:
        assert expected is None, "a well-formed blob was refused"
        event("refused")
        return
    event("parsed")
    if expected is not None:
        assert parsed == expected
    path = parsed.key_path.encode("utf-16-le")
    assert data[:5] == struct.pack("<BHH", 1, len(path), len(parsed.ciphertext))
    assert parsed.signed_bytes == data[:5] + path + parsed.ciphertext
    assert parsed.signed_bytes + parsed.signature == data
    assert len(parsed.signature) == len(parsed.ciphertext) >= 256
