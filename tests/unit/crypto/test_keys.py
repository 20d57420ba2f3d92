from __future__ import annotations

import copy
import pickle

import pytest

from cleanroom.crypto import ColumnEncryptionKey
from cleanroom.errors import ConfigurationError

MATERIAL = bytes.fromhex("7f9dbb9cad20a15491f688bb604f6ea185b6271f3858b8f2764574d7cd1f7e42")


def test_repr_and_str_are_redacted() -> None:
    key = ColumnEncryptionKey(MATERIAL)
    for text in (repr(key), str(key), f"{key}", f"{[key]}"):
        assert MATERIAL.hex() not in text
        assert "redacted" in text


def test_refuses_pickling_and_copying() -> None:
    key = ColumnEncryptionKey(MATERIAL)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(TypeError):
        copy.copy(key)
    with pytest.raises(TypeError):
        copy.deepcopy(key)
    with pytest.raises(TypeError):
        hash(key)


def test_equality_is_by_value() -> None:
    assert ColumnEncryptionKey(MATERIAL) == ColumnEncryptionKey.from_bytes(MATERIAL)
    assert ColumnEncryptionKey(MATERIAL) != ColumnEncryptionKey.generate()


def test_generate_gives_fresh_32_byte_keys() -> None:
    keys = {ColumnEncryptionKey.generate().secret_bytes() for _ in range(20)}
    assert len(keys) == 20
    assert all(len(k) == 32 for k in keys)


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_wrong_length_is_refused_without_echoing_the_material(length: int) -> None:
    material = b"\xab" * length
    with pytest.raises(ConfigurationError) as caught:
        ColumnEncryptionKey(material)
    assert "ab" * max(length, 1) not in str(caught.value)


def test_zeroing_overwrites_and_disables() -> None:
    key = ColumnEncryptionKey(MATERIAL)
    with key:
        assert key.secret_bytes() == MATERIAL
    assert key.zeroed
    assert bytes(key._buffer) == bytes(32)
    with pytest.raises(ConfigurationError, match="zeroed"):
        key.secret_bytes()
