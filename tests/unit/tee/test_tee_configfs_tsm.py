"""ConfigfsTsmPlatform against a userspace imitation of the configfs-tsm kernel ABI."""

import shutil
import struct
from pathlib import Path

import pytest

from cleanroom.errors import AttestationError, ConfigurationError, EvidenceError
from cleanroom.tee import ConfigfsTsmPlatform
from cleanroom.tee.configfs_tsm import _KernelABI


class FakeKernel(_KernelABI):
    """Does what the kernel does on mkdir/write/rmdir, on a real temporary directory."""

    def __init__(self, provider: str, *, meddle: bool = False, wrong_data: bool = False) -> None:
        self.provider = provider
        self.meddle = meddle
        self.wrong_data = wrong_data
        self.removed: list[Path] = []

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        (path / "provider").write_text(self.provider + "\n")
        (path / "generation").write_text("0\n")
        (path / "outblob").write_bytes(b"")
        (path / "auxblob").write_bytes(b"CERTTABLE" if self.provider == "sev_guest" else b"")

    def write(self, path: Path, data: bytes) -> None:
        super().write(path, data)
        if path.name != "inblob":
            return
        generation = int((path.parent / "generation").read_text()) + 1
        if self.meddle:
            generation += 1  # a second writer used the same entry
        (path.parent / "generation").write_text(f"{generation}\n")
        data = b"\xff" * 64 if self.wrong_data else data
        if self.provider == "sev_guest":
            report = bytearray(0x4A0)
            report[0x50:0x90] = data
        else:
            report = bytearray(struct.pack("<H", 4) + b"\0" * 5000)
            report[568 : 568 + 64] = data
        (path.parent / "outblob").write_bytes(bytes(report))

    def rmdir(self, path: Path) -> None:
        self.removed.append(path)
        shutil.rmtree(path)


def test_sev_snp_report_through_configfs(tmp_path: Path) -> None:
    kernel = FakeKernel("sev_guest")
    platform = ConfigfsTsmPlatform(root=tmp_path, _kernel=kernel)
    assert platform.tee == "sev-snp"
    evidence = platform.evidence(b"nonce-binding")
    assert evidence.tee == "sev-snp"
    assert evidence.raw[0x50:0x90] == b"nonce-binding".ljust(64, b"\0")
    assert evidence.aux == b"CERTTABLE"
    assert list(tmp_path.iterdir()) == []  # entries removed
    assert len(kernel.removed) == 2  # the probe and the report


def test_tdx_quote_through_configfs(tmp_path: Path) -> None:
    platform = ConfigfsTsmPlatform(root=tmp_path, _kernel=FakeKernel("tdx_guest"))
    evidence = platform.evidence(b"\x07" * 64)
    assert (evidence.tee, evidence.aux) == ("tdx", None)
    assert evidence.raw[568:632] == b"\x07" * 64


def test_a_concurrent_writer_is_detected_by_generation(tmp_path: Path) -> None:
    platform = ConfigfsTsmPlatform(root=tmp_path, _kernel=FakeKernel("tdx_guest", meddle=True))
    with pytest.raises(AttestationError, match="generation"):
        platform.evidence(b"x")
    assert list(tmp_path.iterdir()) == []


def test_a_report_without_our_report_data_is_refused(tmp_path: Path) -> None:
    kernel = FakeKernel("sev_guest", wrong_data=True)
    platform = ConfigfsTsmPlatform(root=tmp_path, _kernel=kernel)
    with pytest.raises(AttestationError, match="report data"):
        platform.evidence(b"x")


def test_inblob_is_at_most_64_bytes(tmp_path: Path) -> None:
    platform = ConfigfsTsmPlatform(root=tmp_path, _kernel=FakeKernel("sev_guest"))
    with pytest.raises(EvidenceError):
        platform.evidence(b"x" * 65)


def test_missing_configfs_and_unknown_providers_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        ConfigfsTsmPlatform(root=tmp_path / "absent")
    with pytest.raises(ConfigurationError, match="provider"):
        ConfigfsTsmPlatform(root=tmp_path, _kernel=FakeKernel("arm_cca_guest"))
