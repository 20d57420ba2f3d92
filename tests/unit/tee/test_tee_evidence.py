import pytest

from cleanroom.errors import EvidenceError
from cleanroom.tee import Evidence
from cleanroom.tee._base import pad_report_data


def test_json_round_trip_and_redacted_repr() -> None:
    evidence = Evidence(tee="sev-snp", raw=b"\x01" * 100, aux=b"\x02" * 3)
    assert Evidence.from_json(evidence.to_json()) == evidence
    assert "\\x01" not in repr(evidence)
    assert "100 bytes" in repr(evidence)


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"tee": "simulated"},
        {"tee": "nope", "raw": "AA"},
        {"tee": "tdx", "raw": "!!!"},
        {"tee": "tdx", "raw": ""},
        {"tee": "tdx", "raw": "AA", "aux": 3},
    ],
)
def test_malformed_json_is_refused(value: object) -> None:
    with pytest.raises(EvidenceError):
        Evidence.from_json(value)


def test_report_data_is_padded_and_bounded() -> None:
    assert pad_report_data(b"ab") == b"ab" + b"\0" * 62
    with pytest.raises(EvidenceError):
        pad_report_data(b"x" * 65)
