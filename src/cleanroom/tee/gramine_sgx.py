"""SGX evidence through Gramine's ``/dev/attestation`` pseudo-files.

Write the 64-byte REPORTDATA to ``user_report_data``, then read ``quote`` (a DCAP quote
from the Quoting Enclave). ``attestation_type`` must read ``dcap``. The files are
process-local, so only threads of this process can interleave; a lock keeps the write and
the read together.
"""

from __future__ import annotations

import threading
from pathlib import Path

from cleanroom.errors import AttestationError, ConfigurationError
from cleanroom.tee._base import Evidence, pad_report_data

DEFAULT_ROOT = Path("/dev/attestation")
_REPORT_DATA = slice(368, 432)  # REPORTDATA inside an SGX quote v3/v4 body


class GramineSgxPlatform:
    """:class:`~cleanroom.tee.Platform` for SGX enclaves running under Gramine (DCAP)."""

    def __init__(self, *, root: Path = DEFAULT_ROOT) -> None:
        self._root = Path(root)
        self._lock = threading.Lock()
        try:
            kind = (self._root / "attestation_type").read_text().strip()
        except OSError as error:
            raise ConfigurationError(f"Gramine attestation is not available at {root}") from error
        if kind != "dcap":
            raise ConfigurationError(f"Gramine attestation type is {kind!r}, not 'dcap'")

    def __repr__(self) -> str:
        return f"GramineSgxPlatform(root={str(self._root)!r})"

    @property
    def tee(self) -> str:
        """Always ``sgx``."""
        return "sgx"

    def evidence(self, report_data: bytes) -> Evidence:
        """A DCAP quote binding ``report_data`` (zero-padded to 64 bytes)."""
        padded = pad_report_data(report_data)
        with self._lock:
            try:
                with open(self._root / "user_report_data", "wb", buffering=0) as out:
                    out.write(padded)
                quote = (self._root / "quote").read_bytes()
            except OSError as error:
                raise AttestationError(f"Gramine quote failed: {error}") from error
        if quote[_REPORT_DATA] != padded:
            raise AttestationError("the quote does not carry the requested report data")
        return Evidence(tee="sgx", raw=quote)
