"""docs/data.md: its example runs, and its table is the one the test measures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cleanroom.data.medical_record import MEDICAL_RECORD_COLUMNS
from cleanroom.data.synthetic import ARCHETYPES, LABEL_MODEL

DOC = Path(__file__).parents[3] / "docs" / "data.md"


def test_the_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks, "docs/data.md lost its example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102
    assert sorted(p.name for p in (tmp_path / "sites").iterdir()) == [
        "hospital-a.csv",
        "hospital-b.csv",
        "hospital-c.csv",
        "hospital-d.csv",
    ]


def test_the_column_table_matches_the_constants() -> None:
    text = DOC.read_text(encoding="utf-8")
    for col in MEDICAL_RECORD_COLUMNS:
        row = f"| `{col.name}` | {col.sql_type} | {col.kind} | "
        assert row in text, row


def test_the_parameters_quoted_are_the_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "θ = (" + ", ".join(f"{t:.2f}" for t in LABEL_MODEL.thresholds) + ")" in text
    severities = " | ".join(f"{p.referral_severity:+.2f}" for p in ARCHETYPES[1:])
    assert f"| referral severity | 0 | {severities} |" in text
