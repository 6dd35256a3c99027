"""Cache-aware routing for clients that name no session: a digest per message boundary.

An engine keeps a prompt cache per slot, so the next turn of a conversation is fast only on
the host that served the previous one. A named session is routed back to that host (its
last answer says which). Most clients — the OpenAI SDK, Open WebUI, LangChain apps — name
no session and resend the whole history each turn; they are routed by what they send:

* :func:`prefix_digests` gives one digest per message boundary of a request:
  ``d_i = H(d_(i-1) || canonical(message_i))``, seeded with the model (a host's cache is
  per model). Two requests that begin with the same messages share the digests of that
  beginning, and any change in an earlier message changes every later digest.
* After a host served a turn, the digest of the request's messages and the digest of the
  conversation *with the reply* (the next turn's request begins with it) are recorded for
  that host (in the session store, shared by replicas, and in a :class:`PrefixCache`).
* :func:`longest_known` picks, of a new request's digests, the longest one some host is
  recorded for: that host is the request's affinity (kept while it is up and not full,
  as a named session's is, :func:`~ollang.routing.order.rank`).

:func:`canonical` keeps of a message only what a client resends unchanged: its role, its
text (surrounding blanks dropped), a hash of each image, and its tool calls' names and
arguments (not their ids, which some clients make up). Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
from langchain_core.messages import BaseMessage

__all__ = [
    "DIGEST_SIZE",
    "PrefixCache",
    "canonical",
    "extend_digest",
    "longest_known",
    "prefix_digests",
]

#: Bytes of a digest (BLAKE2b-128: collisions are out of reach for routing hints).
DIGEST_SIZE = 16
#: Seeds the chain; a new version of :func:`canonical` must change it.
_SEED = b"ollang-prefix/1\x00"
#: LangChain message types as the wire roles (what a client sends).
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def _image_key(block: Mapping[str, Any]) -> str | None:
    """A short hash of an image block's data (base64, a URL or a stored reference)."""
    data = block.get("base64") or block.get("data") or block.get("url") or block.get("image_url")
    if isinstance(data, Mapping):  # OpenAI's {"image_url": {"url": ...}}
        data = data.get("url")
    if not isinstance(data, str) or not data:
        ref = block.get("ollang_image") or block.get("id")
        return f"ref:{ref}" if isinstance(ref, str) else None
    return hashlib.blake2b(data.encode(), digest_size=DIGEST_SIZE).hexdigest()


def _content(content: str | list[Any]) -> tuple[str, list[str]]:
    """A message's text and the hashes of its images."""
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    for block in content:
        if isinstance(block, str):
            texts.append(block)
        elif isinstance(block, Mapping):
            kind = block.get("type")
            if kind == "text":
                texts.append(str(block.get("text") or ""))
            elif kind in ("image", "image_url"):
                key = _image_key(block)
                if key is not None:
                    images.append(key)
    return "".join(texts), images


def canonical(message: BaseMessage) -> bytes:
    """What of ``message`` the digests cover, as canonical JSON (sorted keys, compact).

    The role, the text without surrounding blanks, a hash per image, and each tool call's
    name and arguments; not ids, reasoning or metadata, which clients do not resend alike.
    """
    text, images = _content(message.content)
    entry: dict[str, Any] = {"r": _ROLES.get(message.type, message.type), "t": text.strip()}
    if images:
        entry["i"] = images
    calls = getattr(message, "tool_calls", None)
    if calls:
        entry["c"] = [[call.get("name"), call.get("args") or {}] for call in calls]
    try:
        return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # arguments that are not plain JSON: their text stands in
        entry["c"] = [[call.get("name"), repr(call.get("args"))] for call in calls or ()]
        return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)


def prefix_digests(model: str, messages: Iterable[BaseMessage]) -> list[bytes]:
    """The digest of each prefix of ``messages`` for ``model``: ``[d_1, ..., d_n]``, where
    ``d_i`` covers the first ``i`` messages (see the module docstring)."""
    digest = hashlib.blake2b(_SEED + model.encode(), digest_size=DIGEST_SIZE).digest()
    out: list[bytes] = []
    for message in messages:
        digest = extend_digest(digest, message)
        out.append(digest)
    return out


def extend_digest(previous: bytes, message: BaseMessage) -> bytes:
    """The digest of a prefix one ``message`` longer than the one of ``previous`` (a
    reply after the request's last digest: what the next turn will begin with)."""
    return hashlib.blake2b(previous + canonical(message), digest_size=DIGEST_SIZE).digest()


def longest_known(
    digests: Sequence[bytes], known: Mapping[bytes, str] | Callable[[bytes], str | None]
) -> tuple[int, str] | None:
    """The longest prefix of ``digests`` that ``known`` names a host for, as ``(number of
    messages, host)``; ``None`` when none is known.

    Args:
        digests: A request's :func:`prefix_digests`.
        known: Digest -> host, as a mapping (what the store found) or a lookup.
    """
    get = known.get if isinstance(known, Mapping) else known
    for index in range(len(digests) - 1, -1, -1):
        host = get(digests[index])
        if host:
            return index + 1, host
    return None


class PrefixCache:
    """The recent digest -> host records of this process, least recently used dropped first.

    In front of the store: a single replica finds the previous turn here without asking the
    store. Not thread-safe (the event loop's alone).

    Args:
        capacity: Most digests kept.
        max_age: Seconds a record counts (as the store's).
        clock: Seconds, monotonic (tests give their own).
    """

    def __init__(
        self,
        capacity: int = 16_384,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.max_age = max_age
        self.clock = clock
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes) -> str | None:
        """The host recorded for ``digest`` within ``max_age``, or ``None``."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        host, seen = entry
        if self.clock() - seen > self.max_age:
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return host

    def put(self, digests: Iterable[bytes], host: str) -> None:
        """Record ``host`` for ``digests`` (now)."""
        now = self.clock()
        for digest in digests:
            self._entries[digest] = (host, now)
            self._entries.move_to_end(digest)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
