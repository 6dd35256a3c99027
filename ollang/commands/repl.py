"""``ollang chat``: the REPL.

Slash commands are modelled on ``ollama run`` and go beyond it (/retry, /undo,
/fork, /export, /stats). Ctrl-C while an answer streams stops it; the chain
keeps the partial answer in the session, marked interrupted. Ctrl-C at the
prompt clears the line; Ctrl-D quits.
"""

from __future__ import annotations

import sys
from contextlib import closing
from typing import TYPE_CHECKING, Any

from ollang.chains.errors import ModelNotFoundError
from ollang.commands.common import (
    build_model,
    cli_settings,
    new_session_id,
    open_default_store,
    parse_option,
    parse_options,
    validate_session_id,
)
from ollang.commands.render import StreamPrinter, format_stats

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

    from ollang.chains.chat import ChatChain
    from ollang.chains.turn import TurnResult
    from ollang.memory import ChatStore
from ollang.errors import OllangError
from ollang.memory.errors import SessionExistsError

__all__ = ["Repl", "run_chat"]

HELP = """\
Commands:
  /help                 this help
  /bye, /exit           quit (Ctrl-D works too)
  /clear                start a fresh session (the old one stays stored)
  /system [TEXT]        show or set the system prompt
  /set KEY VALUE        set a model option (temperature, num_ctx, seed, top_p, stop, ...)
  /set verbose|quiet    show or hide timings, token counts and context use
  /set think|nothink    ask thinking models to reason (shown dimmed) or not
  /model [NAME]         show or switch the model
  /retry                regenerate the last answer
  /undo                 drop the last exchange
  /fork NAME            copy this session into a new one named NAME and continue there
  /history              show this session's messages
  /export FILE          write the session to FILE (.json, else Markdown)
  /stats                stats of the last answer
  /sessions             list sessions
Start and end a multi-line message with \"\"\".
Ctrl-C stops an answer (the partial answer is kept); Ctrl-C at the prompt clears the line.
"""


class _Reader:
    """Reads user lines: prompt_toolkit on a terminal, plain lines from a pipe."""

    def __init__(self) -> None:
        self.tty = sys.stdin.isatty() and sys.stdout.isatty()
        self._session: Any = None
        if self.tty:
            from prompt_toolkit import PromptSession
            from prompt_toolkit.history import FileHistory

            home = cli_settings().home
            home.mkdir(parents=True, exist_ok=True)
            self._session = PromptSession(history=FileHistory(str(home / "history")))

    def line(self, prompt: str) -> str:
        """One line; raises EOFError at the end, KeyboardInterrupt on Ctrl-C."""
        if self._session is not None:
            return str(self._session.prompt(prompt))
        raw = sys.stdin.buffer.readline()
        if not raw:
            raise EOFError
        return raw.decode("utf-8", errors="replace").rstrip("\r\n")

    def message(self) -> str:
        """A whole message, gathering \"\"\" ... \"\"\" blocks."""
        first = self.line(">>> ")
        if not first.lstrip().startswith('"""'):
            return first
        body = first.lstrip()[3:]
        if body.rstrip().endswith('"""') and body.strip() != "":
            return body.rstrip()[:-3]
        lines = [body] if body else []
        while True:
            nxt = self.line("... ")
            if nxt.rstrip().endswith('"""'):
                lines.append(nxt.rstrip()[:-3])
                return "\n".join(lines)
            lines.append(nxt)


class Repl:
    """One chat session at the terminal."""

    def __init__(
        self,
        *,
        model: str | None,
        system: str | None,
        session_id: str,
        options: dict[str, Any],
        think: bool,
        verbose: bool,
        backend: str | None,
        store: ChatStore,
    ) -> None:
        self.model_name: str = model or ""
        self.system = system
        self.session_id = session_id
        self.options = options
        self.think = think
        self.verbose = verbose
        self.backend = backend
        self.store = store
        self.reader = _Reader()
        self.last: TurnResult | None = None
        self.hosts: list[str] = []
        self.chain: ChatChain | None = None

    # -- set-up ----------------------------------------------------------------
    def build(self) -> None:
        """(Re)build the model and the chain from the current settings."""
        from ollang.chains import build_chat_chain

        options = dict(self.options)
        if self.think:
            options["think"] = True
        routed = build_model(self.backend, self.model_name or None, options)
        self.model_name = routed.name
        self.hosts = routed.hosts
        self.chain = build_chat_chain(routed.model, store=self.store, system=self.system)

    def ensure_model(self) -> bool:
        """Build the chain; when no host has the model, offer (on a terminal) to pull it."""
        try:
            self.build()
            return True
        except ModelNotFoundError as err:
            if not self.reader.tty:
                raise
            self.say_error(err)
            answer = self.reader.line(f"Pull {err.model} now? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                return False
            from ollang.commands.models import pull_model

            pull_model(err.model)
            self.model_name = err.model
        self.build()
        return True

    # -- output ------------------------------------------------------------------
    @staticmethod
    def say(text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    @staticmethod
    def say_error(err: OllangError) -> None:
        sys.stderr.write(f"error: {err.message}\n")
        if err.hint:
            sys.stderr.write(f"hint: {err.hint}\n")
        sys.stderr.flush()

    # -- the loop ----------------------------------------------------------------
    def run(self) -> int:
        """Read, answer, repeat; returns the exit code."""
        if not self.ensure_model():
            return 4
        if self.reader.tty:
            self.say(
                f"ollang chat · {self.model_name} · session {self.session_id} · /help for commands"
            )
        while True:
            try:
                text = self.reader.message()
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line
            except EOFError:
                return 0
            if not text.strip():
                continue
            if text.startswith("/"):
                if self.command(text) == "quit":
                    return 0
                continue
            self.send(text)

    def send(self, text: str) -> None:
        """Send one message and stream the answer."""
        assert self.chain is not None  # built by run()
        printer = StreamPrinter(show_reasoning=self.think)
        config: RunnableConfig = {"configurable": {"session_id": self.session_id}}
        try:
            with closing(self.chain.stream_turn({"input": text}, config)) as events:
                for event in events:
                    if event.type == "token":
                        printer.token(event.text)
                    elif event.type == "reasoning":
                        printer.reasoning(event.text)
                    else:
                        self.last = event.result
        except KeyboardInterrupt:
            printer.finish("[interrupted]")
            return
        except OllangError as err:
            printer.finish()
            self.say_error(err)
            return
        printer.finish()
        if self.verbose and self.last is not None:
            sys.stderr.write(format_stats(self.last) + "\n")
        if self.last is not None and self.last.truncated:
            sys.stderr.write(
                "warning: Ollama truncated the prompt to fit its context; /set num_ctx N\n"
            )

    # -- slash commands ------------------------------------------------------------
    def command(self, line: str) -> str | None:
        """Run one slash command; returns ``"quit"`` to leave."""
        name, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        handler = {
            "help": self.cmd_help,
            "?": self.cmd_help,
            "bye": self.cmd_bye,
            "exit": self.cmd_bye,
            "quit": self.cmd_bye,
            "clear": self.cmd_clear,
            "system": self.cmd_system,
            "set": self.cmd_set,
            "model": self.cmd_model,
            "retry": self.cmd_retry,
            "undo": self.cmd_undo,
            "fork": self.cmd_fork,
            "history": self.cmd_history,
            "export": self.cmd_export,
            "stats": self.cmd_stats,
            "sessions": self.cmd_sessions,
        }.get(name.lower())
        if handler is None:
            self.say(f"unknown command /{name}; /help lists them")
            return None
        try:
            return handler(arg)
        except OllangError as err:
            self.say_error(err)
            return None

    def cmd_help(self, arg: str) -> None:
        self.say(HELP.rstrip())

    def cmd_bye(self, arg: str) -> str:
        return "quit"

    def cmd_clear(self, arg: str) -> None:
        self.session_id = new_session_id()
        self.last = None
        self.say(f"new session {self.session_id}")

    def cmd_system(self, arg: str) -> None:
        if not arg:
            self.say(f"system: {self.system or '(none)'}")
            return
        self.system = arg
        self.build()
        self.say("system prompt set")

    def cmd_set(self, arg: str) -> None:
        key, _, value = arg.partition(" ")
        key = key.lower()
        if key in ("verbose", "quiet"):
            self.verbose = key == "verbose"
            self.say(f"verbose {'on' if self.verbose else 'off'}")
            return
        if key in ("think", "nothink"):
            self.think = key == "think"
            self.build()
            self.say(f"thinking {'on' if self.think else 'off'}")
            return
        if not key or not value.strip():
            self.say(
                "usage: /set KEY VALUE (e.g. /set temperature 0.2), /set verbose|quiet|think|nothink"
            )
            return
        name, typed = parse_option(key, value.strip())
        if name == "stop":
            self.options.setdefault("stop", []).append(typed)
        else:
            self.options[name] = typed
        self.build()
        self.say(f"set {name} = {typed}")

    def cmd_model(self, arg: str) -> None:
        if not arg:
            self.say(f"model: {self.model_name}")
            return
        previous = self.model_name
        self.model_name = arg
        try:
            if not self.ensure_model():
                raise ModelNotFoundError(arg)
        except OllangError:
            self.model_name = previous
            self.build()
            raise
        self.say(f"model {self.model_name}")

    def cmd_retry(self, arg: str) -> None:
        last = self.store.last_exchange(self.session_id)
        if last.human is None:
            self.say("nothing to retry")
            return
        self.store.drop_last_exchange(self.session_id)
        self.send(last.human.text)

    def cmd_undo(self, arg: str) -> None:
        dropped = self.store.drop_last_exchange(self.session_id)
        if not dropped.messages:
            self.say("nothing to undo")
            return
        self.say(f"dropped the last {'exchange' if len(dropped.messages) == 2 else 'message'}")

    def cmd_fork(self, arg: str) -> None:
        if not arg:
            self.say("usage: /fork NAME")
            return
        target = validate_session_id(arg)
        if self.store.get_session(self.session_id) is None:  # nothing said yet
            if self.store.get_session(target) is not None:
                raise SessionExistsError(target)
            self.store.update_session(target)
            copied = 0
        else:
            copied = self.store.fork_session(self.session_id, target)
        self.session_id = target
        self.say(f"forked {copied} messages into {target}; continuing there")

    def cmd_history(self, arg: str) -> None:
        from ollang.memory import message_status

        messages = self.store.get_messages(self.session_id)
        if not messages:
            self.say("(no messages yet)")
        for m in messages:
            status = message_status(m)
            mark = "" if status == "complete" else f" [{status}]"
            who = {"human": "you", "ai": "assistant"}.get(m.type, m.type)
            self.say(f"{who}{mark}: {m.text}")

    def cmd_export(self, arg: str) -> None:
        from ollang.commands.sessions import write_export
        from ollang.memory.export import dumps, export_json, export_markdown

        if not arg:
            self.say("usage: /export FILE (.json or .md)")
            return
        info = self.store.get_session(self.session_id)
        if info is None:
            self.say("nothing to export yet")
            return
        messages = self.store.get_messages(self.session_id)
        as_json = arg.lower().endswith(".json")
        text = dumps(export_json(info, messages)) if as_json else export_markdown(info, messages)
        path = write_export(text, arg, force=False)
        self.say(f"exported {len(messages)} messages to {path}")

    def cmd_stats(self, arg: str) -> None:
        info = self.store.get_session(self.session_id)
        count = info.message_count if info else 0
        self.say(f"session {self.session_id}: {count} messages, model {self.model_name}")
        if self.last is not None:
            self.say("last answer: " + format_stats(self.last))

    def cmd_sessions(self, arg: str) -> None:
        from ollang.commands.sessions import list_sessions

        list_sessions(False)


def run_chat(
    *,
    model: str | None,
    system: str | None,
    session: str | None,
    cont: bool,
    options: list[str],
    think: bool,
    verbose: bool,
    backend: str | None,
) -> int:
    """Start the REPL."""
    from ollang.errors import InvalidInputError

    if session and cont:
        raise InvalidInputError("use either --session or --continue, not both")
    opts = parse_options(options)
    store = open_default_store()
    if session:
        session_id = validate_session_id(session)
    elif cont:
        recent = store.list_sessions()
        session_id = recent[0].id if recent else new_session_id()
    else:
        session_id = new_session_id()
    repl = Repl(
        model=model,
        system=system,
        session_id=session_id,
        options=opts,
        think=think,
        verbose=verbose,
        backend=backend,
        store=store,
    )
    try:
        return repl.run()
    finally:
        store.close()
