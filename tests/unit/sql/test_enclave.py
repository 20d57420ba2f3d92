"""The enclave refuses packages for another statement, replays, unknown sessions and keys."""

from __future__ import annotations

import pytest

from cleanroom.crypto import CellCipher, ColumnEncryptionKey, EncryptionType, normalize
from cleanroom.errors import DecryptionError, QueryError
from cleanroom.sql import Enclave, simulated_enclave
from cleanroom.sql import package as pkg
from cleanroom.sql.evaluate import ColumnBinding, like_regex
from cleanroom.tee import SimulatedLauncher

STATEMENT = "SELECT age FROM t WHERE age > ?"
VERSION = b"\x05" * 8


@pytest.fixture(scope="module")
def enclave() -> Enclave:
    return simulated_enclave(SimulatedLauncher(allow_simulation=True))[0]


class Client:
    def __init__(self, enclave: Enclave) -> None:
        self.private = pkg.new_ecdh_key()
        info = enclave.attest(pkg.attestation_parameters("n" * 43, self.private.public_key()))
        self.session_id = info.session_id
        self.key = pkg.derive_session_key(self.private, pkg.public_key_from_eck3(info.enclave_dh))
        self.info = info
        self.cek = ColumnEncryptionKey.generate()

    def package(self, counter: int, statement: str = STATEMENT) -> bytes:
        return pkg.seal_package(
            session_id=self.session_id,
            session_key=self.key,
            counter=counter,
            statement=statement,
            keys=[pkg.PackageKey(0, VERSION, self.cek)],
        )


COLUMNS = {"age": ColumnBinding("age", "int", True, "randomized", 0, VERSION)}


def _begin(enclave: Enclave, client: Client, package: bytes, statement: str = STATEMENT):  # type: ignore[no-untyped-def]
    cell = CellCipher(client.cek).encrypt(normalize(30, "int"))
    return enclave.begin(package, statement, columns=COLUMNS, parameters={0: cell})


def test_attestation_binds_the_nonce_and_the_enclave_key(enclave: Enclave) -> None:
    client = Client(enclave)
    public = pkg.public_key_from_eck3(client.info.enclave_dh)
    assert client.info.runtime_data == {"nonce": "n" * 43, "tee-pubkey": pkg.jwk_of(public)}
    assert client.info.evidence.tee == "simulated"


def test_the_enclave_filters_with_the_package_keys(enclave: Enclave) -> None:
    client = Client(enclave)
    cipher = CellCipher(client.cek, EncryptionType.RANDOMIZED)
    cells = [cipher.encrypt(normalize(v, "int")) for v in (10, 31, 30, 99)] + [None]
    with _begin(enclave, client, client.package(1)) as statement:
        assert list(statement.filter({"age": cells})) == [1, 3]


def test_a_package_for_another_statement_is_refused(enclave: Enclave) -> None:
    client = Client(enclave)
    package = client.package(1, "SELECT age FROM t WHERE age < ?")
    with pytest.raises(QueryError, match="another statement"):
        _begin(enclave, client, package)
    # A different text, however close, is another statement.
    with pytest.raises(QueryError, match="another statement"):
        _begin(enclave, client, client.package(2), STATEMENT + " ")


def test_a_replayed_or_older_counter_is_refused(enclave: Enclave) -> None:
    client = Client(enclave)
    first = client.package(5)
    _begin(enclave, client, first).close()
    with pytest.raises(QueryError, match="replay"):
        _begin(enclave, client, first)
    with pytest.raises(QueryError, match="replay"):
        _begin(enclave, client, client.package(4))
    _begin(enclave, client, client.package(6)).close()


def test_a_package_under_another_session_key_does_not_open(enclave: Enclave) -> None:
    alice, mallory = Client(enclave), Client(enclave)
    forged = pkg.seal_package(
        session_id=alice.session_id,
        session_key=mallory.key,
        counter=1,
        statement=STATEMENT,
        keys=[pkg.PackageKey(0, VERSION, mallory.cek)],
    )
    with pytest.raises(DecryptionError):
        _begin(enclave, alice, forged)


def test_unknown_and_evicted_sessions() -> None:
    small = simulated_enclave(SimulatedLauncher(allow_simulation=True), max_sessions=1)[0]
    first = Client(small)
    Client(small)  # evicts the first
    with pytest.raises(QueryError, match="invalid enclave session"):
        _begin(small, first, first.package(1))


def test_keys_are_zeroed_when_the_statement_closes(enclave: Enclave) -> None:
    client = Client(enclave)
    statement = _begin(enclave, client, client.package(1))
    statement.close()
    with pytest.raises(QueryError):
        statement.filter({"age": [CellCipher(client.cek).encrypt(normalize(1, "int"))]})


def test_a_key_with_other_metadata_is_refused(enclave: Enclave) -> None:
    client = Client(enclave)
    columns = {"age": ColumnBinding("age", "int", True, "randomized", 0, b"\x06" * 8)}
    with pytest.raises(QueryError, match="metadata"):
        enclave.begin(client.package(1), STATEMENT, columns=columns, parameters={0: None})


def test_the_enclave_only_computes_what_the_statement_asks(enclave: Enclave) -> None:
    client = Client(enclave)
    with _begin(enclave, client, client.package(1)) as statement:
        with pytest.raises(QueryError, match="ORDER BY"):
            statement.order({"age": []})
        with pytest.raises(QueryError, match="MIN"):
            statement.extreme("min", "age", [])
        with pytest.raises(QueryError, match="ALTER"):
            statement.transform([])


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("a%", ["a", "abc"], ["ba", "A"]),
        ("%b_", ["abc", "bx"], ["ab", "b"]),
        ("[a-c]x", ["ax", "cx"], ["dx", "x"]),
        ("[^a]%", ["b", "bbb"], ["a", "abc", ""]),
        ("a.b*", ["a.b*"], ["axbb"]),
        ("%", ["", "anything\nat all"], []),
    ],
)
def test_like_patterns(pattern: str, yes: list[str], no: list[str]) -> None:
    regex = like_regex(pattern)
    assert all(regex.fullmatch(v) for v in yes)
    assert not any(regex.fullmatch(v) for v in no)
