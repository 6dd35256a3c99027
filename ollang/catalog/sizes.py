"""Memory sizes as people write them (``8GB``, ``512MiB``) and as ``ollama ps`` prints them.

One convention, Ollama's: ``ollama ps`` and ``ollama list`` print decimal units
(``4.7 GB`` is 4.7 x 10^9 bytes), so here ``GB``/``G`` and ``MB``/``M`` are decimal too
(10^9, 10^6) and only the IEC spellings ``GiB``/``MiB`` are binary (2^30, 2^20). A
GPU sold as "8 GB" has 8 GiB; write ``--gpu 8GiB`` for that.
"""

from __future__ import annotations

import re

from ollang.errors import InvalidInputError

__all__ = ["format_size", "parse_size"]

#: Bytes per unit; keys are lower case (units are matched without regard to case).
_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_size(text: str, name: str = "size") -> int:
    """The number of bytes ``text`` stands for: ``8GB``, ``8 G``, ``8 GiB``, ``512MiB``, ``1024``.

    ``name`` is what the user typed it for (``--gpu``), so the error can say so.

    Raises:
        InvalidInputError: ``text`` is not a size, or is not above zero.
    """
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise InvalidInputError(
            f"{name}: {text!r} is not a size",
            f"write a number and a unit, e.g. {name} 8GB (10^9 bytes) or 8GiB (2^30 bytes); "
            "units: B, KB, MB, GB, TB (decimal), KiB, MiB, GiB, TiB (binary)",
        )
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise InvalidInputError(
            f"{name}: {text!r} is not above zero", f"give a positive size, e.g. {name} 8GB"
        )
    return size


def format_size(n: int) -> str:
    """``n`` bytes as Ollama's CLI prints a size: decimal units, ``4.7 GB``, ``512 MB``."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if abs(n) >= scale:
            value = n / scale
            # As Ollama's format.HumanBytes: whole numbers from 10 up (cut, not rounded),
            # one decimal below 10 unless the value is whole: "274 MB", "4.7 GB", "8 GB".
            if value >= 10 or value == int(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{n} B"
