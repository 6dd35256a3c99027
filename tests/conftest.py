"""Shared fixtures: a fresh Ollama-protocol server per test, and an isolated data dir."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_ollama import FakeOllama


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch) -> None:
    """Never touch the real ~/.local/share/ollang or a real Ollama from a test."""
    monkeypatch.setenv("OLLANG_HOME", str(tmp_path_factory.mktemp("ollang-home")))
    monkeypatch.delenv("OLLANG_MODEL", raising=False)
    monkeypatch.delenv("OLLANG_BACKEND", raising=False)
    monkeypatch.delenv("OLLANG_DEBUG", raising=False)
    monkeypatch.delenv("OLLANG_READ_TIMEOUT", raising=False)
    # Server tests are about the Ollama path unless they ask for the embedded one.
    monkeypatch.setenv("OLLANG_SERVER_BACKEND", "ollama")


@pytest.fixture
def fake_ollama(monkeypatch) -> Iterator[FakeOllama]:
    """A started FakeOllama; OLLAMA_HOST points at it for the test's duration."""
    with FakeOllama() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host_port)
        yield server
