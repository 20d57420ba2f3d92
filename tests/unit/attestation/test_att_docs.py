import re
from pathlib import Path

from cleanroom.attestation import RULES

DOC = Path(__file__).resolve().parents[3] / "docs" / "attestation.md"


def test_the_first_example_runs() -> None:
    text = DOC.read_text()
    example = re.search(r"```python\n(.*?)```", text, re.S)
    assert example is not None
    exec(compile(example.group(1), str(DOC), "exec"), {})  # noqa: S102


def test_every_rule_and_the_measurement_format_are_documented() -> None:
    text = DOC.read_text()
    for rule in RULES:
        assert f"| `{rule}` |" in text, rule
    assert "<hex SHA-256 of the file>" in text
    assert "2.23.133.5.4.9" in text
