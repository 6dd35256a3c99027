"""The evaluations kept on disk, so ``ollang recommend`` can use measured speeds.

Each finished ``ollang compare --suite`` appends one JSON line (the
:meth:`~ollang.evaluation.runner.Evaluation.to_json` data) to ``evaluations.jsonl`` in
the data directory (:attr:`ollang.settings.Settings.home`). Appending one line in one
write keeps earlier runs safe; a line cut short by a crash is skipped when read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the runner imports LangChain: `ollang recommend` reads runs without it
    from ollang.evaluation.runner import Evaluation

__all__ = ["RUNS_FILE", "ModelSpeed", "measured_speeds", "save_run"]

#: The file, in the data directory, that keeps the evaluations.
RUNS_FILE = "evaluations.jsonl"


@dataclass(frozen=True)
class ModelSpeed:
    """What the newest evaluation that measured a model found.

    Attributes:
        model: The model's name.
        tokens_per_s_p50: Median generation speed, or ``None`` if no run produced one.
        ttft_p50_s: Median time to first token, or ``None``.
        pass_rate: Share of runs that passed, 0 to 1.
        when: When that evaluation started.
    """

    model: str
    tokens_per_s_p50: float | None
    ttft_p50_s: float | None
    pass_rate: float
    when: datetime


def save_run(evaluation: Evaluation, home: Path) -> Path:
    """Append ``evaluation`` to the runs kept in ``home``; returns the file's path.

    Raises:
        OSError: the data directory or file cannot be written.
    """
    home.mkdir(parents=True, exist_ok=True)
    path = home / RUNS_FILE
    line = json.dumps(evaluation.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
    with path.open("a", encoding="utf-8") as file:
        file.write(line)  # one write: a crash leaves at most one partial last line
        file.flush()
        os.fsync(file.fileno())
    return path


def _speed(entry: Any, when: datetime) -> ModelSpeed | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
        return None
    numbers = {}
    for key in ("tokens_per_s_p50", "ttft_p50_s", "pass_rate"):
        value = entry.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            return None
        numbers[key] = float(value) if value is not None else None
    return ModelSpeed(
        model=entry["model"],
        tokens_per_s_p50=numbers["tokens_per_s_p50"],
        ttft_p50_s=numbers["ttft_p50_s"],
        pass_rate=numbers["pass_rate"] or 0.0,
        when=when,
    )


def measured_speeds(home: Path) -> dict[str, ModelSpeed]:
    """Per model, what its newest evaluation in ``home`` measured.

    The newest evaluation that measured a speed wins over a newer one that did not
    (a run where the model failed throughout). Lines that are not a readable
    evaluation are skipped; no file means no measurements.
    """
    path = home / RUNS_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    found: dict[str, ModelSpeed] = {}
    for line in text.splitlines():
        try:
            run = json.loads(line)
            when = datetime.fromisoformat(run["started_at"])
            if when.tzinfo is None:  # written by hand: read as UTC, as ours are
                when = when.replace(tzinfo=timezone.utc)
            entries = run["models"]
        except (ValueError, TypeError, KeyError):
            continue
        if not isinstance(entries, list):
            continue
        for entry in entries:
            speed = _speed(entry, when)
            if speed is None:
                continue
            known = found.get(speed.model)
            measured = speed.tokens_per_s_p50 is not None
            if (
                known is None
                or (measured and known.tokens_per_s_p50 is None)
                or (measured == (known.tokens_per_s_p50 is not None) and speed.when >= known.when)
            ):
                found[speed.model] = speed
    return found
