"""``ollang compare``: one prompt, several models, speed and answers side by side."""

from __future__ import annotations

import sys
from contextlib import closing
from typing import Any

from ollang.commands.common import build_model, parse_options
from ollang.commands.render import StreamPrinter
from ollang.errors import ModelNotFoundError, OllamaUnavailableError, OllangError
from ollang.settings import Settings

__all__ = ["run_compare"]


def run_compare(
    settings: Settings,
    prompt: str,
    models: list[str],
    *,
    system: str | None,
    options: list[str],
    backend: str | None,
) -> int:
    """Stream each model's answer under a header, then a table of TTFT, tokens/s and length.

    A missing model gives an error row and the others still run; the exit code is
    4 if any model was missing, 1 if any other failed, else 0.
    """
    from ollang.chains import build_chat_chain
    from ollang.memory import InMemoryChatStore

    if not prompt.strip():
        raise OllangError("the prompt is empty", "")
    opts = parse_options(options)
    rows: list[dict[str, Any]] = []
    for name in models:
        sys.stdout.write(f"\n=== {name} ===\n")
        sys.stdout.flush()
        printer = StreamPrinter(markdown=False)
        try:
            chain = build_chat_chain(
                build_model(settings, backend, name, opts).model,
                store=InMemoryChatStore(),
                system=system,
            )
            result = None
            with closing(
                chain.stream_turn(prompt, {"configurable": {"session_id": "compare"}})
            ) as events:
                for event in events:
                    if event.type == "token":
                        printer.token(event.text)
                    elif event.type == "done":
                        result = event.result
            printer.finish()
            assert result is not None
            rows.append({"model": name, "result": result})
        except OllamaUnavailableError:
            raise
        except OllangError as err:
            printer.finish()
            sys.stderr.write(f"error: {err.message}\n")
            rows.append({"model": name, "error": err})
    _table(rows)
    if any(isinstance(r.get("error"), ModelNotFoundError) for r in rows):
        return 4
    return 1 if any("error" in r for r in rows) else 0


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(rows: list[dict[str, Any]]) -> None:
    header = ["model", "ttft (s)", "tokens/s", "tokens", "chars"]
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["model"], "error", r["error"].message, "", ""])
            continue
        res = r["result"]
        body.append(
            [
                r["model"],
                _fmt(res.timings.ttft_s, ".2f"),
                _fmt(res.timings.tokens_per_s, ".1f"),
                str(res.usage.output_tokens if res.usage.output_tokens is not None else "-"),
                str(len(res.text)),
            ]
        )
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*header, title="comparison")
        for row in body:
            table.add_row(*row)
        Console().print(table)
        return
    sys.stdout.write("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
    for row in body:
        sys.stdout.write("| " + " | ".join(row) + " |\n")
