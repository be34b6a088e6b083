"""SessionStore: lookup by owner and handle, isolation, and its two bounds."""

import logging

import pytest

from backstage_auth.errors import SessionNotFoundError
from backstage_auth.sessions import SessionStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_store(
    max_sessions: int = 10, idle_seconds: float = 60.0
) -> tuple[SessionStore, FakeClock]:
    clock = FakeClock()
    return SessionStore(max_sessions=max_sessions, idle_seconds=idle_seconds, clock=clock), clock


def test_owner_finds_its_session():
    store, _ = make_store()
    created = store.create("mcp-session:a")

    assert store.for_owner("mcp-session:a") is created
    assert store.for_owner("mcp-session:b") is None


def test_handles_are_unguessable_and_distinct():
    store, _ = make_store(max_sessions=1000)
    handles = {store.create(None).handle for _ in range(200)}

    assert len(handles) == 200
    assert all(len(handle) >= 43 for handle in handles)


def test_bearer_handle_works_for_any_caller():
    store, _ = make_store()
    session = store.create(None)

    assert store.for_handle(session.handle, None) is session
    assert store.for_handle(session.handle, "mcp-session:x") is session


def test_owned_handle_is_rejected_for_another_owner():
    store, _ = make_store()
    session = store.create("mcp-session:a")

    with pytest.raises(SessionNotFoundError):
        store.for_handle(session.handle, "mcp-session:b")
    with pytest.raises(SessionNotFoundError):
        store.for_handle(session.handle, None)


def test_unknown_handle_is_rejected():
    store, _ = make_store()

    with pytest.raises(SessionNotFoundError, match="unknown or has expired"):
        store.for_handle("x" * 43, None)


def test_idle_sessions_expire_and_are_logged(caplog):
    store, clock = make_store(idle_seconds=60)
    old = store.create("mcp-session:a")
    clock.now += 30
    fresh = store.create(None)
    clock.now += 45

    with caplog.at_level(logging.INFO, logger="backstage_auth.sessions"):
        assert store.for_owner("mcp-session:a") is None

    assert store.for_handle(fresh.handle, None) is fresh
    assert len(store) == 1
    assert f"Expired upstream session {old.fingerprint}" in caplog.text
    assert old.handle not in caplog.text


def test_use_keeps_a_session_alive():
    store, clock = make_store(idle_seconds=60)
    session = store.create(None)
    for _ in range(5):
        clock.now += 50
        assert store.for_handle(session.handle, None) is session


def test_full_store_evicts_least_recently_used(caplog):
    store, clock = make_store(max_sessions=3)
    first, second, third = (store.create(None) for _ in range(3))
    clock.now += 1
    store.for_handle(first.handle, None)

    with caplog.at_level(logging.INFO, logger="backstage_auth.sessions"):
        store.create(None)

    assert len(store) == 3
    assert store.for_handle(first.handle, None) is first
    with pytest.raises(SessionNotFoundError):
        store.for_handle(second.handle, None)
    assert store.for_handle(third.handle, None) is third
    assert f"Evicted upstream session {second.fingerprint}" in caplog.text
