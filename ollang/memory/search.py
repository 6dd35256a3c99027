"""Turning what a user types into a search, safely, the same way for every store.

A query is a list of terms; a message matches when it has every one of them:

* a term matches a word with the same **stem** (Porter's English stemmer: "penguin"
  finds "penguins", "running" finds "runs"), case-insensitively;
* a term written with a trailing ``*`` is a **prefix**: ``fizz*`` finds "fizzbuzz".

Nothing else the user types is syntax: FTS5 operators (``OR``, ``NOT``, ``NEAR(``,
``-``, ``^``, column filters, quotes) are just more words, so no input can cause a
query error. Punctuation is not searchable (SQLite's tokenizer drops it), so every store
looks only at the letter-and-digit runs of each word: ``-x`` finds "x", ``NEAR(`` finds
"near", ``*`` alone finds nothing.

SQLite does the matching in FTS5 (``tokenize='porter unicode61'``, migration m006);
the in-memory store does it here with the same stemmer (snowballstemmer's ``porter``),
and PostgreSQL with its ``english`` text search configuration.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import snowballstemmer

from ollang.memory.base import SNIPPET_ELLIPSIS, SNIPPET_MARK

__all__ = [
    "Term",
    "fts_query",
    "matches",
    "query_terms",
    "query_tokens",
    "query_words",
    "snippet",
    "stem",
]

# Characters of context kept on each side of the first match in a snippet.
_CONTEXT_CHARS = 60

# A run of letters or digits: what SQLite's unicode61 tokenizer keeps as a token
# (it treats "_" as a separator, hence not plain \w). A `*` right after it: a prefix.
_TOKEN = re.compile(r"[^\W_]+")
_TERM = re.compile(r"([^\W_]+)(\*)?")

_STEMMER = snowballstemmer.stemmer("porter")


@dataclass(frozen=True)
class Term:
    """One term of a query: its token, and whether it is a prefix (``fizz*``)."""

    token: str
    prefix: bool = False


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The Porter stem of a word, lower-cased (what SQLite's porter tokenizer indexes)."""
    return str(_STEMMER.stemWord(word.lower()))


def query_words(text: str) -> list[str]:
    """The words of a query: whitespace-separated, each with a letter or digit."""
    # NUL would end the query string inside FTS5's parser ("unterminated string").
    return [word for word in text.replace("\x00", " ").split() if _TOKEN.search(word)]


def query_tokens(text: str) -> list[str]:
    """The letter-and-digit runs of a query."""
    return _TOKEN.findall(text)


def query_terms(text: str) -> list[Term]:
    """The terms of a query (see the module docstring)."""
    return [Term(token, bool(star)) for token, star in _TERM.findall(text.replace("\x00", " "))]


def fts_query(text: str, *, prefix: bool = True) -> str:
    """An FTS5 MATCH expression requiring every term of ``text``, with no operators.

    Each letter-and-digit run becomes its own double-quoted string, side by side
    (AND; the index keeps no positions, migration m003); a term written ``word*`` is a
    prefix query (``"word"*``) when ``prefix`` is on.

    Returns:
        The expression, or ``""`` when ``text`` has no tokens.
    """
    return " ".join(
        f'"{term.token}"*' if term.prefix and prefix else f'"{term.token}"'
        for term in query_terms(text)
    )


def _hits(term: Term, word: str) -> bool:
    if term.prefix:
        return word.lower().startswith(term.token.lower())
    return stem(word) == stem(term.token)


def matches(terms: list[Term], text: str) -> bool:
    """Whether ``text`` has a word matching each of ``terms``."""
    if not terms:
        return False
    words = _TOKEN.findall(text)
    return all(any(_hits(term, word) for word in words) for term in terms)


def snippet(terms: list[Term], text: str) -> str:
    """A short extract of ``text`` around the first match, matched words wrapped in ``**``."""
    spans = [m.span() for m in _TOKEN.finditer(text) if any(_hits(t, m.group(0)) for t in terms)]
    if not spans:
        return text[: 2 * _CONTEXT_CHARS]
    first_start, first_end = spans[0]
    start = max(0, first_start - _CONTEXT_CHARS)
    end = min(len(text), first_end + _CONTEXT_CHARS)
    pieces: list[str] = []
    cursor = start
    for a, b in spans:
        if a < start or b > end:
            continue
        pieces += [text[cursor:a], SNIPPET_MARK, text[a:b], SNIPPET_MARK]
        cursor = b
    pieces.append(text[cursor:end])
    head = SNIPPET_ELLIPSIS if start > 0 else ""
    tail = SNIPPET_ELLIPSIS if end < len(text) else ""
    return head + "".join(pieces) + tail
