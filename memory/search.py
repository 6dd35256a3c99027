"""Turning what a user types into a search, safely, for both stores.

A query is a list of words; a message matches when it contains all of them.
Nothing the user types is syntax: FTS5 operators (``OR``, ``NOT``, ``NEAR(``,
``*``, ``-``, ``^``, column filters, quotes) are just more words, so no input can
cause a query error. Punctuation is not searchable (SQLite's tokenizer drops
it), so both stores look only at the letter-and-digit runs of each word:
``-x`` finds "x", ``NEAR(`` finds "near", ``*`` alone finds nothing.
"""

from __future__ import annotations

import re

from ollang.memory.base import SNIPPET_ELLIPSIS, SNIPPET_MARK

__all__ = ["fts_query", "matches", "query_tokens", "query_words", "snippet"]

# Characters of context kept on each side of the first match in a snippet.
_CONTEXT_CHARS = 60


# A run of letters or digits: what SQLite's unicode61 tokenizer keeps as a token
# (it treats "_" as a separator, hence not plain \w).
_TOKEN = re.compile(r"[^\W_]+")


def query_words(text: str) -> list[str]:
    """The words of a query: whitespace-separated, each with a letter or digit."""
    # NUL would end the query string inside FTS5's parser ("unterminated string").
    return [word for word in text.replace("\x00", " ").split() if _TOKEN.search(word)]


def query_tokens(text: str) -> list[str]:
    """The letter-and-digit runs of a query, which the in-memory store looks for."""
    return _TOKEN.findall(text)


def fts_query(text: str) -> str:
    """An FTS5 MATCH expression requiring every token of ``text``, with no operators.

    Each letter-and-digit run becomes its own double-quoted string, side by side
    (AND): the index keeps no positions (migration m003), so ``e-mail`` finds
    messages with both "e" and "mail", like the in-memory store.

    Returns:
        The expression, or ``""`` when ``text`` has no tokens.
    """
    return " ".join(f'"{token}"' for token in query_tokens(text.replace("\x00", " ")))


def _pattern(tokens: list[str]) -> re.Pattern[str]:
    # Longest first, so "cat|category" marks the whole of "category".
    ordered = sorted(set(tokens), key=len, reverse=True)
    return re.compile("|".join(re.escape(token) for token in ordered), re.IGNORECASE)


def matches(tokens: list[str], text: str) -> bool:
    """Whether ``text`` contains every one of ``tokens`` (substrings), ignoring case."""
    return bool(tokens) and all(re.search(re.escape(t), text, re.IGNORECASE) for t in tokens)


def snippet(tokens: list[str], text: str) -> str:
    """A short extract of ``text`` around the first match, matches wrapped in ``**``."""
    pattern = _pattern(tokens)
    first = pattern.search(text)
    if first is None:
        return text[: 2 * _CONTEXT_CHARS]
    start = max(0, first.start() - _CONTEXT_CHARS)
    end = min(len(text), first.end() + _CONTEXT_CHARS)
    marked = pattern.sub(lambda m: f"{SNIPPET_MARK}{m.group(0)}{SNIPPET_MARK}", text[start:end])
    head = SNIPPET_ELLIPSIS if start > 0 else ""
    tail = SNIPPET_ELLIPSIS if end < len(text) else ""
    return head + marked + tail
