"""``ollang models --json`` with 30 installed models: cold (no facts cached) and warm.

The listing adds each model's facts (``/api/show``: capabilities, context, header) and
its fit on this machine. Cold, every model's ``/api/show`` is asked (8 at a time); warm,
they come from ``<home>/model-facts.json`` and only ``/api/tags`` is asked. The fake
Ollama serves 30 models made from ``tests.fake_ollama.REAL_MODELS`` (each real model
under several names, each with its own digest). Whole processes, median of 5 runs.
Anchor: ``ollang ps --json`` over the same server, the same start-up and host check
with no facts. Goal: warm under 1 s.

A third row times the warm listing inside the process once ``ollang.routing.router``
is imported: today that import brings in LangChain (``ollang.routing.hosts`` imports
``ollang.turns.context``), about 1 s of every model command's start-up on a 2-core
machine, which is not the listing's own cost.

Run: ``python bench/models_list_bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = 30
RUNS = 5


def _models() -> list[Any]:
    """30 models as a real Ollama reports them, each real one under several names."""
    from tests.fake_ollama import REAL_MODELS, real_model

    bases = sorted(REAL_MODELS)
    made = []
    for index in range(MODELS):
        base = real_model(bases[index % len(bases)])
        family, tag = base.name.split(":", 1)
        name = f"{family}-v{index}:{tag}"
        digest = hashlib.sha256(name.encode()).hexdigest()
        made.append(dataclasses.replace(base, name=name, digest=digest))
    return made


def _once(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True
    )
    return time.perf_counter() - started


#: The warm listing timed inside the process, after the router (and what it imports) is loaded.
_IN_PROCESS = """
import contextlib, io, sys, time
import ollang.routing.router
from ollang.cli import main
started = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["models", "--json"])
sys.stderr.write(f"{time.perf_counter() - started}\\n")
sys.exit(code)
"""


def _in_process(env: dict[str, str]) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _IN_PROCESS], env=env, cwd=ROOT, capture_output=True, check=True
    )
    return float(done.stderr.decode().strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Rows per the contract in bench/_util.py: cold and warm listing, in ms."""
    from tests.fake_ollama import FakeOllama

    runs = 3 if quick else RUNS
    ollang = [sys.executable, "-m", "ollang"]
    listing = [*ollang, "models", "--json"]
    samples: dict[str, list[float]] = {"cold": [], "warm": [], "anchor": [], "inside": []}
    shows: dict[str, list[int]] = {"cold": [], "warm": []}
    with FakeOllama(models=_models()) as server, tempfile.TemporaryDirectory() as tmp:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OLLANG_", "OLLAMA_"))}
        base.update(OLLAMA_HOST=server.host_port, OLLANG_BACKEND="ollama")

        def asked() -> int:
            return sum(1 for r in server.requests if r.path == "/api/show")

        warm_env = {**base, "OLLANG_HOME": str(Path(tmp) / "warm")}
        _once(listing, warm_env)  # fills the warm home's cache (and the OS's file caches)
        for index in range(runs):
            cold_env = {**base, "OLLANG_HOME": str(Path(tmp) / f"cold-{index}")}
            before = asked()
            samples["cold"].append(_once(listing, cold_env))
            shows["cold"].append(asked() - before)
            before = asked()
            samples["warm"].append(_once(listing, warm_env))
            shows["warm"].append(asked() - before)
            samples["anchor"].append(_once([*ollang, "ps", "--json"], warm_env))
            samples["inside"].append(_in_process(warm_env))
    anchor = statistics.median(samples["anchor"])
    rows = []
    for kind, what in (("cold", "no facts cached"), ("warm", "facts cached")):
        value = statistics.median(samples[kind])
        rows.append(
            {
                "group": "cli",
                "name": f"`ollang models --json`, {MODELS} models, {kind} ({what})",
                "value": round(value * 1000, 1),
                "unit": "ms",
                "anchor": "`ollang ps --json` (start-up and host check, no facts)",
                "anchor_value": round(anchor * 1000, 1),
                "ratio": round(value / anchor, 3),
                "goal": "warm < 1000 ms" if kind == "warm" else None,
                "passed": value < 1.0 if kind == "warm" else None,
                "runs": runs,
                "note": f"/api/show requests per run: {statistics.median(shows[kind]):.0f}",
                "details": {
                    "samples_ms": [round(s * 1000, 1) for s in samples[kind]],
                    "shows": shows[kind],
                },
            }
        )
    inside = statistics.median(samples["inside"])
    rows.append(
        {
            "group": "cli",
            "name": f"`ollang models --json`, {MODELS} models, warm, in-process after the "
            "router's import",
            "value": round(inside * 1000, 1),
            "unit": "ms",
            "anchor": None,
            "anchor_value": None,
            "ratio": None,
            "goal": None,
            "passed": None,
            "runs": runs,
            "note": "host check, cached facts, fit, JSON; without the LangChain import",
            "details": {"samples_ms": [round(s * 1000, 1) for s in samples["inside"]]},
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    rows = run(parser.parse_args().quick)
    print("| listing | median | anchor | ratio | goal | note |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['value']} ms | {r['anchor_value'] or '-'} ms | {r['ratio'] or '-'} "
            f"| {r['goal'] or '-'} | {r['note']} |"
        )


if __name__ == "__main__":
    main()
