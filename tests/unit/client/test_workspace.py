"""The workspace: one store shared by its clients and closed with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleanroom.client import Workspace
from cleanroom.store import Store


def _count_closes(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[Store]:
    closed: list[Store] = []
    close = store.close

    def counting() -> None:
        closed.append(store)
        close()

    monkeypatch.setattr(store, "close", counting)
    return closed


def test_clients_share_the_workspace_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Workspace(tmp_path / "work") as workspace:
        alpha = workspace.client("alpha", create_key_store=True)
        beta = workspace.client("beta", create_key_store=True)
        assert alpha.store is beta.store is workspace.store
        closed = _count_closes(workspace.store, monkeypatch)
        alpha.create_keys()
        beta.create_keys()
        assert workspace.store.column_master_key_names() == ["CMK_alpha", "CMK_beta"]
    assert closed == [alpha.store]


def test_close_is_idempotent_and_a_later_client_opens_a_new_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = Workspace(tmp_path / "work")
    first = workspace.client("alpha", create_key_store=True).store
    closed = _count_closes(first, monkeypatch)
    workspace.close()
    workspace.close()
    assert closed == [first]
    second = workspace.client("alpha").store
    assert second is not first
    assert second is workspace.store
    workspace.close()


def test_open_store_is_the_callers_own(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "work")
    with workspace.open_store() as own:
        assert own is not workspace.store
    workspace.close()


def test_workspace_stays_a_value(tmp_path: Path) -> None:
    a, b = Workspace(tmp_path), Workspace(tmp_path)
    a.client("alpha", create_key_store=True)
    assert a == b
    assert hash(a) == hash(b)
    assert repr(a) == f"Workspace(workdir={tmp_path!r}, store_url=None)"
    a.close()
