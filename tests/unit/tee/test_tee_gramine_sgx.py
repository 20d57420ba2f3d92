"""GramineSgxPlatform against an imitation of /dev/attestation (quote is a FIFO)."""

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanroom.errors import ConfigurationError
from cleanroom.tee import GramineSgxPlatform


@pytest.fixture
def dev_attestation(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "attestation"
    root.mkdir()
    (root / "attestation_type").write_text("dcap")
    (root / "user_report_data").write_bytes(b"\0" * 64)
    os.mkfifo(root / "quote")
    stop = threading.Event()

    def quoting_enclave() -> None:
        # Like Gramine: each read of `quote` produces a quote over the current report data.
        # A FIFO writer can reopen while the previous reader is closing; its write then
        # fails with EPIPE. The real pseudo-file has no such race: just serve the next read.
        while not stop.is_set():
            try:
                with open(root / "quote", "wb") as out:
                    if stop.is_set():
                        return
                    quote = bytearray(b"\x03\x00" + b"\0" * 1100)
                    quote[368:432] = (root / "user_report_data").read_bytes().ljust(64, b"\0")
                    out.write(bytes(quote))
            except BrokenPipeError:
                continue

    thread = threading.Thread(target=quoting_enclave, daemon=True)
    thread.start()
    try:
        yield root
    finally:
        stop.set()
        fd = os.open(root / "quote", os.O_RDONLY | os.O_NONBLOCK)  # unblock the writer
        thread.join(timeout=5)
        os.close(fd)


def test_quote_carries_the_report_data(dev_attestation: Path) -> None:
    platform = GramineSgxPlatform(root=dev_attestation)
    assert platform.tee == "sgx"
    for data in (b"first", b"second" * 10):
        evidence = platform.evidence(data)
        assert evidence.tee == "sgx"
        assert evidence.raw[368:432] == data.ljust(64, b"\0")


def test_needs_dcap(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        GramineSgxPlatform(root=tmp_path)
    (tmp_path / "attestation_type").write_text("none")
    with pytest.raises(ConfigurationError, match="dcap"):
        GramineSgxPlatform(root=tmp_path)
