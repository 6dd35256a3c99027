"""``ollang sessions``: list, show, export, import, rm, rename, search, migrate."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollang.commands.common import open_default_store, validate_session_id
from ollang.commands.errors import EXIT_USAGE, fail
from ollang.commands.render import terminal_safe
from ollang.errors import InvalidInputError
from ollang.memory.errors import SessionNotFoundError
from ollang.settings import Settings

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

    from ollang.memory import ChatStore, SessionInfo

__all__ = [
    "export_session",
    "import_session",
    "list_sessions",
    "migrate_sessions",
    "remove_session",
    "rename_session",
    "search_sessions",
    "show_session",
    "write_export",
]


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def list_sessions(settings: Settings, as_json: bool) -> int:
    """Sessions, most recent first."""
    with open_default_store(settings) as store:
        sessions = store.list_sessions()
    if as_json:
        rows = [
            {
                "id": s.id,
                "title": s.title,
                "model": s.model,
                "created": s.created,
                "updated": s.updated,
                "messages": s.message_count,
            }
            for s in sessions
        ]
        sys.stdout.write(json.dumps({"sessions": rows}, indent=2, ensure_ascii=False) + "\n")
        return 0
    if not sessions:
        sys.stdout.write("no sessions yet; start one with `ollang chat`\n")
        return 0
    if sys.stdout.isatty():  # columns that line up, cut to the terminal's width
        from rich.console import Console
        from rich.table import Table

        table = Table("id", "updated", "msgs", "model", "title", box=None, pad_edge=False)
        for s in sessions:
            table.add_row(
                s.id,
                _when(s.updated),
                str(s.message_count),
                s.model or "-",
                terminal_safe((s.title or "").replace("\n", " ")),
            )
        Console().print(table, overflow="ellipsis", no_wrap=True)
        return 0
    width = max(len(s.id) for s in sessions)
    model_width = max(len(s.model or "-") for s in sessions)
    for s in sessions:
        title = terminal_safe((s.title or "").replace("\n", " "))
        sys.stdout.write(
            f"{s.id:<{width}}  {_when(s.updated)}  {s.message_count:>4} msgs  "
            f"{s.model or '-':<{model_width}}  {title}\n"
        )
    return 0


#: How a role is called when messages are shown (sessions show, search, /history).
ROLE_LABELS = {"human": "you", "ai": "assistant", "system": "system", "tool": "tool"}


def _images_of(message: BaseMessage) -> list[str]:
    from ollang.transport.manage import format_gb

    notes = []
    if isinstance(message.content, list):
        for block in message.content:
            if isinstance(block, dict) and block.get("type") == "image":
                size = len(block.get("base64") or "") * 3 // 4
                kind = str(block.get("mime_type") or "image").removeprefix("image/")
                notes.append(f"[image: {format_gb(size)} {kind}]")
    return notes


def print_messages(messages: list[BaseMessage]) -> None:
    """Messages as ``you: ...`` / ``assistant [interrupted]: ...``, images noted."""
    from ollang.memory.messages import message_status

    for m in messages:
        status = message_status(m)
        mark = "" if status == "complete" else f" [{status}]"
        who = ROLE_LABELS.get(m.type, m.type)
        text = " ".join([terminal_safe(m.text), *_images_of(m)]).strip()
        sys.stdout.write(f"{who}{mark}: {text}\n\n")


def _load(store: ChatStore, session_id: str) -> tuple[SessionInfo, list[BaseMessage]]:
    info = store.get_session(validate_session_id(session_id))
    if info is None:
        raise SessionNotFoundError(session_id)
    return info, store.get_messages(session_id)


def show_session(settings: Settings, session_id: str, as_json: bool) -> int:
    """A session's messages."""
    from ollang.memory.export import dumps, export_json

    with open_default_store(settings) as store:
        info, messages = _load(store, session_id)
    if as_json:
        sys.stdout.write(dumps(export_json(info, messages)))
        return 0
    header = [f"session {info.id}", f"model {info.model or '-'}"]
    if info.options:
        header.append("options " + ", ".join(f"{k}={v}" for k, v in sorted(info.options.items())))
    sys.stdout.write(" · ".join(header) + "\n")
    if info.system:
        sys.stdout.write(f"system: {terminal_safe(info.system)}\n")
    sys.stdout.write("\n")
    print_messages(messages)
    return 0


def write_export(text: str, output: str, force: bool) -> Path:
    """Write an export to ``output`` safely: never over a directory, never overwrite unasked."""
    path = Path(output).expanduser()
    if path.is_dir():
        raise InvalidInputError(f"{output} is a directory", "give a file name, e.g. chat.md")
    if not path.parent.is_dir():
        raise InvalidInputError(f"directory {path.parent} does not exist", "create it first")
    if path.exists() and not force:
        raise InvalidInputError(f"{output} exists", "pass --force to overwrite it")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # atomic: a crash never leaves half a file
    return path


def export_session(
    settings: Settings, session_id: str, fmt: str, output: str | None, force: bool
) -> int:
    """Export as Markdown or JSON to stdout or a file."""
    from ollang.memory.export import dumps, export_json, export_markdown

    fmt = fmt.lower()
    if fmt not in ("md", "markdown", "json"):
        return fail(f"unknown format {fmt!r}", "use md or json", EXIT_USAGE)
    with open_default_store(settings) as store:
        info, messages = _load(store, session_id)
    text = dumps(export_json(info, messages)) if fmt == "json" else export_markdown(info, messages)
    if output is None:
        sys.stdout.write(text)
    else:
        path = write_export(text, output, force)
        sys.stderr.write(f"exported {len(messages)} messages to {path}\n")
    return 0


def import_session(settings: Settings, path: str, session_id: str | None) -> int:
    """Import a JSON export, checked as every other way in checks what it takes (the
    field at fault named, exit 2); all of it in one transaction, or nothing."""
    from ollang.memory.export import check_export, store_import

    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InvalidInputError(f"no file {path}") from err
    except RecursionError as err:
        raise InvalidInputError(f"{path} is not a JSON export: it is nested too deeply") from err
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InvalidInputError(f"{path} is not a JSON export: {err}") from err
    checked = check_export(
        data,
        session_id=validate_session_id(session_id) if session_id else None,
        check_settings=check_import_settings,
        check_content=check_import_content,
    )
    with open_default_store(settings) as store:  # opened only for a file that passed
        new_id = store_import(store, *checked)
    sys.stdout.write(f"imported session {new_id}\n")
    return 0


def check_import_settings(settings: dict[str, Any]) -> None:
    """An imported session's model and options, checked as ``-m`` and ``-o`` and the HTTP
    API check theirs (every later ``ask --session`` and turn over HTTP uses them).

    Raises:
        InvalidInputError: the field at fault named (``session.options.bogus: ...``).
    """
    from pydantic import ValidationError

    from ollang.commands.common import parse_option
    from ollang.server.schemas import MODEL_NAME_PATTERN, ChatOptions

    model = settings.get("model")
    if model is not None and (len(model) > 200 or not re.fullmatch(MODEL_NAME_PATTERN, model)):
        raise InvalidInputError(
            f"session.model: {model[:60]!r} is not a model name", "e.g. llama3 or qwen3:0.6b"
        )
    options = settings.get("options") or {}
    for key, value in options.items():
        where = f"session.options.{key[:40]}"
        try:
            name, _typed = parse_option(key, "1")
        except InvalidInputError as err:
            raise InvalidInputError(f"{where}: {err.message}", err.hint) from None
        if name != key:
            raise InvalidInputError(f"{where}: unknown option {key!r}", f"did you mean {name}?")
        if not _option_value_ok(key, value):
            raise InvalidInputError(
                f"{where}: {value!r:.60} is not a value of option {key}",
                f"give it a value `-o {key}=...` would take",
            )
    known = {key: value for key, value in options.items() if key in ChatOptions.model_fields}
    try:
        ChatOptions(**known)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"][:1])
        raise InvalidInputError(
            f"session.options.{field}: {first['msg']}", "the HTTP API's limits apply"
        ) from None


def check_import_content(content: Any, where: str) -> None:
    """An imported message's content as ollang stores and sends it: text, or a list of
    text and inline images (base64 PNG, JPEG, GIF or WebP, checked as ``-i`` and the HTTP
    API check every image: :mod:`ollang.turns.images`).

    Raises:
        InvalidInputError: the block at fault named (``messages[3].content[1]: ...``).
    """
    from ollang.turns.images import MAX_IMAGES, image_block_from_base64

    if isinstance(content, str):
        return
    images = 0
    for index, block in enumerate(content):
        at = f"{where}[{index}]"
        if isinstance(block, str):
            continue
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            continue
        if kind == "image":
            data = block.get("base64") or block.get("data")
            if not isinstance(data, str) or "url" in block:
                raise InvalidInputError(
                    f"{at}: image URLs are not supported; an image is stored inline "
                    '({"type": "image", "base64": ..., "mime_type": ...}), as ollang exports it',
                    "put the image's bytes in the file as base64, or drop the block",
                )
            image_block_from_base64(data, at)  # a PNG, JPEG, GIF or WebP, at most 10 MiB
            images += 1
            if images > MAX_IMAGES:
                raise InvalidInputError(f"{at}: more than {MAX_IMAGES} images in one message")
            continue
        shown = repr(kind)[:40] if isinstance(kind, str) else "unknown"
        raise InvalidInputError(
            f"{at}: content blocks of type {shown} are not supported", "use text and images"
        )


def _option_value_ok(key: str, value: Any) -> bool:
    """Whether ``value`` has the type option ``key`` takes (as ``-o`` would make it)."""
    from ollang.commands.common import parse_option

    if key == "stop":
        return isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        )
    if key == "keep_alive":
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    if key == "format":
        return value == "json" or isinstance(value, dict)
    if key == "think":
        return isinstance(value, bool) or value in ("low", "medium", "high")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        parse_option(key, str(value))  # an int option refuses 0.5
    except InvalidInputError:
        return False
    return True


def remove_session(settings: Settings, session_id: str, yes: bool) -> int:
    """Delete a session (asks first on a terminal unless --yes)."""
    validate_session_id(session_id)
    if not yes and sys.stdin.isatty():
        import typer

        if not typer.confirm(f"Delete session {session_id}?", default=False):
            return 0
    with open_default_store(settings) as store:
        if not store.delete_session(session_id):
            raise SessionNotFoundError(session_id)
    sys.stdout.write(f"deleted {session_id}\n")
    return 0


def rename_session(settings: Settings, session_id: str, new_id: str) -> int:
    """Rename a session."""
    with open_default_store(settings) as store:
        store.rename_session(validate_session_id(session_id), validate_session_id(new_id))
    sys.stdout.write(f"renamed {session_id} to {new_id}\n")
    return 0


def search_sessions(settings: Settings, text: str, limit: int, as_json: bool) -> int:
    """Full-text search over stored messages."""
    if not text.strip():
        return fail("nothing to search for", "give some words", EXIT_USAGE)
    with open_default_store(settings) as store:
        hits = store.search(text, limit=limit)
    if as_json:
        rows = [asdict(h) for h in hits]  # session_id, message_id, role, snippet, created
        sys.stdout.write(json.dumps({"hits": rows}, indent=2, ensure_ascii=False) + "\n")
        return 0
    if not hits:
        sys.stdout.write("no matches\n")
        return 0
    from ollang.memory.base import SNIPPET_MARK

    styled = sys.stdout.isatty()
    for h in hits:
        who = ROLE_LABELS.get(h.role, h.role)
        parts = terminal_safe(h.snippet.replace("\n", " ")).split(SNIPPET_MARK)
        if styled:  # the matched words in bold, not between literal **
            snippet = "".join(f"\x1b[1m{p}\x1b[22m" if i % 2 else p for i, p in enumerate(parts))
        else:
            snippet = "".join(parts)
        sys.stdout.write(f"{h.session_id}  {_when(h.created)}  {who}: {snippet}\n")
    return 0


# -- migrate (issue 15) ------------------------------------------------------------------
def migrate_sessions(settings: Settings, source_url: str | None, target_url: str) -> int:
    """Copy every session and message from one store to another (idempotent).

    A rich progress bar on a terminal; one summary line on stdout either way. URLs
    are shown without their passwords.
    """
    from ollang.memory import open_store, redact_url
    from ollang.memory.transfer import copy_sessions

    if source_url is not None and source_url == target_url:
        return fail("--from and --to are the same store", "give two different URLs", EXIT_USAGE)
    with open_default_store(settings) if source_url is None else open_store(source_url) as source:
        shown_from = redact_url(source_url) if source_url else str(getattr(source, "path", source))
        with open_store(target_url) as target:
            total = sum(s.message_count for s in source.list_sessions())
            if sys.stderr.isatty():
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                )

                with Progress(
                    TextColumn("copying messages"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=Console(stderr=True),
                ) as progress:
                    task = progress.add_task("copy", total=total)
                    report = copy_sessions(
                        source, target, on_progress=lambda n: progress.advance(task, n)
                    )
            else:
                report = copy_sessions(source, target)
    sys.stdout.write(
        f"copied {report.sessions} sessions, {report.messages} messages "
        f"({report.new_messages} new) from {terminal_safe(shown_from)} "
        f"to {terminal_safe(redact_url(target_url))}\n"
    )
    if report.skipped:
        sys.stderr.write(
            f"skipped {len(report.skipped)} sessions the target has under another owner: "
            + ", ".join(terminal_safe(s) for s in report.skipped[:10])
            + (" ..." if len(report.skipped) > 10 else "")
            + "\n"
        )
    return 0
