"""``ollang ask``: one prompt, one streamed answer."""

from __future__ import annotations

import json
import sys
from contextlib import closing
from dataclasses import asdict
from typing import TYPE_CHECKING

from ollang.commands.common import (
    build_model,
    new_session_id,
    open_default_store,
    parse_options,
    validate_session_id,
)
from ollang.commands.render import StreamPrinter
from ollang.errors import InvalidInputError, OllangError

if TYPE_CHECKING:
    from ollang.memory import ChatStore

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


def _session(session: str | None, cont: bool, store: ChatStore) -> str | None:
    if session and cont:
        raise InvalidInputError("use either --session or --continue, not both")
    if session:
        return validate_session_id(session)
    if cont:
        sessions = store.list_sessions()
        return sessions[0].id if sessions else new_session_id()
    return None


def run_ask(
    prompt: str | None,
    *,
    model: str | None,
    system: str | None,
    session: str | None,
    cont: bool,
    options: list[str],
    as_json: bool,
    stream: bool,
    think: bool,
    backend: str | None,
) -> int:
    """Answer one prompt; stores it only with ``--session`` or ``--continue``."""
    text = read_prompt(prompt)
    opts = parse_options(options)
    if think:
        opts["think"] = True
    from langchain_core.runnables import RunnableConfig

    from ollang.chains import build_chat_chain
    from ollang.memory import InMemoryChatStore

    persistent = session is not None or cont
    store = open_default_store() if persistent else InMemoryChatStore()
    session_id = _session(session, cont, store) if persistent else None
    try:
        chat_model = build_model(backend, model, opts).model
    except OllangError:
        if session_id is not None:  # no host can answer now; what was typed is kept
            from langchain_core.messages import HumanMessage

            store.add_messages(session_id, [HumanMessage(text)])
        raise
    chain = build_chat_chain(chat_model, store=store, system=system)
    config: RunnableConfig = {"configurable": {"session_id": session_id or "ask"}}
    printer = StreamPrinter(markdown=False, show_reasoning=think and not as_json)
    show_live = stream and not as_json
    result = None
    try:
        with closing(chain.stream_turn({"input": text}, config)) as events:
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
    assert result is not None
    if as_json:
        payload = {
            "response": result.text,
            "model": result.model,
            "session_id": session_id,
            "usage": asdict(result.usage),
            "timings": asdict(result.timings),
        }
        if think:
            payload["reasoning"] = result.reasoning
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    elif show_live:
        printer.finish()
    else:
        sys.stdout.write(result.text + ("" if result.text.endswith("\n") else "\n"))
    if result.truncated:
        sys.stderr.write(
            "warning: Ollama truncated the prompt to fit its context; raise -o num_ctx\n"
        )
    return 0
