"""Known-answer vectors from SQL Server itself, tedious and mssql-rs (tests/vectors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cleanroom.crypto import CellCipher, EncryptionType, _hazmat

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "always_encrypted.json").read_text())
CELLS: list[dict[str, Any]] = VECTORS["cells"]


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def test_the_vector_file_has_every_source() -> None:
    assert len(CELLS) == 35
    assert sum(c["mode"] == "deterministic" for c in CELLS) == 18


@pytest.mark.parametrize("vector", VECTORS["derived_keys"], ids=lambda v: v["cek"][:8])
def test_derived_keys(vector: dict[str, str]) -> None:
    keys = _hazmat.derive_keys(bytes.fromhex(vector["cek"]))
    assert keys.enc_key.hex() == vector["enc_key"]
    assert keys.mac_key.hex() == vector["mac_key"]
    assert keys.iv_key.hex() == vector["iv_key"]


@pytest.mark.parametrize("vector", CELLS, ids=_ids(CELLS))
def test_every_cell_decrypts(vector: dict[str, str]) -> None:
    cipher = CellCipher(bytes.fromhex(vector["cek"]), EncryptionType.parse(vector["mode"]))
    assert cipher.decrypt(bytes.fromhex(vector["cell"])) == bytes.fromhex(vector["plaintext"])


DETERMINISTIC = [c for c in CELLS if c["mode"] == "deterministic"]


@pytest.mark.parametrize("vector", DETERMINISTIC, ids=_ids(DETERMINISTIC))
def test_deterministic_cells_re_encrypt_bit_exactly(vector: dict[str, str]) -> None:
    cipher = CellCipher(bytes.fromhex(vector["cek"]), EncryptionType.DETERMINISTIC)
    assert cipher.encrypt(bytes.fromhex(vector["plaintext"])) == bytes.fromhex(vector["cell"])


def test_deterministic_vectors_re_encrypt_as_one_batch() -> None:
    by_key: dict[str, list[dict[str, str]]] = {}
    for vector in DETERMINISTIC:
        by_key.setdefault(vector["cek"], []).append(vector)
    for cek, vectors in by_key.items():
        cipher = CellCipher(bytes.fromhex(cek), EncryptionType.DETERMINISTIC)
        cells = cipher.encrypt_many([bytes.fromhex(v["plaintext"]) for v in vectors])
        assert [c.hex() for c in cells] == [v["cell"] for v in vectors]
        assert cipher.decrypt_many(cells) == [bytes.fromhex(v["plaintext"]) for v in vectors]


FIXED_IV = [c for c in CELLS if "iv" in c]


@pytest.mark.parametrize("vector", FIXED_IV, ids=_ids(FIXED_IV))
def test_randomized_cell_with_a_fixed_iv_re_encrypts_through_the_private_seam(
    vector: dict[str, str],
) -> None:
    keys = _hazmat.derive_keys(bytes.fromhex(vector["cek"]))
    cells = _hazmat.encrypt_cells(
        keys, [bytes.fromhex(vector["plaintext"])], [bytes.fromhex(vector["iv"])]
    )
    assert cells[0].hex() == vector["cell"].lower()
