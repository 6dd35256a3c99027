"""``ollang chat`` (and ``ollang run MODEL``): the REPL.

Slash commands are modelled on ``ollama run`` — ``/set parameter``, ``/set system``,
``/show``, ``/save``, ``/load``, image paths in a message — and go beyond it (/retry,
/undo, /fork, /export, /stats). A resumed session (``-c``, ``--session``, ``/load``)
continues with its own model, system prompt and options. Ctrl-C while an answer streams
stops it; the chain keeps the partial answer in the session, marked interrupted. Ctrl-C
at the prompt clears the line; Ctrl-D quits.
"""

from __future__ import annotations

import shlex
import sys
from contextlib import closing
from typing import TYPE_CHECKING, Any

from ollang.commands.common import (
    TurnArgs,
    build_model,
    dim,
    human_message,
    model_manager,
    new_session_id,
    open_default_store,
    parse_option,
    session_settings,
    validate_session_id,
)
from ollang.commands.render import StreamPrinter, format_stats
from ollang.errors import ModelNotFoundError, OllangError
from ollang.memory.errors import SessionExistsError, SessionNotFoundError
from ollang.settings import Settings

if TYPE_CHECKING:
    from langchain_core.messages import HumanMessage
    from langchain_core.runnables import RunnableConfig

    from ollang.chains.chat import ChatChain
    from ollang.memory import ChatStore
    from ollang.turns.recorder import TurnResult

__all__ = ["Repl", "run_chat"]

HELP = """\
Commands:
  /help                     this help
  /bye, /exit               quit (Ctrl-D works too)
  /clear                    start a fresh session (the old one stays stored)
  /system [TEXT]            show or set the system prompt (also /set system TEXT)
  /set KEY VALUE            set a model option (temperature, num_ctx, seed, top_p, stop, ...)
  /set parameter KEY VALUE  the same, in `ollama run`'s words
  /set verbose|quiet        show or hide timings, token counts and context use
  /set think|nothink        ask thinking models to reason (shown dimmed) or not
  /set format json|off      answer in JSON
  /show info|parameters|system|license|model   what the model and session use
  /model [NAME]             show or switch the model
  /image PATH               attach an image to the next message (or type its path in one)
  /save NAME                save this conversation as the session NAME (and go on there)
  /load NAME                continue the session NAME, with its model and settings
  /retry                    regenerate the last answer
  /undo                     drop the last exchange
  /fork NAME                copy this session into a new one named NAME and continue there
  /history                  show this session's messages
  /export FILE              write the session to FILE (.json, else Markdown)
  /stats                    stats of the last answer
  /sessions                 list sessions
Start and end a multi-line message with \"\"\".
Ctrl-C stops an answer (the partial answer is kept); Ctrl-C at the prompt clears the line.
"""


class _Reader:
    """Reads user lines: prompt_toolkit on a terminal, plain lines from a pipe."""

    def __init__(self, settings: Settings) -> None:
        self.tty = sys.stdin.isatty() and sys.stdout.isatty()
        self._session: Any = None
        if self.tty:
            from prompt_toolkit import PromptSession
            from prompt_toolkit.history import FileHistory

            home = settings.home
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
        settings: Settings,
        args: TurnArgs,
        session_id: str,
        verbose: bool,
        store: ChatStore,
    ) -> None:
        self.settings = settings
        self.args = args
        self.session_id = session_id
        self.verbose = verbose
        self.store = store
        self.reader = _Reader(settings)
        self.last: TurnResult | None = None
        self.hosts: list[str] = []
        self.chain: ChatChain | None = None
        # --image on the command line goes with the first message, like /image.
        self.pending_images: list[str] = list(args.images)
        self.resume()

    # -- settings ----------------------------------------------------------------
    def resume(self) -> None:
        """Take the session's model, system prompt and options unless the command line
        set them (a dim line says what it overrides)."""
        options = self.args.model_options()
        settings = session_settings(self.store, self.session_id, self.args, options)
        self.model_name = settings.model or ""
        self.system = settings.system
        self.options = settings.options
        self.think = bool(self.options.get("think"))
        self.settings_changed = settings.changed

    def build(self) -> None:
        """(Re)build the model and the chain from the current settings, and remember them
        with the session."""
        from ollang.chains import build_chat_chain

        routed = build_model(
            self.settings, self.args.backend, self.model_name or None, dict(self.options)
        )
        self.model_name = routed.name
        self.hosts = routed.hosts
        self.chain = build_chat_chain(
            routed.model, store=self.store, system=self.system, usage_key="local"
        )
        if self.settings_changed or self.store.get_session(self.session_id) is not None:
            self.store.update_session(
                self.session_id,
                model=self.model_name,
                system=self.system or "",
                options=self.options,
            )
            self.settings_changed = False

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

            pull_model(self.settings, err.model)
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
        sys.stdout.flush()
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

    def _attachments(self, text: str) -> tuple[str, list[str]]:
        """Image paths typed in the message (as ``ollama run`` reads them), taken out of
        the text, plus those attached with /image."""
        from ollang.turns.images import looks_like_image_path

        try:
            words = shlex.split(text)
        except ValueError:
            words = text.split()
        found = [w for w in words if looks_like_image_path(w)]
        for path in found:
            for form in (f"'{path}'", f'"{path}"', path):
                text = text.replace(form, "")
            self.say(f"added image {path}")
        images, self.pending_images = [*self.pending_images, *found], []
        return " ".join(text.split()) or "What is in this image?", images

    def send(self, text: str) -> None:
        """Send one message and stream the answer."""
        assert self.chain is not None  # built by run()
        images: list[str] = []
        if self.pending_images or "." in text:
            text, images = self._attachments(text)
        try:
            human = human_message(text, images)
        except OllangError as err:
            self.say_error(err)
            return
        self.stream(human)

    def stream(self, human: HumanMessage) -> None:
        """Stream the answer to ``human`` (stored first, by the chain)."""
        assert self.chain is not None
        printer = StreamPrinter(show_reasoning=self.think)
        config: RunnableConfig = {"configurable": {"session_id": self.session_id}}
        try:
            with closing(self.chain.stream_turn(human, config)) as events:
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
        wanted = self.options.get("format")
        if wanted is not None and self.last is not None:
            from ollang.chains.structured import check_answer

            try:
                check_answer(self.last.text, wanted)
            except OllangError as err:
                self.say_error(err)
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
            "show": self.cmd_show,
            "model": self.cmd_model,
            "image": self.cmd_image,
            "save": self.cmd_save,
            "load": self.cmd_load,
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
        self.settings_changed = True
        self.say(f"new session {self.session_id}")

    def cmd_system(self, arg: str) -> None:
        if not arg:
            self.say(f"system: {self.system or '(none)'}")
            return
        self.system = arg
        self.settings_changed = True
        self.build()
        self.say("system prompt set")

    def cmd_set(self, arg: str) -> None:
        key, _, value = arg.partition(" ")
        key = key.lower()
        value = value.strip()
        if key in ("verbose", "quiet"):
            self.verbose = key == "verbose"
            self.say(f"verbose {'on' if self.verbose else 'off'}")
            return
        if key in ("think", "nothink"):
            self.think = key == "think"
            if self.think:
                self.options["think"] = True
            else:
                self.options.pop("think", None)
            self.settings_changed = True
            self.build()
            self.say(f"thinking {'on' if self.think else 'off'}")
            return
        if key == "system":  # Ollama's spelling of /system
            return self.cmd_system(value)
        if key == "parameter":  # `/set parameter KEY VALUE`, as in `ollama run`
            key, _, value = value.partition(" ")
            value = value.strip()
        if key == "format" and value.lower() in ("off", "none", ""):
            self.options.pop("format", None)
            self.settings_changed = True
            self.build()
            self.say("format off")
            return
        if not key or not value:
            self.say(
                "usage: /set KEY VALUE (e.g. /set temperature 0.2), /set parameter KEY VALUE, "
                "/set system TEXT, /set verbose|quiet|think|nothink"
            )
            return
        name, typed = parse_option(key, value)
        if name == "stop":
            self.options.setdefault("stop", []).append(typed)
        else:
            self.options[name] = typed
        self.settings_changed = True
        self.build()
        self.say(f"set {name} = {typed}")

    def cmd_show(self, arg: str) -> None:
        what = (arg or "info").lower()
        if what == "system":
            self.say(self.system or "(no system prompt)")
            return
        if what == "model":
            self.say(
                f"model: {self.model_name}" + (f" on {', '.join(self.hosts)}" if self.hosts else "")
            )
            return
        if what == "parameters" and self.options:
            for key, value in sorted(self.options.items()):
                self.say(f"{key:<16} {value}")
            return
        if self.hosts == ["embedded"]:
            self.say(f"model: {self.model_name} (embedded, llama.cpp)")
            return
        details = model_manager(self.settings).show(self.model_name)
        if what == "info":
            self.say(f"model: {details.name}")
            for label, value in (
                ("family", details.family),
                ("parameters", details.parameter_size),
                ("quantization", details.quantization_level),
                ("context length", details.context_length),
            ):
                self.say(f"{label:<16} {value if value is not None else '-'}")
            if details.capabilities:
                self.say(f"{'capabilities':<16} {', '.join(details.capabilities)}")
        elif what == "parameters":
            self.say(details.parameters or "(no parameters set)")
        elif what == "license":
            self.say(details.license or "(no license)")
        else:
            self.say("usage: /show info|parameters|system|license|model")

    def cmd_model(self, arg: str) -> None:
        if not arg:
            self.say(f"model: {self.model_name}")
            return
        previous = self.model_name
        self.model_name = arg
        self.settings_changed = True
        try:
            if not self.ensure_model():
                raise ModelNotFoundError(arg)
        except OllangError:
            self.model_name = previous
            self.build()
            raise
        self.say(f"model {self.model_name}")

    def cmd_image(self, arg: str) -> None:
        from ollang.turns.images import image_block_from_path

        if not arg:
            self.say("usage: /image PATH (attached to your next message)")
            return
        path = arg.strip("'\"")
        image_block_from_path(path)  # checked now: a missing file is said at once
        self.pending_images.append(path)
        self.say(f"added image {path}; it goes with your next message")

    def cmd_save(self, arg: str) -> None:
        if not arg:
            self.say("usage: /save NAME")
            return
        target = validate_session_id(arg)
        if target == self.session_id:
            self.say(f"saved as {target}")
            return
        if self.store.get_session(self.session_id) is None:
            self.store.update_session(self.session_id)
        try:
            self.store.fork_session(self.session_id, target)
        except SessionExistsError as err:
            raise SessionExistsError(
                target, f"/load {target} to continue it, or /save another name"
            ) from err
        self.session_id = target
        self.say(f"saved as {target}; continuing there")

    def cmd_load(self, arg: str) -> None:
        if not arg:
            self.say("usage: /load NAME")
            return
        target = validate_session_id(arg)
        if self.store.get_session(target) is None:
            raise SessionNotFoundError(target)
        self.session_id = target
        self.args = TurnArgs(None, None, target, False, [], [], backend=self.args.backend)
        self.resume()
        self.build()
        info = self.store.get_session(target)
        count = info.message_count if info else 0
        self.say(f"loaded {target}: {count} messages, model {self.model_name}")

    def cmd_retry(self, arg: str) -> None:
        from langchain_core.messages import HumanMessage

        last = self.store.last_exchange(self.session_id)
        if last.human is None:
            self.say("nothing to retry")
            return
        self.store.drop_last_exchange(self.session_id)
        self.stream(HumanMessage(last.human.content))  # its images, if any, go again

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
        from ollang.commands.sessions import print_messages

        messages = self.store.get_messages(self.session_id)
        if not messages:
            self.say("(no messages yet)")
        print_messages(messages)

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

        list_sessions(self.settings, False)


def run_chat(settings: Settings, args: TurnArgs, *, verbose: bool) -> int:
    """Start the REPL (resuming a session with ``--session`` or ``-c``)."""
    from ollang.turns.images import image_block_from_path

    for path in args.images:  # checked before anything starts: a missing file is exit 2
        image_block_from_path(path)
    store = open_default_store(settings)
    session_id = args.session_id(store) or new_session_id()
    try:
        repl = Repl(
            settings=settings, args=args, session_id=session_id, verbose=verbose, store=store
        )
        if args.session or args.cont:
            info = store.get_session(session_id)
            if info is not None and info.message_count:
                dim(f"resuming {session_id}: {info.message_count} messages")
        return repl.run()
    finally:
        store.close()
