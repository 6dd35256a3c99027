"""CLI start-up: ``ollang --help`` and ``ollang models`` against ``import langchain_ollama``.

Whole processes, timed from spawn to exit, median of several runs, all in the
same run; ``llm --help`` too when simonw's llm is installed. ``ollang models``
talks to a local Ollama-protocol server, so it measures start-up plus one
``/api/tags`` call. Goal: each within 0.3x of the LangChain import.

Run: ``python bench/cli_startup.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _time(cmd: list[str], env: dict[str, str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Rows per the contract in bench/_util.py."""
    from tests.fake_ollama import FakeOllama

    runs = 5 if quick else 11
    py = sys.executable
    # The console script pip installed, as a user types it.
    ollang = str(Path(py).with_name("ollang"))
    with FakeOllama() as server, tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "OLLAMA_HOST": server.host_port,
            "OLLANG_HOME": home,
            "OLLANG_BACKEND": "ollama",
        }
        for warm in ([py, "-c", "import langchain_ollama"], [ollang, "--help"]):
            subprocess.run(warm, env=env, cwd=ROOT, capture_output=True, check=True)
        anchor = _time([py, "-c", "import langchain_ollama"], env, runs)
        measured = {
            "ollang --help": _time([ollang, "--help"], env, runs),
            "ollang models": _time([ollang, "models"], env, runs),
        }
        llm = shutil.which("llm") or (
            str(Path(py).parent / "llm") if (Path(py).parent / "llm").exists() else None
        )
        llm_time = _time([llm, "--help"], env, runs) if llm else None
    rows = []
    for name, seconds in measured.items():
        rows.append(
            {
                "group": "cli",
                "name": f"start-up: `{name}` (whole process)",
                "value": round(seconds * 1000, 1),
                "unit": "ms",
                "anchor": "python -c 'import langchain_ollama'",
                "anchor_value": round(anchor * 1000, 1),
                "ratio": round(seconds / anchor, 3),
                "goal": "ratio <= 0.3",
                "passed": seconds / anchor <= 0.3,
                "runs": runs,
                "note": f"llm --help: {llm_time * 1000:.0f} ms"
                if llm_time
                else "llm not installed",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    for r in run(parser.parse_args().quick):
        print(
            f"| {r['name']} | {r['value']} ms | {r['anchor_value']} ms | {r['ratio']} | {r['goal']} | {r['note']} |"
        )


if __name__ == "__main__":
    main()
