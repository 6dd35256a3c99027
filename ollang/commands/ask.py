"""``ollang ask``: one prompt, one streamed answer."""

from __future__ import annotations

import json
import sys
from contextlib import closing
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ollang.chains.structured import check_answer
from ollang.commands.common import (
    TurnArgs,
    build_model,
    human_message,
    open_default_store,
    session_settings,
)
from ollang.commands.render import StreamPrinter
from ollang.errors import InvalidInputError, OllangError
from ollang.settings import Settings

if TYPE_CHECKING:
    from ollang.memory import ChatStore
    from ollang.turns.recorder import TurnResult

__all__ = ["read_prompt", "run_ask"]


def _read_stdin() -> str:
    # Bytes, decoded leniently: invalid UTF-8 from a pipe must not crash the CLI.
    return sys.stdin.buffer.read().decode("utf-8", errors="replace")


def read_prompt(prompt: str | None) -> str:
    """The prompt from the argument and/or stdin (``-``, or a pipe with no argument)."""
    stdin_piped = not sys.stdin.isatty() if sys.stdin else False
    if prompt == "-":
        text = _read_stdin()
    elif prompt is None:
        text = _read_stdin() if stdin_piped else ""
    elif stdin_piped:
        piped = _read_stdin()
        text = f"{prompt}\n\n{piped}" if piped.strip() else prompt
    else:
        text = prompt
    if not text.strip():
        raise InvalidInputError(
            "the prompt is empty", 'pass it as an argument, or pipe it: echo "hi" | ollang ask'
        )
    return text


def run_ask(
    settings: Settings, prompt: str | None, args: TurnArgs, *, as_json: bool, stream: bool
) -> int:
    """Answer one prompt; stores it only with ``--session`` or ``--continue``, resuming
    the session's model, system prompt and options unless the command line sets them."""
    text = read_prompt(prompt)
    options = args.model_options()
    wanted = options.get("format")
    from langchain_core.runnables import RunnableConfig

    from ollang.chains import build_chat_chain
    from ollang.memory import InMemoryChatStore

    persistent = args.session is not None or args.cont
    store = open_default_store(settings) if persistent else InMemoryChatStore()
    session_id = args.session_id(store) if persistent else None
    turn = session_settings(store if persistent else None, session_id, args, options)
    human = human_message(text, args.images)
    try:
        routed = build_model(settings, args.backend, turn.model, turn.options)
    except OllangError:
        if session_id is not None:  # no host can answer now; what was typed is kept
            store.add_messages(session_id, [human])
        raise
    if session_id is not None and turn.changed:
        turn.store(store, session_id, routed.name)
    chain = build_chat_chain(routed.model, store=store, system=turn.system, usage_key="local")
    config: RunnableConfig = {"configurable": {"session_id": session_id or "ask"}}
    printer = StreamPrinter(markdown=False, show_reasoning=args.think and not as_json)
    # A structured answer is printed once checked, as JSON: never half of it.
    show_live = stream and not as_json and wanted is None
    result = None
    try:
        with closing(chain.stream_turn(human, config)) as events:
            for event in events:
                if event.type == "token" and show_live:
                    printer.token(event.text)
                elif event.type == "reasoning":
                    printer.reasoning(event.text)
                elif event.type == "done":
                    result = event.result
    except KeyboardInterrupt:
        if show_live:
            printer.finish()
        where = f" in session {session_id}" if session_id else ""
        sys.stderr.write(
            f"interrupted; the partial answer is kept{where}\n" if session_id else "interrupted\n"
        )
        return 130
    except OllangError:
        printer.finish()  # the error goes on a line of its own, after what arrived
        raise
    finally:
        if not persistent:
            _keep_usage(settings, store)
    assert result is not None
    _print_answer(
        result, session_id, args, wanted, as_json=as_json, live=show_live, printer=printer
    )
    return 0


def _keep_usage(settings: Settings, scratch: ChatStore) -> None:
    """Add an unsaved turn's usage (key ``local``) to the default store, where ``ollang
    usage`` reads it, when that store exists; a store that cannot take it is a warning."""
    rows = scratch.usage()
    if not rows or (not settings.store_url and not settings.store_path.exists()):
        return  # "stores nothing by default": no store is made for a usage row alone
    try:
        with open_default_store(settings) as store:
            store.add_usage(rows)
    except OllangError as err:
        sys.stderr.write(f"warning: the turn's usage was not recorded: {err.message}\n")


def _print_answer(
    result: TurnResult,
    session_id: str | None,
    args: TurnArgs,
    wanted: Any,
    *,
    as_json: bool,
    live: bool,
    printer: StreamPrinter,
) -> None:
    """The answer once complete: as JSON (``--json``), as the checked structured answer
    (``--format``/``--schema``), or the rest of what streamed."""
    parsed = check_answer(result.text, wanted) if wanted is not None else None
    if as_json:
        payload = {
            "response": result.text,
            "model": result.model,
            "session_id": session_id,
            "usage": asdict(result.usage),
            "timings": asdict(result.timings),
        }
        if wanted is not None:
            payload["json"] = parsed
        if args.think:
            payload["reasoning"] = result.reasoning
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    elif wanted is not None:
        sys.stdout.write(json.dumps(parsed, ensure_ascii=False, indent=2) + "\n")
    elif live:
        printer.finish()
    else:
        sys.stdout.write(result.text + ("" if result.text.endswith("\n") else "\n"))
    if result.truncated:
        sys.stderr.write(
            "warning: Ollama truncated the prompt to fit its context; raise -o num_ctx\n"
        )
