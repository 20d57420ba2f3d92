"""Property: any JSON payload round-trips through the store and still verifies."""

from __future__ import annotations

import json
import uuid
from typing import Any

import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleanroom.contract import SigningKey
from cleanroom.ledger import Ledger, read_jsonl, to_jsonl, verify_ledger
from cleanroom.store import Store

_LIMIT = 2**53 - 1
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-_LIMIT, max_value=_LIMIT)
    # Integral doubles in [2**53, 1e21) are refused by the ledger (see test_ledger.py).
    | st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: not (f.is_integer() and 2**53 <= abs(f) < 1e21)
    )
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(max_size=8), values, max_size=5)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batch=st.lists(payloads, min_size=1, max_size=3))
def test_payloads_round_trip_and_verify(
    store: Store, enclave_key: SigningKey, batch: list[dict[str, Any]]
) -> None:
    ledger = Ledger.create(store, enclave_key, ledger_id=uuid.uuid4().hex)
    written = [ledger.append("job.rows", payload) for payload in batch]
    stored = ledger.entries()[1:]
    assert stored == written
    for entry, payload in zip(stored, batch, strict=True):
        assert entry.payload == json.loads(rfc8785.dumps(payload))
    text = to_jsonl(ledger.entries())
    assert text.isascii()
    exported = read_jsonl(text.splitlines())
    assert (
        verify_ledger(exported, enclave_key.public_key, head=ledger.head()).count == len(batch) + 1
    )


def test_public_surface_is_pinned() -> None:
    import cleanroom.ledger as ledger

    assert sorted(ledger.__all__) == sorted(
        [
            "GENESIS_KIND", "KNOWN_KINDS", "MAX_PAYLOAD_BYTES", "Ledger", "LedgerEntry",
            "LedgerHead", "VerifiedLedger", "ledger_ids", "read_entries", "read_jsonl",
            "to_jsonl", "verify_ledger",
        ]
    )  # fmt: skip
    for name in ledger.__all__:
        assert getattr(ledger, name) is not None
