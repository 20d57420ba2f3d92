"""The first example of docs/keys.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[3] / "docs" / "keys.md"


def test_the_wrap_and_unwrap_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert blocks, "docs/keys.md lost its examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)  # noqa: S102
    assert (tmp_path / "keys" / "hospital-a-cmk.pem").stat().st_mode & 0o777 == 0o600
    assert len(namespace["encrypted_value"]) == 5 + 2 * len("hospital-a-cmk") + 2 * 256  # type: ignore[arg-type]
