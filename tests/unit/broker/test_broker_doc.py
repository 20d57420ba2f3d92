"""The examples of docs/broker.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cleanroom.broker import RELEASE_RULES

DOC = Path(__file__).parents[3] / "docs" / "broker.md"


def _blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 2, "docs/broker.md lost its examples"
    return blocks


def test_the_enclave_snippet_compiles() -> None:
    compile(_blocks()[0], str(DOC), "exec")


def test_the_full_example_releases_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(_blocks()[1], str(DOC), "exec"), namespace)  # noqa: S102
    log = (tmp_path / "work" / "broker" / "hospital_a" / "decisions.jsonl").read_text()
    assert '"decision":"released"' in log


def test_every_rule_is_documented() -> None:
    text = DOC.read_text()
    for rule in RELEASE_RULES:
        assert f"`{rule}`" in text, rule
