"""TEE platforms: where evidence comes from.

A :class:`Platform` turns 64 bytes of report data into :class:`Evidence` signed by the
platform. Backends:

- :mod:`cleanroom.tee.simulated` — development only (``allow_simulation=True``): a launcher
  measures the enclave bundle, runs it as a separate process and signs its reports with a
  key certified by a simulation root CA. It protects nothing from the operator.
- :class:`ConfigfsTsmPlatform` — SEV-SNP and TDX guests (Linux configfs-tsm).
- :class:`GramineSgxPlatform` — SGX enclaves under Gramine (``/dev/attestation``).

Evidence is verified by :func:`cleanroom.attestation.verify`, never here.
"""

from cleanroom.tee._base import REPORT_DATA_SIZE, TEE_TYPES, Evidence, Platform
from cleanroom.tee.bundle import Bundle, build_bundle, manifest, measure_bundle
from cleanroom.tee.configfs_tsm import ConfigfsTsmPlatform
from cleanroom.tee.gramine_sgx import GramineSgxPlatform
from cleanroom.tee.simulated import EnclaveProcess, SimulatedLauncher, SimulatedPlatform

__all__ = [
    "REPORT_DATA_SIZE",
    "TEE_TYPES",
    "Bundle",
    "ConfigfsTsmPlatform",
    "EnclaveProcess",
    "Evidence",
    "GramineSgxPlatform",
    "Platform",
    "SimulatedLauncher",
    "SimulatedPlatform",
    "build_bundle",
    "manifest",
    "measure_bundle",
]
