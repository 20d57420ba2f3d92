"""The options and checks the command groups share (cleanroom.cli._options)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleanroom.cli._options import (
    check_listener,
    check_simulation_root,
    is_loopback,
    load_simulation_roots,
    open_workdir_store,
)
from cleanroom.errors import ConfigurationError


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("192.0.2.1", False),
        ("example.org", False),
        ("localhost.example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_listener_checks_name_the_service(tmp_path: Path) -> None:
    check_listener("broker", "127.0.0.1", None, None)
    check_listener("broker", "192.0.2.1", tmp_path / "c.pem", tmp_path / "k.pem")
    with pytest.raises(ConfigurationError, match=r"^without TLS the verifier listens on loopback"):
        check_listener("verifier", "192.0.2.1", None, None)
    with pytest.raises(ConfigurationError, match=r"^--tls-cert and --tls-key go together$"):
        check_listener("broker", "127.0.0.1", None, tmp_path / "k.pem")


def test_simulation_root_needs_the_insecure_flag(tmp_path: Path) -> None:
    check_simulation_root(None, False)
    check_simulation_root(tmp_path / "root.pem", True)
    with pytest.raises(ConfigurationError, match="needs --insecure-simulation"):
        check_simulation_root(tmp_path / "root.pem", False)
    assert load_simulation_roots(None) == []
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_simulation_roots(tmp_path / "root.pem")


def test_open_workdir_store_needs_an_existing_workdir(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        open_workdir_store(tmp_path / "absent", None)
    with open_workdir_store(tmp_path, None) as store:
        assert store.dialect == "sqlite"
    assert (tmp_path / "cleanroom.db").is_file()
