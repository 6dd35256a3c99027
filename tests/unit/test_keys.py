"""Managed keys and usage, the pure pieces (issue 22): secrets and names, the in-memory
store's keys and usage, the authenticator's resolution (no sockets), a key's models."""

from __future__ import annotations

import pytest

from ollang.errors import InvalidInputError
from ollang.memory import InMemoryChatStore
from ollang.memory.keys import (
    KeyExistsError,
    KeyRevokedError,
    NoSuchKeyError,
    UsageRow,
    check_key_name,
    hash_secret,
    issue_key,
    new_secret,
    rotate_secret,
    utc_day,
)
from ollang.server.auth import Authenticator, owner_of_key
from ollang.server.errors import UnauthorizedError
from ollang.server.keys import LOCAL, KeyPolicy


def test_a_secret_is_prefixed_url_safe_and_stored_only_as_its_hash() -> None:
    secret = new_secret()
    assert secret.startswith("ollang_") and len(secret) >= 7 + 43
    assert set(secret[7:]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    store = InMemoryChatStore()
    key, shown = issue_key(store, "alice", rpm=5)
    assert key.secret_hash == hash_secret(shown) != shown
    assert secret not in repr(store.list_keys())


@pytest.mark.parametrize(
    "name", ["", "local", "api-key-1", "admin-2", "a b", "-x", "x" * 65, "al/ice"]
)
def test_names_that_cannot_name_a_key(name: str) -> None:
    with pytest.raises(InvalidInputError):
        check_key_name(name)


@pytest.mark.parametrize("name", ["alice", "ci-bot", "team.a_1", "x" * 64, "api-keys", "admin"])
def test_names_that_can(name: str) -> None:
    assert check_key_name(name) == name


def test_memory_store_keys_create_rotate_revoke_and_version() -> None:
    store = InMemoryChatStore()
    before = store.keys_version()
    key, old = issue_key(store, "alice")
    assert store.keys_version() != before
    with pytest.raises(KeyExistsError):
        issue_key(store, "alice")
    rotated, new = rotate_secret(store, "alice")
    assert rotated.owner == key.owner and new != old
    assert store.key_by_hash(hash_secret(old)) is None
    assert store.key_by_hash(hash_secret(new)) == rotated
    revoked = store.revoke_key("alice")
    assert revoked.revoked is not None
    with pytest.raises(KeyRevokedError):
        rotate_secret(store, "alice")
    with pytest.raises(NoSuchKeyError):
        store.revoke_key("bob")


def test_usage_rows_add_up_per_key_model_and_day() -> None:
    store = InMemoryChatStore()
    day = utc_day()
    store.add_usage([UsageRow("a", "m", day, 1, 10, 5, 0, 1.0, 0.5)])
    store.add_usage([UsageRow("a", "m", day, 1, 1, 2, 1, 0.5, 0.0), UsageRow("b", "m", day, 1)])
    (a,) = store.usage(key="a")
    assert (a.requests, a.input_tokens, a.output_tokens, a.errors) == (2, 11, 7, 1)
    assert a.to_dict()["busy_s"] == 1.5
    assert store.usage(since="2999-01-01") == []
    assert utc_day(0) == "1970-01-01"


def test_authenticator_resolves_configured_managed_and_revoked_keys() -> None:
    store = InMemoryChatStore()
    assert Authenticator([], store=store).resolve(None) == (LOCAL, False)
    key, secret = issue_key(store, "alice", models=["llama3*"], tpm=100, weight=2.0)
    auth = Authenticator(["plain"], ["boss"], store=store)
    assert auth.resolve("plain") == (KeyPolicy("api-key-1", owner_of_key("plain")), False)
    assert auth.resolve("boss")[1] is True
    policy, admin = auth.resolve(secret)
    assert (policy.name, policy.owner, policy.tpm, policy.weight, admin) == (
        "alice",
        key.owner,
        100,
        2.0,
        False,
    )
    assert policy.allows_model("llama3:8b") and not policy.allows_model("mistral")
    with pytest.raises(UnauthorizedError):
        auth.resolve(None)
    with pytest.raises(UnauthorizedError) as unknown:
        auth.resolve("ollang_nope")
    assert "revoked" not in str(unknown.value)
    store.revoke_key("alice")
    assert auth.refresh() is True and auth.refresh() is False
    with pytest.raises(UnauthorizedError) as revoked:
        auth.resolve(secret)
    assert revoked.value.hint == "this key was revoked; ask for a new one"


def test_a_store_with_a_key_requires_one() -> None:
    store = InMemoryChatStore()
    auth = Authenticator([], store=store)
    assert not auth.required
    issue_key(store, "alice")
    auth.refresh()
    assert auth.required
    with pytest.raises(UnauthorizedError):
        auth.resolve(None)
