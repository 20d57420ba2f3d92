"""AMD SEV-SNP ``ATTESTATION_REPORT`` parsing (SEV-SNP ABI spec, Table 22).

Layout (1184 = 0x4A0 bytes, little-endian integers)::

    0x000 u32  VERSION (2..5 accepted)        0x0E0 [48] ID_KEY_DIGEST
    0x004 u32  GUEST_SVN                      0x110 [48] AUTHOR_KEY_DIGEST
    0x008 u64  POLICY (bit 19 = DEBUG)        0x140 [32] REPORT_ID
    0x010 [16] FAMILY_ID                      0x160 [32] REPORT_ID_MA
    0x020 [16] IMAGE_ID                       0x180 u64  REPORTED_TCB
    0x030 u32  VMPL                           0x188 u8×3 CPUID fam/model/stepping (v3+)
    0x034 u32  SIGNATURE_ALGO (1 = P-384)     0x1A0 [64] CHIP_ID
    0x038 u64  CURRENT_TCB                    0x1E0 u64  COMMITTED_TCB
    0x040 u64  PLATFORM_INFO                  0x1E8 u8×3 current build/minor/major
    0x048 u32  signer info (bit 0 author key, 0x1EC u8×3 committed build/minor/major
               bit 1 mask chip key, bits 2-4  0x1F0 u64  LAUNCH_TCB
               signing key 0 VCEK 1 VLEK)     0x2A0 [72] signature R (little-endian)
    0x050 [64] REPORT_DATA                    0x2E8 [72] signature S (little-endian)
    0x090 [48] MEASUREMENT                    signed bytes: 0x000..0x29F (SHA-384)
    0x0C0 [32] HOST_DATA

A TCB version is a u64. Milan/Genoa: byte 0 boot loader, 1 TEE, 6 SNP, 7 microcode.
Turin (CPUID family 0x1A): byte 0 FMC, 1 boot loader, 2 TEE, 3 SNP, 7 microcode.
"""

from __future__ import annotations

from typing import Any

from cleanroom.attestation.hardware._report import HardwareReport, Reader, as_bytes, is_zero
from cleanroom.errors import EvidenceError

SNP_REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SIGNATURE_OFFSET = 0x2A0
COMPONENT_SIZE = 72
SUPPORTED_VERSIONS = frozenset({2, 3, 4, 5})
TURIN_FAMILY = 0x1A

_POLICY_FLAGS = {
    16: "SMT",
    17: "RESERVED_1",
    18: "MIGRATE_MA",
    19: "DEBUG",
    20: "SINGLE_SOCKET",
    21: "CXL_ALLOW",
    22: "MEM_AES_256_XTS",
    23: "RAPL_DIS",
    24: "CIPHERTEXT_HIDING",
    25: "PAGE_SWAP_DISABLE",
}
_SIGNING_KEYS = {0: "VCEK", 1: "VLEK", 7: "NONE"}
POLICY_DEBUG_BIT = 19


def decode_tcb(raw: int, *, turin: bool) -> dict[str, Any]:
    """Split a TCB version u64 into its SPL components (``raw`` is kept as 16 hex digits)."""
    b = raw.to_bytes(8, "little")
    if turin:
        return {
            "fmc": b[0],
            "bl": b[1],
            "tee": b[2],
            "snp": b[3],
            "ucode": b[7],
            "raw": f"{raw:016x}",
        }
    return {"bl": b[0], "tee": b[1], "snp": b[6], "ucode": b[7], "raw": f"{raw:016x}"}


def parse_snp_report(blob: bytes) -> HardwareReport:
    """Parse a 1184-byte SEV-SNP attestation report (the configfs-tsm ``sev_guest`` outblob).

    Raises :class:`~cleanroom.errors.EvidenceError` when the length is not exactly 1184 bytes,
    the version is not 2..5, the signature algorithm is not ECDSA P-384 (1), or the signing
    key field is not VCEK, VLEK or none. The signature is *not* checked here; see
    :func:`cleanroom.attestation.hardware.verify_snp_report`.
    """
    data = as_bytes(blob, "SEV-SNP report")
    if len(data) != SNP_REPORT_SIZE:
        raise EvidenceError(
            f"SEV-SNP report must be exactly {SNP_REPORT_SIZE} bytes, got {len(data)}"
        )
    r = Reader(data, "SEV-SNP report")
    version = r.u32(0x00, "VERSION")
    if version not in SUPPORTED_VERSIONS:
        raise EvidenceError(f"unsupported SEV-SNP report version {version} (expected 2..5)")
    sig_algo = r.u32(0x34, "SIGNATURE_ALGO")
    if sig_algo != 1:
        raise EvidenceError(f"unsupported SEV-SNP signature algorithm {sig_algo} (expected 1)")
    signer_info = r.u32(0x48, "signer info")
    key_code = (signer_info >> 2) & 0x7
    if key_code not in _SIGNING_KEYS:
        raise EvidenceError(f"unknown SEV-SNP signing key type {key_code}")
    if signer_info >> 5:
        raise EvidenceError("SEV-SNP signer info has reserved bits set")

    policy = r.u64(0x08, "POLICY")
    family = model = stepping = None
    if version >= 3:
        family, model, stepping = data[0x188], data[0x189], data[0x18A]
    turin = family == TURIN_FAMILY

    author_key_en = bool(signer_info & 0x1)
    id_key_digest = r.bytes(0xE0, 48, "ID_KEY_DIGEST")
    author_key_digest = r.bytes(0x110, 48, "AUTHOR_KEY_DIGEST")
    if author_key_en:
        signer: str | None = author_key_digest.hex()
    elif not is_zero(id_key_digest):
        signer = id_key_digest.hex()
    else:
        signer = None

    def fw(offset: int) -> str:
        return f"{data[offset + 2]}.{data[offset + 1]}.{data[offset]}"

    extra: dict[str, Any] = {
        "guest_svn": r.u32(0x04, "GUEST_SVN"),
        "policy": policy,
        "policy_abi": f"{(policy >> 8) & 0xFF}.{policy & 0xFF}",
        "policy_flags": [name for bit, name in _POLICY_FLAGS.items() if policy >> bit & 1],
        "family_id": r.bytes(0x10, 16, "FAMILY_ID").hex(),
        "image_id": r.bytes(0x20, 16, "IMAGE_ID").hex(),
        "vmpl": r.u32(0x30, "VMPL"),
        "signature_algo": sig_algo,
        "current_tcb": decode_tcb(r.u64(0x38, "CURRENT_TCB"), turin=turin),
        "platform_info": r.u64(0x40, "PLATFORM_INFO"),
        "author_key_en": author_key_en,
        "mask_chip_key": bool(signer_info & 0x2),
        "signing_key": _SIGNING_KEYS[key_code],
        "host_data": r.bytes(0xC0, 32, "HOST_DATA").hex(),
        "id_key_digest": id_key_digest.hex(),
        "author_key_digest": author_key_digest.hex(),
        "report_id": r.bytes(0x140, 32, "REPORT_ID").hex(),
        "report_id_ma": r.bytes(0x160, 32, "REPORT_ID_MA").hex(),
        "reported_tcb": decode_tcb(r.u64(0x180, "REPORTED_TCB"), turin=turin),
        "reported_tcb_raw": r.u64(0x180, "REPORTED_TCB"),
        "chip_id": r.bytes(0x1A0, 64, "CHIP_ID").hex(),
        "committed_tcb": decode_tcb(r.u64(0x1E0, "COMMITTED_TCB"), turin=turin),
        "current_fw": fw(0x1E8),
        "committed_fw": fw(0x1EC),
        "launch_tcb": decode_tcb(r.u64(0x1F0, "LAUNCH_TCB"), turin=turin),
    }
    if family is not None:
        extra["cpuid_fam_mod_step"] = [family, model, stepping]
    return HardwareReport(
        tee="sev-snp",
        version=version,
        measurement=r.bytes(0x90, 48, "MEASUREMENT").hex(),
        rtmrs=(),
        signer=signer,
        product_id=extra["image_id"],
        svn=extra["guest_svn"],
        debug=bool(policy >> POLICY_DEBUG_BIT & 1),
        report_data=r.bytes(0x50, 64, "REPORT_DATA"),
        config_id=r.bytes(0xC0, 32, "HOST_DATA"),
        raw=data,
        extra=extra,
    )


def snp_signature(report: HardwareReport) -> tuple[bytes, int, int]:
    """The signed bytes and the (r, s) integers of a parsed SNP report's signature."""
    raw = report.raw
    r_int = int.from_bytes(raw[SIGNATURE_OFFSET : SIGNATURE_OFFSET + COMPONENT_SIZE], "little")
    s_off = SIGNATURE_OFFSET + COMPONENT_SIZE
    s_int = int.from_bytes(raw[s_off : s_off + COMPONENT_SIZE], "little")
    return raw[:SIGNED_SIZE], r_int, s_int


__all__ = ["SNP_REPORT_SIZE", "decode_tcb", "parse_snp_report"]
