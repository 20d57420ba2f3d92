"""``cleanroom model open`` refuses outputs of a contract the recipient never signed.

The operator controls the outputs directory and the store: a receipt may name any contract
in the store. A recipient must only trust outputs of a contract it signed itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from cleanroom.cli import main
from cleanroom.contract import Contract, ContractRegistry, SigningKey
from cleanroom.store import open_store


def test_outputs_of_a_contract_the_party_never_signed_are_refused(
    tmp_path: Path,
    contract: Contract,
    party_keys: dict[str, SigningKey],
    capsys: object,
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    with open_store(f"sqlite:///{workdir / 'cleanroom.db'}") as store:
        registry = ContractRegistry(store)
        contract_hash = registry.submit(contract)
        registry.sign(contract_hash, "beta", party_keys["beta"])  # alpha never signs
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "receipt.json").write_text(json.dumps({"body": {"contract_hash": contract_hash}}))
    status = main(
        ["model", "open", "--party", "alpha", "--outputs", str(outputs), "--workdir", str(workdir)]
    )
    assert status == 41  # ConsentMissing
    assert "alpha has not signed" in capsys.readouterr().err  # type: ignore[attr-defined]
