"""SEV-SNP and TDX evidence through the Linux configfs-tsm ABI (``/sys/kernel/config/tsm/report``).

One report = one entry directory: ``mkdir`` it, read ``generation``, write ``inblob`` (the
64-byte REPORTDATA), read ``outblob`` (the SNP ATTESTATION_REPORT or TDX quote),
``provider`` (``sev_guest`` or ``tdx_guest``), ``auxblob`` (SNP certificate table, may be
empty) and ``generation`` again, then ``rmdir``. The generation must have advanced by
exactly one — otherwise another writer touched the entry and the report is refused (as
Intel's reference client does). Requires Linux 6.7+ inside a confidential VM.
"""

from __future__ import annotations

import os
import secrets
import struct
import threading
from pathlib import Path

from cleanroom.errors import AttestationError, ConfigurationError
from cleanroom.tee._base import Evidence, pad_report_data

DEFAULT_ROOT = Path("/sys/kernel/config/tsm/report")
PROVIDERS = {"sev_guest": "sev-snp", "tdx_guest": "tdx"}


class _KernelABI:
    """The file operations on configfs. A private seam: tests imitate the kernel with it."""

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def write(self, path: Path, data: bytes) -> None:
        with open(path, "wb", buffering=0) as out:
            out.write(data)


def _embedded_report_data(tee: str, blob: bytes) -> bytes | None:
    if tee == "sev-snp":
        return blob[0x50:0x90] if len(blob) >= 0x90 else None
    if len(blob) < 2:
        return None
    (version,) = struct.unpack_from("<H", blob, 0)
    offset = {4: 568, 5: 574}.get(version)  # v5 adds body_type (2) + body_size (4)
    return blob[offset : offset + 64] if offset and len(blob) >= offset + 64 else None


class ConfigfsTsmPlatform:
    """:class:`~cleanroom.tee.Platform` for SEV-SNP and TDX guests via configfs-tsm.

    The TEE type comes from ``provider``, read once at construction (which fails with
    :class:`ConfigurationError` when configfs-tsm is not there).
    """

    def __init__(self, *, root: Path = DEFAULT_ROOT, _kernel: _KernelABI | None = None) -> None:
        self._root = Path(root)
        self._kernel = _kernel or _KernelABI()
        self._lock = threading.Lock()
        if not self._root.is_dir():
            raise ConfigurationError(f"configfs-tsm is not available at {self._root}")
        entry = self._new_entry()
        try:
            provider = self._kernel.read(entry / "provider").decode().strip()
        finally:
            self._kernel.rmdir(entry)
        if provider not in PROVIDERS:
            raise ConfigurationError(f"unsupported configfs-tsm provider {provider!r}")
        self._tee = PROVIDERS[provider]

    def __repr__(self) -> str:
        return f"ConfigfsTsmPlatform(root={str(self._root)!r}, tee={self._tee!r})"

    @property
    def tee(self) -> str:
        """``sev-snp`` or ``tdx``."""
        return self._tee

    def _new_entry(self) -> Path:
        entry = self._root / f"cleanroom-{secrets.token_hex(8)}"
        try:
            self._kernel.mkdir(entry)
        except OSError as error:
            raise AttestationError(f"cannot create a configfs-tsm report entry: {error}") from error
        return entry

    def evidence(self, report_data: bytes) -> Evidence:
        """A fresh report binding ``report_data`` (zero-padded to 64 bytes)."""
        inblob = pad_report_data(report_data)
        with self._lock:
            entry = self._new_entry()
            try:
                before = int(self._kernel.read(entry / "generation"))
                self._kernel.write(entry / "inblob", inblob)
                outblob = self._kernel.read(entry / "outblob")
                provider = self._kernel.read(entry / "provider").decode().strip()
                after = int(self._kernel.read(entry / "generation"))
                try:
                    aux = self._kernel.read(entry / "auxblob") or None
                except FileNotFoundError:
                    aux = None
            except (OSError, ValueError) as error:
                raise AttestationError(f"configfs-tsm report failed: {error}") from error
            finally:
                self._kernel.rmdir(entry)
        if after != before + 1:
            raise AttestationError(
                "configfs-tsm generation changed unexpectedly: another writer used the entry"
            )
        if PROVIDERS.get(provider) != self._tee:
            raise AttestationError(f"configfs-tsm provider changed to {provider!r}")
        if not outblob:
            raise AttestationError("configfs-tsm returned an empty report")
        if _embedded_report_data(self._tee, outblob) != inblob:
            raise AttestationError("the report does not carry the requested report data")
        return Evidence(tee=self._tee, raw=outblob, aux=aux)
