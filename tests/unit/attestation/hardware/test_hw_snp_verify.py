"""SEV-SNP report verification against the AMD ARK → ASK/ASVK → VCEK/VLEK chain."""

from __future__ import annotations

import ssl
import struct
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from cleanroom.attestation.hardware import (
    AMD_ARK_SPKI_SHA256,
    endorsement_key_tcb,
    kds_vcek_url,
    parse_snp_cert_table,
    parse_snp_report,
    verify_snp_report,
)
from cleanroom.attestation.hardware.amd_chain import _verify_snp_report
from cleanroom.errors import EvidenceError

VECTORS = Path(__file__).resolve().parents[3] / "vectors" / "evidence"
NOW = datetime(2026, 12, 3, tzinfo=UTC)
VLEK_TIME = datetime(2025, 6, 1, tzinfo=UTC)  # the VLEK expired 2025-12-10

# (report, endorsement key cert, chain, a time at which the chain is valid)
SAMPLES = {
    "gosev-debug": ("snp-milan-v2-gosev-debug", "vcek", "amd-milan-ask-ark.pem", NOW),
    "trustee": ("snp-milan-v2-trustee", "vcek", "amd-milan-ask-ark.pem", NOW),
    "virtee": ("snp-milan-v2-virtee", "vcek", "amd-milan-ask-ark.pem", NOW),
    "vlek-aws": ("snp-milan-v3-vlek-aws", "vlek", "amd-milan-ask-ark-asvk.pem", VLEK_TIME),
}


def material(key: str) -> tuple[bytes, bytes, bytes, datetime]:
    stem, ek, chain, when = SAMPLES[key]
    return (
        (VECTORS / f"{stem}.bin").read_bytes(),
        (VECTORS / f"{stem}.{ek}.der").read_bytes(),
        (VECTORS / chain).read_bytes(),
        when,
    )


@pytest.mark.parametrize("key", list(SAMPLES))
def test_real_snp_report_verifies_to_the_pinned_ark_milan(key: str) -> None:
    report, ek, chain, when = material(key)
    verified = verify_snp_report(report, endorsement_key_cert=ek, cert_chain=chain, now=when)
    assert verified.root == "AMD ARK-Milan"
    assert verified.endorsement == ("VLEK" if key == "vlek-aws" else "VCEK")
    assert "report-signature" in verified.checks
    assert "reported-tcb-matches-cert" in verified.checks
    assert ("chip-id-matches-hwid" in verified.checks) is (key != "vlek-aws")
    assert verified.report.raw == report
    assert verified.verified_at == when


def test_parsed_report_and_pem_leaf_are_accepted_too() -> None:
    report, ek, chain, when = material("virtee")
    pem = ssl.DER_cert_to_PEM_cert(ek).encode()
    verified = verify_snp_report(
        parse_snp_report(report), endorsement_key_cert=pem, cert_chain=chain, now=when
    )
    assert verified.report.measurement == parse_snp_report(report).measurement


def test_milan_pin_is_the_ark_in_the_vector_chain() -> None:
    chain = x509.load_pem_x509_certificates((VECTORS / "amd-milan-ask-ark.pem").read_bytes())
    ark = next(c for c in chain if c.subject == c.issuer)
    spki = ark.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    assert digest.finalize().hex() == AMD_ARK_SPKI_SHA256["Milan"]


@pytest.mark.parametrize("offset", [0x00, 0x50, 0x90, 0x180, 0x29F])
def test_one_flipped_byte_in_the_signed_report_fails(offset: int) -> None:
    report, ek, chain, when = material("trustee")
    tampered = bytearray(report)
    tampered[offset] ^= 0x01
    with pytest.raises(EvidenceError):
        verify_snp_report(bytes(tampered), endorsement_key_cert=ek, cert_chain=chain, now=when)


def test_flipped_byte_in_the_signature_fails() -> None:
    report, ek, chain, when = material("virtee")
    tampered = bytearray(report)
    tampered[0x2A0 + 5] ^= 0x80
    with pytest.raises(EvidenceError, match="signature does not verify"):
        verify_snp_report(bytes(tampered), endorsement_key_cert=ek, cert_chain=chain, now=when)


def test_expired_vlek_is_refused_at_a_later_time() -> None:
    report, ek, chain, _ = material("vlek-aws")
    with pytest.raises(EvidenceError, match="SEV-VLEK is not valid at 2025-12-11"):
        verify_snp_report(
            report,
            endorsement_key_cert=ek,
            cert_chain=chain,
            now=datetime(2025, 12, 11, tzinfo=UTC),
        )


def test_vcek_is_refused_before_its_validity_starts() -> None:
    report, ek, chain, _ = material("virtee")  # VCEK valid from 2023-04-03
    with pytest.raises(EvidenceError, match="not valid at 2023-01-01"):
        verify_snp_report(
            report, endorsement_key_cert=ek, cert_chain=chain, now=datetime(2023, 1, 1, tzinfo=UTC)
        )


def test_naive_verification_time_is_refused() -> None:
    report, ek, chain, _ = material("virtee")
    with pytest.raises(EvidenceError, match="timezone-aware"):
        verify_snp_report(
            report, endorsement_key_cert=ek, cert_chain=chain, now=datetime(2026, 1, 1)
        )


def test_another_chips_vcek_does_not_verify_the_report() -> None:
    report, _, chain, when = material("virtee")
    _, other_ek, _, _ = material("trustee")  # same TCB, different chip
    with pytest.raises(EvidenceError, match="signature does not verify"):
        verify_snp_report(report, endorsement_key_cert=other_ek, cert_chain=chain, now=when)


def test_vcek_for_another_tcb_is_refused() -> None:
    report, _, chain, when = material("virtee")
    _, debug_vcek, _, _ = material("gosev-debug")  # signed TCB bl2/snp5/uc68, report says uc115
    with pytest.raises(EvidenceError):
        verify_snp_report(report, endorsement_key_cert=debug_vcek, cert_chain=chain, now=when)


def test_vlek_chain_without_the_asvk_fails() -> None:
    report, ek, _, when = material("vlek-aws")
    ask_ark = (VECTORS / "amd-milan-ask-ark.pem").read_bytes()
    with pytest.raises(EvidenceError, match="SEV-VLEK-Milan"):
        verify_snp_report(report, endorsement_key_cert=ek, cert_chain=ask_ark, now=when)


def test_chain_without_an_ark_fails() -> None:
    report, ek, chain, when = material("virtee")
    ask_only = next(
        c for c in x509.load_pem_x509_certificates(chain) if c.subject != c.issuer
    ).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(EvidenceError, match="pinned AMD root key"):
        verify_snp_report(report, endorsement_key_cert=ek, cert_chain=ask_only, now=when)


def test_vcek_tcb_extensions_are_read() -> None:
    info = endorsement_key_tcb((VECTORS / "snp-milan-v2-trustee.vcek.der").read_bytes())
    assert (info["bl"], info["tee"], info["snp"], info["ucode"]) == (3, 0, 8, 115)
    assert info["product_name"] == "Milan-B0"
    assert info["hwid"] == parse_snp_report(material("trustee")[0]).extra["chip_id"]
    vlek = endorsement_key_tcb((VECTORS / "snp-milan-v3-vlek-aws.vlek.der").read_bytes())
    assert vlek["csp_id"] == "CN=cc-us-east-2.amazonaws.com"
    assert vlek["ucode"] == 217


def test_garbage_certificate_is_an_evidence_error() -> None:
    report, _, chain, when = material("virtee")
    with pytest.raises(EvidenceError, match=r"not a valid X\.509"):
        verify_snp_report(report, endorsement_key_cert=b"\x30\x03junk", cert_chain=chain, now=when)


# A complete, internally consistent chain under a self-made "ARK-Milan".

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_AMD = "1.3.6.1.4.1.3704.1"


def _name(cn: str) -> x509.Name:
    # The same distinguished name as AMD's certificates, so only keys and signatures differ.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _der_int(value: int) -> bytes:
    body = value.to_bytes((value.bit_length() + 8) // 8 or 1, "big")
    return bytes([0x02, len(body)]) + body


def _fake_chain_and_report(
    product_name: str | None = None, ask_cn: str = "SEV-Milan"
) -> tuple[bytes, bytes, bytes]:
    """Re-sign the virtee report with a VCEK under a self-made ARK → ASK chain."""
    report = bytearray(material("virtee")[0])
    parsed = parse_snp_report(bytes(report))
    start, end = NOW - timedelta(days=365), NOW + timedelta(days=365)
    ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    vcek_key = ec.generate_private_key(ec.SECP384R1())

    def cert(
        subject: str, issuer: str, public: object, signer: object, ca: bool, exts: dict[str, bytes]
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(_name(issuer))
            .public_key(public)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        for oid, value in exts.items():
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=False
            )
        return builder.sign(signer, hashes.SHA384(), rsa_padding=PSS)  # type: ignore[arg-type]

    tcb = parsed.extra["reported_tcb"]
    exts = {
        f"{_AMD}.3.1": _der_int(tcb["bl"]),
        f"{_AMD}.3.2": _der_int(tcb["tee"]),
        f"{_AMD}.3.3": _der_int(tcb["snp"]),
        f"{_AMD}.3.8": _der_int(tcb["ucode"]),
        f"{_AMD}.4": bytes.fromhex(parsed.extra["chip_id"]),
    }
    if product_name is not None:
        exts[f"{_AMD}.2"] = bytes([0x16, len(product_name)]) + product_name.encode()
    ark = cert("ARK-Milan", "ARK-Milan", ark_key.public_key(), ark_key, True, {})
    ask = cert(ask_cn, "ARK-Milan", ask_key.public_key(), ark_key, True, {})
    vcek = cert("SEV-VCEK", ask_cn, vcek_key.public_key(), ask_key, False, exts)
    r, s = decode_dss_signature(vcek_key.sign(bytes(report[:0x2A0]), ec.ECDSA(hashes.SHA384())))
    report[0x2A0 : 0x2A0 + 72] = r.to_bytes(72, "little")
    report[0x2E8 : 0x2E8 + 72] = s.to_bytes(72, "little")
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (ask, ark))
    return bytes(report), vcek.public_bytes(serialization.Encoding.DER), chain


@pytest.fixture(scope="module")
def fake() -> tuple[bytes, bytes, bytes]:
    return _fake_chain_and_report()


def test_chain_to_a_self_made_ark_is_refused(fake: tuple[bytes, bytes, bytes]) -> None:
    report, vcek, chain = fake
    with pytest.raises(EvidenceError, match="pinned AMD root key"):
        verify_snp_report(report, endorsement_key_cert=vcek, cert_chain=chain, now=NOW)


def test_self_made_chain_is_otherwise_complete(fake: tuple[bytes, bytes, bytes]) -> None:
    # Same input with the fake ARK pinned verifies, so the refusal above is the pin alone.
    report, vcek, chain = fake
    verified = _verify_snp_report(
        report,
        endorsement_key_cert=vcek,
        cert_chain=chain,
        now=NOW,
        trusted_arks={"Milan": _spki_pin(chain)},
    )
    assert "chip-id-matches-hwid" in verified.checks


def _spki_pin(chain: bytes) -> str:
    ark = next(c for c in x509.load_pem_x509_certificates(chain) if c.subject == c.issuer)
    spki = ark.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()


def test_vcek_issued_by_the_vlek_intermediate_is_refused() -> None:
    report, vcek, chain = _fake_chain_and_report(ask_cn="SEV-VLEK-Milan")
    with pytest.raises(EvidenceError, match="must be issued by 'SEV-Milan'"):
        _verify_snp_report(
            report,
            endorsement_key_cert=vcek,
            cert_chain=chain,
            now=NOW,
            trusted_arks={"Milan": _spki_pin(chain)},
        )


def test_vcek_of_another_product_is_refused_under_a_milan_ark() -> None:
    report, vcek, chain = _fake_chain_and_report(product_name="Genoa")
    with pytest.raises(EvidenceError, match="a Genoa VCEK/VLEK cannot chain to ARK-Milan"):
        _verify_snp_report(
            report,
            endorsement_key_cert=vcek,
            cert_chain=chain,
            now=NOW,
            trusted_arks={"Milan": _spki_pin(chain)},
        )


def test_real_ask_cannot_be_paired_with_a_self_made_vcek(fake: tuple[bytes, bytes, bytes]) -> None:
    report, vcek, _ = fake
    real_chain = (VECTORS / "amd-milan-ask-ark.pem").read_bytes()
    with pytest.raises(EvidenceError, match="VCEK/VLEK certificate signature does not verify"):
        verify_snp_report(report, endorsement_key_cert=vcek, cert_chain=real_chain, now=NOW)


def test_report_claiming_vlek_with_a_vcek_certificate_is_refused() -> None:
    report, ek, chain, when = material("virtee")
    claims_vlek = bytearray(report)
    claims_vlek[0x48] |= 1 << 2  # SIGNING_KEY = VLEK
    with pytest.raises(EvidenceError, match="signed by a VLEK but the certificate is 'SEV-VCEK'"):
        verify_snp_report(bytes(claims_vlek), endorsement_key_cert=ek, cert_chain=chain, now=when)


# The configfs-tsm auxblob certificate table.


def _cert_table(entries: list[tuple[str, bytes]], *, terminate: bool = True) -> bytes:
    header_size = 24 * (len(entries) + (1 if terminate else 0))
    header, body = b"", b""
    for guid, der in entries:
        header += uuid.UUID(guid).bytes + struct.pack("<II", header_size + len(body), len(der))
        body += der
    return header + (bytes(24) if terminate else b"") + body


def _ask_ark_der(chain_name: str) -> tuple[bytes, bytes]:
    certs = x509.load_pem_x509_certificates((VECTORS / chain_name).read_bytes())
    ark = next(c for c in certs if c.subject == c.issuer)
    ask = next(c for c in certs if c.subject != c.issuer)
    der = serialization.Encoding.DER
    return ask.public_bytes(der), ark.public_bytes(der)


def test_cert_table_feeds_verification() -> None:
    report, vcek, _, when = material("trustee")
    ask, ark = _ask_ark_der("amd-milan-ask-ark.pem")
    table = _cert_table(
        [
            ("63da758d-e664-4564-adc5-f4b93be8accd", vcek),
            ("4ab7b379-bbac-4fe4-a02f-05aef327c782", ask),
            ("c0b406a4-a803-4952-9743-3fb6014cd0ae", ark),
            ("00000000-0000-0000-0000-0000000000aa", b"other"),
        ]
    )
    certs = parse_snp_cert_table(table)
    assert certs["vcek"] == vcek
    assert certs["00000000-0000-0000-0000-0000000000aa"] == b"other"
    verified = verify_snp_report(
        report,
        endorsement_key_cert=certs["vcek"],
        cert_chain=[certs["ask"], certs["ark"]],
        now=when,
    )
    assert verified.endorsement == "VCEK"


def test_malformed_cert_tables_are_refused() -> None:
    vcek = material("virtee")[1]
    good = [("63da758d-e664-4564-adc5-f4b93be8accd", vcek)]
    with pytest.raises(EvidenceError, match="terminating zero entry"):
        parse_snp_cert_table(_cert_table(good, terminate=False)[:24])
    too_long = bytearray(_cert_table(good))
    struct.pack_into("<I", too_long, 20, len(vcek) + 1)
    with pytest.raises(EvidenceError, match="outside the table"):
        parse_snp_cert_table(bytes(too_long))
    into_header = bytearray(_cert_table(good))
    struct.pack_into("<I", into_header, 16, 4)
    with pytest.raises(EvidenceError, match="outside the table"):
        parse_snp_cert_table(bytes(into_header))
    with pytest.raises(EvidenceError, match="twice"):
        parse_snp_cert_table(_cert_table(good + good))
    assert parse_snp_cert_table(bytes(24)) == {}


def test_kds_vcek_url_names_the_chip_and_reported_tcb() -> None:
    report = material("trustee")[0]  # current_tcb ucode 206 != reported_tcb ucode 115
    chip = parse_snp_report(report).extra["chip_id"]
    assert kds_vcek_url(report, product="Milan") == (
        f"https://kdsintf.amd.com/vcek/v1/Milan/{chip}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"
    )
    turin = kds_vcek_url(report, product="Turin")
    assert turin.startswith(f"https://kdsintf.amd.com/vcek/v1/Turin/{chip[:16]}?fmcSPL=3&blSPL=0")


def test_kds_vcek_url_refuses_vlek_reports_and_unknown_products() -> None:
    with pytest.raises(EvidenceError, match="not signed by a VCEK"):
        kds_vcek_url(material("vlek-aws")[0], product="Milan")
    with pytest.raises(EvidenceError, match="unknown AMD product"):
        kds_vcek_url(material("virtee")[0], product="Naples")
