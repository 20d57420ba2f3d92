"""One entry point for the appraisal layer: verify hardware evidence by TEE name."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cleanroom.attestation.hardware._report import HardwareVerification, as_bytes
from cleanroom.attestation.hardware.amd_chain import parse_snp_cert_table, verify_snp_report
from cleanroom.attestation.hardware.dcap import (
    verify_quote_signatures,
    verify_quote_with_collateral,
)
from cleanroom.attestation.hardware.quote import parse_quote
from cleanroom.attestation.hardware.snp import parse_snp_report
from cleanroom.errors import EvidenceError


def verify_hardware_evidence(
    tee: str,
    raw: bytes,
    *,
    aux: bytes | None = None,
    collateral: str | bytes | None = None,
    amd_cert_chain: bytes | Sequence[bytes] | None = None,
    now: datetime | None = None,
) -> HardwareVerification:
    """Verify ``raw`` evidence of TEE ``tee`` (``"sev-snp"``, ``"tdx"`` or ``"sgx"``).

    * ``sev-snp``: ``aux`` is the certificate table (configfs-tsm ``auxblob``) holding the
      VCEK or VLEK; the ASK/ASVK and ARK come from ``amd_cert_chain`` when given (needed for
      a VLEK: the table does not carry the ASVK), else from the table.
    * ``sgx`` / ``tdx``: with ``collateral`` (dcap-qvl JSON, see
      :func:`~cleanroom.attestation.hardware.collateral_from_pcs`) the full DCAP check and a
      ``tcb_status``; without it only the signatures up to the Intel root
      (``tcb_status is None`` — a policy should refuse that unless it opts in).

    The quote's own TEE type must equal ``tee``. Raises
    :class:`~cleanroom.errors.EvidenceError` on any failure.
    """
    data = as_bytes(raw, "evidence")
    if tee == "sev-snp":
        if collateral is not None:
            raise EvidenceError("DCAP collateral does not apply to SEV-SNP evidence")
        parse_snp_report(data)  # a malformed report fails before its certificates are read
        if aux is None:
            raise EvidenceError(
                "SEV-SNP evidence needs its VCEK/VLEK: no certificate table (auxblob) was given"
            )
        table = parse_snp_cert_table(aux)
        endorsement = table.get("vcek") or table.get("vlek")
        if endorsement is None:
            raise EvidenceError("the SEV-SNP certificate table holds no VCEK or VLEK")
        if amd_cert_chain is not None:
            chain: bytes | Sequence[bytes] = amd_cert_chain
        else:
            chain = [table[name] for name in ("ask", "ark") if name in table]
        return verify_snp_report(data, endorsement_key_cert=endorsement, cert_chain=chain, now=now)
    if tee in ("sgx", "tdx"):
        if aux is not None or amd_cert_chain is not None:
            raise EvidenceError(f"{tee} evidence takes no certificate table or AMD chain")
        actual = parse_quote(data).tee
        if actual != tee:
            raise EvidenceError(f"the evidence is labelled {tee!r} but holds a {actual!r} quote")
        if collateral is None:
            return verify_quote_signatures(data, now=now)
        return verify_quote_with_collateral(data, collateral, now=now)
    raise EvidenceError(f"no hardware verifier for TEE type {tee!r}")


__all__ = ["verify_hardware_evidence"]
