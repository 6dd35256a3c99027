"""Showing a streamed answer: rich Markdown on a terminal, plain text otherwise."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ollang.turns.recorder import TurnResult

__all__ = ["StreamPrinter", "context_meter", "format_stats", "terminal_safe"]

# Control characters other than newline and tab would let stored or generated text
# drive the terminal (move the cursor, rewrite lines, set the title, ring the bell):
# shown as their Unicode "control pictures" (ESC as U+241B) instead.
_CONTROLS = {c: 0x2400 + c for c in range(0x20) if chr(c) not in "\n\t"}
_CONTROLS.update({0x7F: 0x2421, **{c: 0xFFFD for c in range(0x80, 0xA0)}})


def terminal_safe(text: str) -> str:
    """``text`` with terminal control characters made visible (``\\r\\n`` becomes ``\\n``)."""
    return text.replace("\r\n", "\n").translate(_CONTROLS)


class StreamPrinter:
    """Prints reasoning (dimmed, apart) and answer pieces as they arrive.

    On a terminal the answer is re-rendered as Markdown while it grows (rich
    ``Live``); elsewhere the text is written as is, so pipes get exactly the
    model's output.
    """

    def __init__(self, *, markdown: bool | None = None, show_reasoning: bool = False) -> None:
        self.tty = sys.stdout.isatty()
        # rich's Live display does not refresh on a dumb terminal: stream plain text there.
        fancy = self.tty and os.environ.get("TERM", "") not in ("dumb", "")
        self.markdown = fancy if markdown is None else markdown
        self.show_reasoning = show_reasoning
        self.text = ""
        self._live: Any = None
        self._console: Any = None
        self._reasoning_open = False

    def _quiet_control_echo(self) -> None:
        """Keep the terminal from echoing ``^C`` while the live answer is drawn.

        rich's Live pads its lines to the terminal's width; the two characters of an
        echoed ``^C`` then wrap the last line, the redraw lands one line lower, and the
        partial answer shows twice. Turning off ECHOCTL (what ``stty -echoctl`` does) for
        the answer's duration removes the cause; the terminal is restored after it.
        """
        self._saved_tty: list[Any] | None = None
        try:
            import termios

            fd = sys.stdin.fileno()
            if not os.isatty(fd):
                return
            attrs = termios.tcgetattr(fd)
            self._saved_tty = list(attrs)
            attrs[3] &= ~termios.ECHOCTL
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except (ImportError, OSError, ValueError, AttributeError):  # no termios (Windows), no tty
            self._saved_tty = None

    def _restore_echo(self) -> None:
        saved = getattr(self, "_saved_tty", None)
        if saved is None:
            return
        import termios

        with contextlib.suppress(OSError, ValueError):
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSANOW, saved)
        self._saved_tty = None

    def _rich(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False)
        return self._console

    def reasoning(self, piece: str) -> None:
        """Show a piece of reasoning, dimmed, never mixed into the answer."""
        if not self.show_reasoning:
            return
        if self.tty:
            if not self._reasoning_open:
                self._rich().print("Thinking...", style="dim italic")
            self._rich().print(
                terminal_safe(piece), style="dim", end="", markup=False, highlight=False
            )
        else:
            sys.stderr.write(piece)
            sys.stderr.flush()
        self._reasoning_open = True

    def _close_reasoning(self) -> None:
        if self._reasoning_open:
            if self.tty:
                self._rich().print("\n")
            else:
                sys.stderr.write("\n")
            self._reasoning_open = False

    def token(self, piece: str) -> None:
        """Show a piece of the answer."""
        self._close_reasoning()
        self.text += piece
        if self.markdown:
            if self._live is None:
                from rich.live import Live
                from rich.markdown import Markdown

                self._markdown = Markdown
                self._live = Live(console=self._rich(), refresh_per_second=12, transient=False)
                self._quiet_control_echo()
                self._live.start()
            self._live.update(self._markdown(terminal_safe(self.text)))
        else:
            sys.stdout.write(terminal_safe(piece) if self.tty else piece)
            sys.stdout.flush()

    def finish(self, note: str | None = None) -> None:
        """End the answer (with an optional note such as ``[interrupted]``)."""
        self._close_reasoning()
        if self._live is not None:
            self._live.stop()
            self._live = None
            self._restore_echo()
        elif self.text and not self.text.endswith("\n"):
            sys.stdout.write("\n")
        if note:
            if self.tty:
                self._rich().print(note, style="yellow", markup=False)
            else:
                sys.stdout.write(note + "\n")
        sys.stdout.flush()


def context_meter(result: TurnResult) -> str | None:
    """``context: USED/WINDOW tokens (P%)`` for a finished turn, if the window is known."""
    if result.context is None:
        return None
    used = result.context.prompt_tokens
    if result.usage.input_tokens is not None:
        used = result.usage.input_tokens + (result.usage.output_tokens or 0)
    window = result.context.window
    return f"context: {used}/{window} tokens ({100 * used / window:.0f}%)"


def format_stats(result: TurnResult) -> str:
    """One line of stats for a turn, like ``ollama run --verbose`` plus a context meter."""
    parts = []
    t = result.timings
    if t.ttft_s is not None:
        parts.append(f"time to first token: {t.ttft_s:.2f}s")
    if t.tokens_per_s is not None:
        parts.append(f"{t.tokens_per_s:.1f} tokens/s")
    if result.usage.input_tokens is not None:
        parts.append(f"prompt: {result.usage.input_tokens} tokens")
    if result.usage.output_tokens is not None:
        parts.append(f"reply: {result.usage.output_tokens} tokens")
    if t.total_s is not None:
        parts.append(f"total: {t.total_s:.2f}s")
    meter = context_meter(result)
    if meter:
        parts.append(meter)
    return " | ".join(parts)
