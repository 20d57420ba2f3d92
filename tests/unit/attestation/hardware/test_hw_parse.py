"""Every real evidence sample parses to the values in vectors/evidence/expected_values.json."""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.attestation.hardware import (
    HardwareReport,
    parse_quote,
    parse_sgx_quote,
    parse_snp_report,
    parse_tdx_quote,
)
from cleanroom.attestation.hardware.quote import QuoteSignatureData, parse_quote_with_signature
from cleanroom.errors import EvidenceError

VECTORS = Path(__file__).resolve().parents[3] / "vectors" / "evidence"
EXPECTED: list[dict[str, Any]] = json.loads((VECTORS / "expected_values.json").read_text())[
    "samples"
]
SNP = [s for s in EXPECTED if s["file"].startswith("snp-")]
QUOTES = [s for s in EXPECTED if not s["file"].startswith("snp-")]


def blob(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def test_every_manifest_sample_is_covered_and_unmodified() -> None:
    bins = sorted(p.name for p in VECTORS.glob("*.bin"))
    assert sorted(s["file"] for s in EXPECTED) == bins
    assert len(bins) == 12
    for sample in EXPECTED:
        assert hashlib.sha256(blob(sample["file"])).hexdigest() == sample["sha256"]


@pytest.mark.parametrize("sample", SNP, ids=lambda s: s["file"])
def test_snp_sample_parses_to_expected_values(sample: dict[str, Any]) -> None:
    exp = sample["report"]
    report = parse_snp_report(blob(sample["file"]))
    assert report.tee == "sev-snp"
    assert report.version == exp["version"]
    assert report.measurement == exp["measurement"]
    assert report.report_data.hex() == exp["report_data"]
    assert report.debug is exp["debug"]
    assert report.svn == exp["guest_svn"]
    assert report.config_id is not None
    assert report.config_id.hex() == exp["host_data"]
    assert report.product_id == exp["image_id"]
    assert report.rtmrs == ()
    assert report.raw == blob(sample["file"])
    extra = report.extra
    assert extra["vmpl"] == exp["vmpl"]
    assert f"{extra['policy']:#x}" == exp["policy"]
    assert extra["policy_abi"] == exp["policy_abi"]
    assert set(exp["policy_flags"]) <= set(extra["policy_flags"])
    assert extra["signing_key"] == exp["signing_key"]
    assert f"{extra['platform_info']:#x}" == exp["platform_info"]
    for key in ("family_id", "image_id", "id_key_digest", "author_key_digest", "chip_id"):
        assert extra[key] == exp[key], key
    for key in ("report_id", "report_id_ma", "current_fw", "committed_fw"):
        assert extra[key] == exp[key], key
    for tcb in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        assert extra[tcb] == exp[tcb], tcb
    if exp["version"] >= 3:
        assert extra["cpuid_fam_mod_step"] == exp["cpuid_fam_mod_step"]
    # signer: the ID key digest when an ID block was used, else None (no author key here).
    zero = "00" * 48
    assert report.signer == (None if exp["id_key_digest"] == zero else exp["id_key_digest"])


@pytest.mark.parametrize("sample", QUOTES, ids=lambda s: s["file"])
def test_quote_sample_parses_to_expected_values(sample: dict[str, Any]) -> None:
    exp, header, layout = sample["report"], sample["header"], sample["quote_layout"]
    data = blob(sample["file"])
    report = parse_quote(data)
    assert report.version == header["version"]
    assert report.report_data.hex() == exp["report_data"]
    assert report.debug is exp["debug"]
    assert len(report.raw) == layout["quote_len"]
    assert report.raw == data[: layout["quote_len"]]
    extra = report.extra
    assert extra["trailing_bytes"] == layout["trailing_bytes_after_quote"]
    assert extra["cert_type"] == layout["cert_data_type"]
    assert extra["qe_auth_data_size"] == layout["qe_auth_data_len"]
    for key in ("att_key_type", "tee_type", "qe_svn", "pce_svn", "qe_vendor_id", "user_data"):
        assert extra[key] == header[key], key
    assert extra["qe_mrsigner"] == sample["qe_report"]["mr_signer"]
    assert extra["qe_isvsvn"] == sample["qe_report"]["isv_svn"]
    assert extra["fmspc"] == sample["pck"]["fmspc"]
    if header["tee_type"] == 0:
        assert report.tee == "sgx"
        assert report.measurement == exp["mr_enclave"]
        assert report.signer == exp["mr_signer"]
        assert report.product_id == exp["isv_prod_id"]
        assert report.svn == exp["isv_svn"]
        assert report.config_id is not None
        assert report.config_id.hex() == exp["config_id"]
        assert extra["attributes_flags"] == exp["attr_flags"]
        assert extra["xfrm"] == exp["attr_xfrm"]
        assert extra["cpusvn"] == exp["cpu_svn"]
        assert extra["miscselect"] == exp["misc_select"]
        assert report.rtmrs == ()
        assert parse_sgx_quote(data).measurement == report.measurement
    else:
        assert report.tee == "tdx"
        assert report.measurement == exp["mr_td"]
        assert report.rtmrs == tuple(exp[f"rtmr{i}"] for i in range(4))
        assert report.signer == exp["mr_signer_seam"]
        assert report.svn == exp["tee_tcb_svn"]
        assert report.product_id is None
        assert report.config_id is not None
        assert report.config_id.hex() == exp["mr_config_id"]
        for key in ("mr_seam", "seam_attributes", "td_attributes", "xfam", "mr_owner"):
            assert extra[key] == exp[key], key
        assert extra["mr_owner_config"] == exp["mr_owner_config"]
        if "v5_body_type" in sample:
            assert extra["body_type"] == sample["v5_body_type"]
            assert extra["tee_tcb_svn2"] == exp["tee_tcb_svn2"]
            assert extra["mr_service_td"] == exp["mr_servicetd"]
        assert parse_tdx_quote(data).measurement == report.measurement


def test_manifest_headline_values_spot_check() -> None:
    # Independent of expected_values.json: values copied from MANIFEST.md section 3.
    sgx = parse_sgx_quote(blob("sgx-v3-dcapqvl.bin"))
    assert sgx.measurement.startswith("33d8736d")
    assert sgx.measurement.endswith("2fbb")
    assert sgx.report_data.rstrip(b"\x00") == b"Hello, world!"
    occlum = parse_sgx_quote(blob("sgx-v3-occlum-debug.bin"))
    assert occlum.debug is True
    assert occlum.extra["attributes_flags"] == 0x7
    debug_td = parse_tdx_quote(blob("tdx-v4-trustee-debug.bin"))
    assert debug_td.debug is True
    assert debug_td.extra["td_attributes"] == "0100001000000000"
    gnr = parse_tdx_quote(blob("tdx-v4-trustee-gnr.bin"))
    assert gnr.config_id is not None
    assert gnr.config_id.hex().startswith("889abf47")
    vlek = parse_snp_report(blob("snp-milan-v3-vlek-aws.bin"))
    assert vlek.extra["vmpl"] == 1
    assert vlek.extra["signing_key"] == "VLEK"
    assert parse_snp_report(blob("snp-milan-v2-gosev-debug.bin")).debug is True


def test_appended_ascii_after_a_quote_is_ignored_and_reported() -> None:
    data = blob("tdx-v4-gotdx-spr.bin")
    report = parse_tdx_quote(data)
    assert len(report.raw) == 4935
    assert data[4935:] == b"\nextra bytes(only for testing purpose)\n"
    assert report.extra["trailing_bytes"] == 39
    assert parse_tdx_quote(report.raw).measurement == report.measurement


def test_quote_buffer_larger_than_32_kib_is_refused() -> None:
    data = blob("tdx-v4-dcapqvl.bin")
    with pytest.raises(EvidenceError, match="larger than"):
        parse_quote(data + bytes(32 * 1024))


@pytest.mark.parametrize(
    "name",
    ["sgx-v3-dcapqvl.bin", "tdx-v4-dcapqvl.bin", "tdx-v5-gotdx.bin", "sgx-v3-occlum-debug.bin"],
)
@pytest.mark.parametrize("cut", [0, 10, 47, 48, 300, 431, 435, 700, 1200, 2000, -1])
def test_truncated_quote_is_an_evidence_error(name: str, cut: int) -> None:
    data = parse_quote(blob(name)).raw
    with pytest.raises(EvidenceError):
        parse_quote(data[:cut])


@pytest.mark.parametrize("name", [s["file"] for s in SNP])
@pytest.mark.parametrize("size", [0, 0x2A0, 0x49F, 0x4A1])
def test_snp_report_of_wrong_size_is_an_evidence_error(name: str, size: int) -> None:
    data = blob(name)
    resized = data[:size] if size <= len(data) else data + bytes(size - len(data))
    with pytest.raises(EvidenceError, match="exactly 1184 bytes"):
        parse_snp_report(resized)


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (0x00, "<I", 1, "version 1"),
        (0x00, "<I", 6, "version 6"),
        (0x34, "<I", 2, "signature algorithm 2"),
        (0x48, "<I", 3 << 2, "signing key type 3"),
        (0x48, "<I", 1 << 5, "reserved bits"),
    ],
)
def test_snp_header_checks(offset: int, fmt: str, value: int, message: str) -> None:
    data = _patched(blob("snp-milan-v2-virtee.bin"), offset, fmt, value)
    with pytest.raises(EvidenceError, match=message):
        parse_snp_report(data)


@pytest.mark.parametrize(
    ("name", "offset", "fmt", "value", "message"),
    [
        ("sgx-v3-dcapqvl.bin", 0, "<H", 2, "version 2"),
        ("sgx-v3-dcapqvl.bin", 0, "<H", 6, "version 6"),
        ("sgx-v3-dcapqvl.bin", 2, "<H", 3, "attestation key type 3"),
        ("tdx-v4-dcapqvl.bin", 4, "<I", 0x80, "TEE type 0x80"),
        ("tdx-v5-gotdx.bin", 48, "<H", 4, "body type 4"),
        ("tdx-v5-gotdx.bin", 48, "<H", 2, "must be 584 bytes"),
        ("tdx-v5-gotdx.bin", 4, "<I", 0, "only TDX"),
        ("sgx-v3-dcapqvl.bin", 432, "<I", 5000, "truncated"),
        ("sgx-v3-dcapqvl.bin", 432, "<I", 4000, "truncated|unaccounted"),
        ("tdx-v4-dcapqvl.bin", 632 + 4 + 128, "<H", 5, "type is 5, expected 6"),
    ],
)
def test_quote_header_and_length_checks(
    name: str, offset: int, fmt: str, value: int, message: str
) -> None:
    with pytest.raises(EvidenceError, match=message):
        parse_quote(_patched(blob(name), offset, fmt, value))


def test_a_tdx_quote_is_not_an_sgx_quote_and_vice_versa() -> None:
    with pytest.raises(EvidenceError, match="expected an SGX quote"):
        parse_sgx_quote(blob("tdx-v4-dcapqvl.bin"))
    with pytest.raises(EvidenceError, match="expected a TDX quote"):
        parse_tdx_quote(blob("sgx-v3-dcapqvl.bin"))


def test_non_bytes_input_is_an_evidence_error() -> None:
    with pytest.raises(EvidenceError, match="must be bytes"):
        parse_quote("not bytes")  # type: ignore[arg-type]
    with pytest.raises(EvidenceError, match="must be bytes"):
        parse_snp_report(None)  # type: ignore[arg-type]


def test_report_repr_is_short_and_extra_is_read_only() -> None:
    report = parse_snp_report(blob("snp-milan-v2-trustee.bin"))
    assert isinstance(report, HardwareReport)
    assert len(repr(report)) < 120
    with pytest.raises(TypeError):
        report.extra["vmpl"] = 3  # type: ignore[index]


_SEEDS = [blob("sgx-v3-dcapqvl.bin"), blob("tdx-v5-gotdx.bin"), blob("tdx-v4-dcapqvl.bin")]


@settings(max_examples=150, deadline=None)
@given(
    seed=st.sampled_from(_SEEDS),
    position=st.integers(min_value=0, max_value=5005),
    value=st.integers(min_value=0, max_value=255),
    cut=st.integers(min_value=0, max_value=5006),
)
def test_mutated_quotes_parse_or_raise_evidence_error_only(
    seed: bytes, position: int, value: int, cut: int
) -> None:
    data = bytearray(seed[:cut])
    if position < len(data):
        data[position] = value
    with contextlib.suppress(EvidenceError):
        parse_quote(bytes(data))


_SNP_SEEDS = [blob(s["file"]) for s in SNP]


@settings(max_examples=150, deadline=None)
@given(
    seed=st.sampled_from(_SNP_SEEDS),
    position=st.integers(min_value=0, max_value=0x4A0 - 1),
    value=st.integers(min_value=0, max_value=255),
)
def test_mutated_snp_reports_parse_or_raise_evidence_error_only(
    seed: bytes, position: int, value: int
) -> None:
    data = bytearray(seed)
    data[position] = value
    with contextlib.suppress(EvidenceError):
        report = parse_snp_report(bytes(data))
        assert len(report.report_data) == 64


def _v4_signature_data(parts: QuoteSignatureData) -> bytes:
    inner = (
        parts.qe_report
        + parts.qe_report_signature
        + struct.pack("<H", len(parts.qe_auth_data))
        + parts.qe_auth_data
        + struct.pack("<HI", parts.cert_type, len(parts.cert_data))
        + parts.cert_data
    )
    return parts.signature + parts.attest_pub_key + struct.pack("<HI", 6, len(inner)) + inner


def test_v5_quote_with_a_tdx10_body_parses() -> None:
    # Re-framed from the real v4 sample (so its signature no longer verifies; layout only).
    v4, parts = parse_quote_with_signature(blob("tdx-v4-dcapqvl.bin"))
    header = struct.pack("<HHI", 5, 2, 0x81) + v4.raw[8:48]
    body = parts.signed_region[48:]
    sig = _v4_signature_data(parts)
    quote = header + struct.pack("<HI", 2, len(body)) + body + struct.pack("<I", len(sig)) + sig
    v5 = parse_tdx_quote(quote)
    assert v5.version == 5
    assert v5.extra["body_type"] == 2
    assert v5.measurement == v4.measurement
    assert v5.rtmrs == v4.rtmrs
    assert "tee_tcb_svn2" not in v5.extra


def test_v4_sgx_quote_parses() -> None:
    v3, parts = parse_quote_with_signature(blob("sgx-v3-dcapqvl.bin"))
    sig = _v4_signature_data(parts)
    header = struct.pack("<HHI", 4, 2, 0) + v3.raw[8:48]
    v4 = parse_sgx_quote(header + parts.signed_region[48:] + struct.pack("<I", len(sig)) + sig)
    assert v4.version == 4
    assert v4.measurement == v3.measurement
    assert v4.signer == v3.signer
    assert v4.report_data == v3.report_data


@pytest.mark.parametrize("name", ["snp-milan-v2-trustee.bin", "tdx-v5-gotdx.bin"])
def test_as_dict_is_json_ready_and_detached(name: str) -> None:
    data = blob(name)
    report = parse_quote(data) if name.startswith("tdx") else parse_snp_report(data)
    as_dict = report.as_dict()
    decoded = json.loads(json.dumps(as_dict))
    assert decoded["measurement"] == report.measurement
    assert decoded["report_data"] == report.report_data.hex()
    assert "raw" not in decoded
    key = "reported_tcb" if report.tee == "sev-snp" else "mr_seam"
    as_dict["extra"][key] = "changed"
    assert report.extra[key] != "changed"
