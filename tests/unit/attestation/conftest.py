"""Shared fixtures for the attestation unit tests (the hardware/ tests do not use them)."""

from collections.abc import Mapping
from typing import Any

import pytest
from joserfc.jwk import ECKey

from cleanroom.attestation import report_data_for
from cleanroom.tee import Evidence, SimulatedLauncher

MEASUREMENT = "5e" * 48
CONFIG_ID = "c0" * 32


@pytest.fixture(scope="session")
def launcher() -> SimulatedLauncher:
    return SimulatedLauncher(allow_simulation=True, svn=3)


@pytest.fixture(scope="session")
def tee_jwk() -> Mapping[str, Any]:
    return ECKey.generate_key("P-256", private=True).as_dict(private=False)


@pytest.fixture
def make_evidence(launcher: SimulatedLauncher, tee_jwk: Mapping[str, Any]) -> Any:
    def make(
        nonce: str = "nonce-0123456789",
        *,
        measurement: str = MEASUREMENT,
        config_id: str | None = CONFIG_ID,
    ) -> Evidence:
        return launcher.sign_report(
            measurement=measurement,
            config_id=None if config_id is None else bytes.fromhex(config_id),
            report_data=report_data_for(nonce, tee_jwk),
        )

    return make
