"""Unit tests: pure pieces tested directly, with no network at all.

pytest-socket refuses every network socket in this folder, so a unit test that reaches
for a server, even on loopback, fails instead of passing by luck. Unix socket pairs stay
allowed: an asyncio event loop wakes itself through one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_socket import disable_socket, enable_socket


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    """Every test here runs with network sockets disabled."""
    disable_socket(allow_unix_socket=True)
    yield
    enable_socket()
