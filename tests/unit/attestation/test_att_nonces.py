import datetime as dt

import pytest

from cleanroom.attestation import NonceStore
from cleanroom.errors import ConfigurationError, PolicyViolation

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_nonces_are_single_use() -> None:
    store = NonceStore()
    nonce = store.issue(now=T0)
    store.consume(nonce, now=T0)
    with pytest.raises(PolicyViolation) as caught:
        store.consume(nonce, now=T0)
    assert caught.value.rule == "nonce"


def test_nonces_expire() -> None:
    store = NonceStore(ttl=dt.timedelta(seconds=60))
    nonce = store.issue(now=T0)
    with pytest.raises(PolicyViolation, match="expired"):
        store.consume(nonce, now=T0 + dt.timedelta(seconds=61))


def test_unknown_nonces_and_bounded_memory() -> None:
    store = NonceStore(max_outstanding=3)
    nonces = [store.issue(now=T0) for _ in range(5)]
    assert len(store) == 3
    assert len(set(nonces)) == 5
    with pytest.raises(PolicyViolation):
        store.consume(nonces[0], now=T0)  # evicted, oldest first
    store.consume(nonces[4], now=T0)
    with pytest.raises(PolicyViolation):
        store.consume("made-up", now=T0)


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError):
        NonceStore(ttl=dt.timedelta(0))
    with pytest.raises(ConfigurationError):
        NonceStore(max_outstanding=0)
