"""The examples of docs/keys.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[3] / "docs" / "keys.md"


def test_the_wrap_unwrap_and_rotation_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert blocks, "docs/keys.md lost its examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks[:2]:  # the third needs an HSM: tests/unit/keystores/test_pkcs11_*
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102
    assert (tmp_path / "keys" / "hospital-a-cmk.pem").stat().st_mode & 0o777 == 0o600
    assert len(namespace["encrypted_value"]) == 5 + 2 * len("hospital-a-cmk") + 2 * 256  # type: ignore[arg-type]
