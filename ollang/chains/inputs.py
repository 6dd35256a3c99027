"""What a chat turn's input may be, and how it is read.

The rule (README: "Chat chain inputs"):

* a string, a ``StringPromptValue`` (``PromptTemplate | chain``) or a ``HumanMessage``
  is the user's message;
* ``{"input": ..., "system": ...}``: ``input`` is any of these forms, ``system`` a
  system prompt for this turn only (``{"message": ...}`` is accepted for ``input``);
  ``{"messages": [...]}`` (LangGraph's ``MessagesState``) is a message list;
* a message list or a ``ChatPromptValue`` (``ChatPromptTemplate | chain``): a leading
  ``SystemMessage`` is this turn's system prompt; the **last human message** is the
  user's message — the one stored in the session; anything between the two is context
  for this turn only (sent after the stored history, never stored). Nothing may follow
  the last human message.

The user's message keeps its content as given (text, or content blocks such as images)
and its ``id`` if it has one (a message stored twice under one id is stored once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, convert_to_messages
from langchain_core.prompt_values import ChatPromptValue, PromptValue
from pydantic import BaseModel, Field

from ollang.errors import InvalidInputError

__all__ = ["ChatTurnInput", "TurnInput", "parse_turn_input"]


class ChatTurnInput(BaseModel):
    """One chat turn (the chain also takes a plain string, messages or a prompt value)."""

    input: str = Field(description="The user's message.")
    system: str | None = Field(
        None, description="A system prompt for this turn only (default: the chain's)."
    )


@dataclass
class TurnInput:
    """A turn's input, read.

    Attributes:
        human: The user's message: stored in the session, sent last.
        system: This turn's system prompt, or ``None`` for the chain's own.
        context: Messages sent between the history and ``human``, never stored.
    """

    human: HumanMessage
    system: str | None = None
    context: list[BaseMessage] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The plain text of the user's message."""
        return self.human.text


def _human(value: HumanMessage) -> HumanMessage:
    # A copy: the store assigns an id to the object it is given, and the caller's
    # message must not change under them.
    return value.model_copy()


def _from_messages(messages: Sequence[BaseMessage]) -> TurnInput:
    if not messages:
        raise InvalidInputError("the message list is empty", "end it with a human message")
    system: str | None = None
    rest = list(messages)
    if isinstance(rest[0], SystemMessage):
        system = rest.pop(0).text
    last = max((i for i, m in enumerate(rest) if isinstance(m, HumanMessage)), default=None)
    if last is None:
        raise InvalidInputError(
            "the message list has no human message", "the last human message is what is sent"
        )
    if last != len(rest) - 1:
        after = type(rest[last + 1]).__name__
        raise InvalidInputError(
            f"a {after} follows the last human message",
            "end the list with the human message to answer",
        )
    human = rest[last]
    assert isinstance(human, HumanMessage)
    return TurnInput(_human(human), system, rest[:last])


def _messages(value: Any) -> list[BaseMessage]:
    try:
        return convert_to_messages(value)
    except (ValueError, TypeError, NotImplementedError) as err:
        raise InvalidInputError(f"cannot read the input as messages ({err})") from err


def _read(value: Any) -> TurnInput:
    if isinstance(value, str):
        return TurnInput(HumanMessage(value))
    if isinstance(value, HumanMessage):
        return TurnInput(_human(value))
    if isinstance(value, ChatPromptValue):
        return _from_messages(value.to_messages())
    if isinstance(value, PromptValue):  # StringPromptValue and the like
        return TurnInput(HumanMessage(value.to_string()))
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return _from_messages(_messages(value))
    raise InvalidInputError(
        "chat input must be a string, {'input': ...}, messages or a prompt value",
        f"got {type(value).__name__}",
    )


def parse_turn_input(value: Any) -> TurnInput:
    """Read a chat turn's input (see the module docstring for the forms).

    Raises:
        InvalidInputError: an input of another shape, or an empty message.
    """
    system: Any = None
    if isinstance(value, Mapping):
        system = value.get("system")
        if "messages" in value and "input" not in value:
            turn = _from_messages(_messages(value["messages"]))
        else:
            turn = _read(value.get("input", value.get("message")))
        if system is not None and not isinstance(system, str):
            raise InvalidInputError("'system' must be a string")
    else:
        turn = _read(value)
    if system is not None:
        turn.system = system
    if _is_empty(turn.human):
        raise InvalidInputError("the message is empty", "type something to send")
    return turn


def _is_empty(message: BaseMessage) -> bool:
    """No text but blanks, and no other content (an image alone is a message)."""
    content = message.content
    if isinstance(content, str):
        return not content.strip()
    for block in content:
        if isinstance(block, str):
            if block.strip():
                return False
        elif block.get("type") != "text" or str(block.get("text", "")).strip():
            return False
    return True
