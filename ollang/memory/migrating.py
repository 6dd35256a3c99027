"""What the SQLite and PostgreSQL migration lists share: their error, and the check
of a database's applied migrations against the ones this ollang knows."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MigrationError", "unapplied"]


class MigrationError(Exception):
    """The database's recorded migrations do not fit this version of ollang."""


def unapplied(applied: Sequence[str], known: Sequence[str]) -> list[str]:
    """The ``known`` migrations not in ``applied``, in order.

    Raises:
        MigrationError: ``applied`` has migrations not in ``known`` (the database
            was written by a newer ollang).
    """
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise MigrationError(
            f"written by a newer ollang (unknown migrations: {', '.join(unknown)})"
        )
    return [name for name in known if name not in applied]
