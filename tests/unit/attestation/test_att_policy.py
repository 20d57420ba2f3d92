import datetime as dt

import pytest

from cleanroom.attestation import AttestationPolicy, policy_id
from cleanroom.errors import ConfigurationError


def test_default_policy_denies_everything() -> None:
    policy = AttestationPolicy()
    assert policy.allowed_tees == frozenset()
    assert policy.allowed_measurements == frozenset()
    assert policy.allow_debug is False
    assert policy.allow_simulation is False


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        AttestationPolicy(frozenset({"tdx"}))  # type: ignore[misc]


def test_values_are_normalized() -> None:
    policy = AttestationPolicy(
        allowed_tees=["tdx"], allowed_measurements=["ABCD"], required_config_id="EF"
    )
    assert policy.allowed_tees == frozenset({"tdx"})
    assert policy.allowed_measurements == frozenset({"abcd"})
    assert policy.required_config_id == "ef"
    assert "simulated" in AttestationPolicy(allow_simulation=True).allowed_tees


@pytest.mark.parametrize(
    "kwargs",
    [
        {"allowed_tees": {"simulated"}},
        {"allowed_tees": {"quantum"}},
        {"allowed_tees": "tdx"},
        {"allowed_measurements": "abcd"},
        {"allowed_measurements": {"xyz1"}},
        {"allowed_measurements": {"abc"}},
        {"min_svn": -1},
        {"allow_debug": "yes"},
        {"max_evidence_age": dt.timedelta(0)},
        {"clock_skew": dt.timedelta(hours=1)},
    ],
)
def test_contradictory_or_malformed_settings_fail_at_construction(kwargs: dict) -> None:
    with pytest.raises(ConfigurationError):
        AttestationPolicy(**kwargs)


def test_policy_id_is_a_stable_digest() -> None:
    a = AttestationPolicy(allowed_tees={"tdx", "sgx"}, allowed_measurements={"aa"})
    b = AttestationPolicy(allowed_tees={"sgx", "tdx"}, allowed_measurements={"AA"})
    assert policy_id(a) == policy_id(b)
    assert policy_id(a) != policy_id(AttestationPolicy(allowed_tees={"tdx"}))
