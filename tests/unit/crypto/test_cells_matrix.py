"""CellCipher.decrypt_matrix: equal-length cells as rows of a uint8 array."""

from __future__ import annotations

import hmac

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.crypto import CellCipher, ColumnEncryptionKey, EncryptionType, _hazmat
from cleanroom.errors import DecryptionError

KEY = ColumnEncryptionKey(bytes(range(32)))
OTHER = ColumnEncryptionKey(bytes(range(1, 33)))


@pytest.fixture(params=list(EncryptionType), ids=lambda t: t.name.lower())
def cipher(request: pytest.FixtureRequest) -> CellCipher:
    return CellCipher(KEY, request.param)


def _matrix(cells: list[bytes]) -> npt.NDArray[np.uint8]:
    return np.frombuffer(b"".join(cells), dtype=np.uint8).reshape(len(cells), -1)


def _plaintexts(plain: npt.NDArray[np.uint8], lengths: npt.NDArray[np.int64]) -> list[bytes]:
    return [bytes(row[:n]) for row, n in zip(plain, lengths, strict=True)]


@given(
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=1, max_value=40),
    st.sampled_from(list(EncryptionType)),
    st.data(),
)
@settings(max_examples=100)
def test_matrix_holds_what_decrypt_array_returns(
    length: int, count: int, kind: EncryptionType, data: st.DataObject
) -> None:
    # Plaintexts of lengths that pad to the same block count give cells of one length.
    low = 16 * (length // 16)
    sizes = data.draw(st.lists(st.integers(low, low + 15), min_size=count, max_size=count))
    values = [data.draw(st.binary(min_size=n, max_size=n)) for n in sizes]
    cipher = CellCipher(KEY, kind)
    cells = cipher.encrypt_many(values)
    plain, lengths = cipher.decrypt_matrix(_matrix(cells))
    expected_plain, expected_lengths = cipher.decrypt_array(cells)
    assert plain.dtype == np.uint8
    assert lengths.dtype == np.int64
    assert (plain == expected_plain).all()
    assert (lengths == expected_lengths).all()
    assert _plaintexts(plain, lengths) == values


def test_a_strided_column_of_a_wider_array_decrypts(cipher: CellCipher) -> None:
    numbers = [0, 1, -1, 2**40, -(2**63), 7]
    cells = cipher.encrypt_many([n.to_bytes(8, "little", signed=True) for n in numbers])
    # Each row: 5 bytes of something else, the cell, 3 more bytes (like a joined batch).
    rows = np.zeros((len(cells), 5 + 65 + 3), dtype=np.uint8)
    rows[:, 5:70] = _matrix(cells)
    view = rows[:, 5:70]
    assert not view.flags.c_contiguous
    plain, lengths = cipher.decrypt_matrix(view)
    assert (lengths == 8).all()
    assert plain[:, :8].copy().view("<i8").ravel().tolist() == numbers
    # Every other row: strides in both directions.
    plain, _ = cipher.decrypt_matrix(view[::2])
    assert plain[:, :8].copy().view("<i8").ravel().tolist() == numbers[::2]


@pytest.mark.parametrize("row", [0, 2, 4])
@pytest.mark.parametrize("index", [0, 1, 32, 33, 48, 49, 64])
def test_one_flipped_bit_anywhere_fails_the_batch(cipher: CellCipher, row: int, index: int) -> None:
    matrix = _matrix(cipher.encrypt_many([bytes([i]) * 8 for i in range(5)])).copy()
    matrix[row, index] ^= 0x01
    with pytest.raises(DecryptionError) as caught:
        cipher.decrypt_matrix(matrix)
    assert str(caught.value) == DecryptionError.MESSAGE


def test_a_wrong_key_fails_with_the_fixed_message(cipher: CellCipher) -> None:
    matrix = _matrix(cipher.encrypt_many([b"secret value"] * 3))
    with pytest.raises(DecryptionError) as caught:
        CellCipher(OTHER, cipher.encryption_type).decrypt_matrix(matrix)
    assert str(caught.value) == DecryptionError.MESSAGE


@pytest.mark.parametrize("width", [0, 1, 49, 64, 66, 80])
def test_bad_cell_lengths_fail(cipher: CellCipher, width: int) -> None:
    cells = cipher.encrypt_many([b"0123456789abcdef!"] * 2)  # 81-byte cells
    matrix = np.zeros((2, width), dtype=np.uint8)
    keep = min(width, 81)
    matrix[:, :keep] = _matrix(cells)[:, :keep]
    with pytest.raises(DecryptionError):
        cipher.decrypt_matrix(matrix)


def test_anything_but_a_2d_uint8_array_is_refused(cipher: CellCipher) -> None:
    matrix = _matrix(cipher.encrypt_many([b"a", b"b"]))
    for bad in (matrix.ravel(), matrix.astype(np.int16), matrix[None], [[1, 2]], b"\x01" * 65):
        with pytest.raises(DecryptionError):
            cipher.decrypt_matrix(bad)  # type: ignore[arg-type]


def test_no_rows_is_an_empty_result(cipher: CellCipher) -> None:
    for width in (0, 65, 7):
        plain, lengths = cipher.decrypt_matrix(np.zeros((0, width), dtype=np.uint8))
        assert plain.shape[0] == 0
        assert lengths.shape == (0,)


def test_bad_padding_under_a_valid_tag_fails_with_the_fixed_message() -> None:
    keys = _hazmat.derive_keys(KEY.secret_bytes())
    good = _hazmat.encrypt_cells(keys, [b"A" * 15] * 2, [bytes(16)] * 2)
    iv_ct = bytearray(good[1][33:])
    iv_ct[15] ^= 0x05  # the decrypted pad byte changes; the tag is then recomputed
    tag = hmac.digest(keys.mac_key, b"\x01" + bytes(iv_ct) + b"\x01", "sha256")
    forged = b"\x01" + tag + bytes(iv_ct)
    with pytest.raises(DecryptionError) as caught:
        CellCipher(KEY).decrypt_matrix(_matrix([good[0], forged]))
    assert str(caught.value) == DecryptionError.MESSAGE


def test_every_chunk_is_verified_before_any_is_decrypted(
    monkeypatch: pytest.MonkeyPatch, cipher: CellCipher
) -> None:
    monkeypatch.setattr(_hazmat, "CHUNK", 4)
    opened: list[int] = []
    real_open = _hazmat._open_verified

    def spy(decryptor: object, cells: npt.NDArray[np.uint8]) -> object:
        opened.append(len(cells))
        return real_open(decryptor, cells)

    monkeypatch.setattr(_hazmat, "_open_verified", spy)
    values = [i.to_bytes(8, "little") for i in range(11)]  # chunks of 4, 4, 3
    matrix = _matrix(cipher.encrypt_many(values)).copy()
    plain, lengths = cipher.decrypt_matrix(matrix)
    assert _plaintexts(plain, lengths) == values
    assert opened == [4, 4, 3]
    opened.clear()
    matrix[10, 40] ^= 0x01  # the last cell of the last chunk
    with pytest.raises(DecryptionError):
        cipher.decrypt_matrix(matrix)
    assert opened == []  # no AES for the good chunks before the bad one either
