"""``ollang keys``: create, list, revoke and rotate managed API keys; ``ollang usage``.

Keys live in the session store (``$OLLANG_STORE_URL``, else ``sessions.db`` under
``$OLLANG_HOME``), the one a server on that store reads: it honours a change within 5 s.
``create`` and ``rotate`` print the secret alone on stdout (``KEY=$(ollang keys create
alice)``); everything else they say goes to stderr.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import TYPE_CHECKING

from ollang.commands.common import open_default_store
from ollang.memory.keys import USAGE_COLUMNS
from ollang.settings import Settings

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ollang.memory.keys import KeyLimits, StoredKey

__all__ = ["create_key", "list_keys", "revoke_key", "rotate_key", "show_usage"]


def create_key(settings: Settings, name: str, **limits: Unpack[KeyLimits]) -> int:
    """Create the key ``name``; its secret alone on stdout."""
    from ollang.memory.keys import issue_key

    with open_default_store(settings) as store:
        key, secret = issue_key(store, name, **limits)
    sys.stdout.write(secret + "\n")
    sys.stderr.write(f"created key {key.name!r}; the secret above is shown only this once\n")
    return 0


def rotate_key(settings: Settings, name: str) -> int:
    """Give ``name`` a new secret (alone on stdout); the old one stops working."""
    from ollang.memory.keys import rotate_secret

    with open_default_store(settings) as store:
        key, secret = rotate_secret(store, name)
    sys.stdout.write(secret + "\n")
    sys.stderr.write(
        f"rotated key {key.name!r}: the old secret stops working within 5 s; "
        "its sessions stay with the key\n"
    )
    return 0


def revoke_key(settings: Settings, name: str) -> int:
    """Revoke ``name`` for good."""
    with open_default_store(settings) as store:
        key = store.revoke_key(name)
    sys.stderr.write(f"revoked key {key.name!r}; servers refuse it within 5 s\n")
    return 0


def list_keys(settings: Settings, as_json: bool) -> int:
    """The managed keys (never their secrets): JSON, or one line each."""
    with open_default_store(settings) as store:
        keys = store.list_keys()
    if as_json:
        rows = [k.to_dict() for k in keys]
        sys.stdout.write(json.dumps({"keys": rows}, indent=2) + "\n")
        return 0
    if not keys:
        sys.stderr.write("no managed keys yet; create one with `ollang keys create NAME`\n")
        return 0
    for key in keys:
        sys.stdout.write(_key_line(key) + "\n")
    return 0


def _key_line(key: StoredKey) -> str:
    state = "revoked" if key.revoked is not None else "active"
    parts = [key.name, state, "models=" + (",".join(key.models) or "*")]
    for field in ("rpm", "tpm", "daily_tokens", "max_concurrent"):
        value = getattr(key, field)
        if value is not None:
            parts.append(f"{field}={value}")
    if key.weight != 1.0:
        parts.append(f"weight={key.weight:g}")
    return "  ".join(parts)


def show_usage(
    settings: Settings, since: str | None, key: str | None, as_json: bool, as_csv: bool
) -> int:
    """Usage per key x model x UTC day, from ``since`` (``YYYY-MM-DD``) on."""
    with open_default_store(settings) as store:
        rows = [r.to_dict() for r in store.usage(since=since, key=key)]
    if as_json:
        sys.stdout.write(json.dumps({"usage": rows}, indent=2) + "\n")
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=USAGE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    elif not rows:
        sys.stderr.write("no usage recorded" + (f" since {since}" if since else "") + "\n")
    else:
        widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in USAGE_COLUMNS}
        sys.stdout.write("  ".join(c.ljust(widths[c]) for c in USAGE_COLUMNS).rstrip() + "\n")
        for r in rows:
            cells = (str(r[c]).ljust(widths[c]) for c in USAGE_COLUMNS)
            sys.stdout.write("  ".join(cells).rstrip() + "\n")
    return 0
