"""The examples in docs/evidence.md run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]


def test_evidence_doc_examples_run(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "evidence.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks
    monkeypatch.chdir(ROOT)
    for block in blocks:
        exec(compile(block, "docs/evidence.md", "exec"), {})  # noqa: S102 - our own doc
