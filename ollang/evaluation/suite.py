"""Evaluation suites: the YAML or JSON file behind ``ollang compare --suite``, read and checked.

A suite is a list of prompts, each with the assertions its answer must meet::

    description: Capitals            # optional
    defaults:                        # optional, applied to every case
      system: Answer in one sentence.
      assert: [{not-contains: "I don't know"}]
    cases:
      - name: France                 # optional (default "case N", counted from 1)
        prompt: What is the capital of France?
        system: ...                  # optional; overrides defaults.system
        images: [cat.png]            # optional, relative to the suite file
        assert:
          - contains: Paris          # or a list: all must appear; `ignore_case: true`
          - not-contains: London     # or a list: none may appear
          - regex: "\\d{4}"          # re.search
          - equals: "4"              # whitespace-trimmed
          - json-schema: {type: object, required: [name]}
          - rubric: The answer names the capital.   # graded by a judge model

Everything is checked when the file is read (types, unknown fields, regexes, JSON
schemas, image files), so a typo fails at once rather than after an hour of model runs.
Each problem raises :class:`~ollang.errors.InvalidInputError` (exit 2) whose message
names the file, the line and the field: ``suite.yaml:7: cases[1].assert[0]: unknown
assertion 'contain' (...)``. Field paths count list items from 0, as JSON paths do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import yaml  # type: ignore[import-untyped]

from ollang.errors import InvalidInputError

__all__ = [
    "ASSERTION_KINDS",
    "Assertion",
    "AssertionKind",
    "Case",
    "Suite",
    "load_suite",
    "parse_suite",
]

AssertionKind: TypeAlias = Literal[
    "contains", "not-contains", "regex", "equals", "json-schema", "rubric"
]
#: The assertion kinds a suite may use, in the order the docs list them.
ASSERTION_KINDS: tuple[AssertionKind, ...] = (
    "contains",
    "not-contains",
    "regex",
    "equals",
    "json-schema",
    "rubric",
)
#: The kinds that compare text and so take ``ignore_case``.
_TEXT_KINDS = ("contains", "not-contains", "regex", "equals")

_HINT = (
    "a suite is YAML or JSON: `cases:` a list of {prompt, assert: [...]}, "
    "see `ollang compare --help`"
)

_Path: TypeAlias = tuple[str | int, ...]


@dataclass(frozen=True)
class Assertion:
    """One check of an answer.

    Attributes:
        kind: One of :data:`ASSERTION_KINDS`.
        value: What the kind needs: the texts for ``contains``/``not-contains``
            (a tuple, all of them), the text for ``equals``, the pattern for ``regex``,
            the schema (a dict) for ``json-schema``, the criteria for ``rubric``.
        ignore_case: Compare text without regard to case (text kinds only).
        line: The line of the suite file it was written on (1-based), if known.
    """

    kind: AssertionKind
    value: str | tuple[str, ...] | dict[str, Any]
    ignore_case: bool = False
    line: int | None = None


@dataclass(frozen=True)
class Case:
    """One prompt of a suite and what its answer must meet.

    Attributes:
        name: The case's name (given, else ``case N`` counting from 1).
        prompt: The user's message.
        system: The system prompt (the case's, else the suite's default), or ``None``.
        images: Image files attached to the prompt (absolute, checked to exist).
        assertions: The suite's default assertions, then the case's own.
        line: The line of the suite file the case starts on (1-based), if known.
    """

    name: str
    prompt: str
    system: str | None = None
    images: tuple[Path, ...] = ()
    assertions: tuple[Assertion, ...] = ()
    line: int | None = None


@dataclass(frozen=True)
class Suite:
    """A parsed suite file.

    Attributes:
        path: The file it was read from (``None`` for suites built in code).
        cases: Its cases, in file order.
        description: Its description, or ``""``.
    """

    path: Path | None
    cases: tuple[Case, ...]
    description: str = ""

    @property
    def needs_judge(self) -> bool:
        """Whether any case has a ``rubric`` assertion (and so needs a judge model)."""
        return any(a.kind == "rubric" for case in self.cases for a in case.assertions)


# -- reading the file: data plus the line each field is on --------------------------------


@dataclass
class _Document:
    """A suite file's data and, for each field path, the (1-based) line it starts on."""

    data: Any
    lines: dict[_Path, int] = field(default_factory=dict)

    def line(self, path: _Path) -> int | None:
        """The line of ``path``, else of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def _yaml_document(text: str) -> _Document:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    lines: dict[_Path, int] = {}

    def walk(node: yaml.Node, path: _Path) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    lines.setdefault((*path, str(key.value)), key.start_mark.line + 1)
                    walk(value, (*path, str(key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*path, index), item.start_mark.line + 1)
                walk(item, (*path, index))

    if node is not None:
        lines[()] = node.start_mark.line + 1
        walk(node, ())
    return _Document(data, lines)


_SPACE = re.compile(r"[ \t\n\r]*")


def _json_lines(text: str) -> dict[_Path, int]:
    """The line of every key and list item of valid JSON ``text`` (which json has parsed)."""
    decoder = json.JSONDecoder()
    lines: dict[_Path, int] = {}

    def line_at(index: int) -> int:
        return text.count("\n", 0, index) + 1

    def skip(index: int) -> int:
        match = _SPACE.match(text, index)
        return match.end() if match else index

    def value(index: int, path: _Path) -> int:
        index = skip(index)
        if text.startswith("{", index):
            index = skip(index + 1)
            while not text.startswith("}", index):
                key, end = json.decoder.scanstring(text, index + 1)  # type: ignore[attr-defined]
                lines.setdefault((*path, key), line_at(index))
                index = skip(skip(end) + 1)  # past the colon
                index = skip(value(index, (*path, key)))
                if text.startswith(",", index):
                    index = skip(index + 1)
            return index + 1
        if text.startswith("[", index):
            index = skip(index + 1)
            item = 0
            while not text.startswith("]", index):
                lines.setdefault((*path, item), line_at(index))
                index = skip(value(index, (*path, item)))
                item += 1
                if text.startswith(",", index):
                    index = skip(index + 1)
            return index + 1
        _, end = decoder.raw_decode(text, index)
        return int(end)

    start = skip(0)
    lines[()] = line_at(start)
    value(start, ())
    return lines


def _read(path: Path) -> _Document:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        detail = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise InvalidInputError(f"cannot read the suite {path}: {detail}", _HINT) from err
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InvalidInputError(
                f"{path}:{err.lineno}: not valid JSON: {err.msg}", _HINT
            ) from err
        return _Document(data, _json_lines(text))
    if suffix in (".yaml", ".yml"):
        try:
            return _yaml_document(text)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = err.problem or err.context or "cannot parse"
            raise InvalidInputError(f"{where}: not valid YAML: {problem}", _HINT) from err
        except yaml.YAMLError as err:
            raise InvalidInputError(f"{path}: not valid YAML: {err}", _HINT) from err
    raise InvalidInputError(
        f"{path}: a suite file is .yaml, .yml or .json, not {suffix or 'no suffix'!r}", _HINT
    )


# -- checking fields ----------------------------------------------------------------------


def _field_name(path: _Path) -> str:
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else part)
    return name or "(top level)"


class _Checker:
    """Turns a :class:`_Document` into a :class:`Suite`, raising with file:line: field.

    ``images``: whether cases may name image files (only a suite file may: they are
    found next to it).
    """

    def __init__(self, path: Path, document: _Document, *, images: bool = True) -> None:
        self.path = path
        self.document = document
        self.images = images

    def error(self, path: _Path, problem: str) -> InvalidInputError:
        line = self.document.line(path)
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        return InvalidInputError(f"{where}: {_field_name(path)}: {problem}", _HINT)

    def mapping(self, value: Any, path: _Path, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if key not in allowed:
                raise self.error(
                    (*path, str(key)),
                    f"unknown field {key!r} (expected one of {', '.join(allowed)})",
                )
        return value

    def text(self, value: Any, path: _Path, *, required: bool = False) -> str | None:
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise self.error(path, f"expected a string, got {_kind(value)}")
        if required and not value.strip():
            raise self.error(path, "must not be empty")
        return value

    def items(self, value: Any, path: _Path) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(path, f"expected a list, got {_kind(value)}")
        return value

    def suite(self) -> Suite:
        top = self.mapping(self.document.data, (), ("description", "defaults", "cases"))
        description = self.text(top.get("description"), ("description",)) or ""
        defaults = self.mapping(top.get("defaults") or {}, ("defaults",), ("system", "assert"))
        system = self.text(defaults.get("system"), ("defaults", "system"))
        common = self.assertions(defaults.get("assert"), ("defaults", "assert"))
        if "cases" not in top:
            raise self.error((), "missing field 'cases' (a list of {prompt, assert})")
        cases = self.items(top["cases"], ("cases",))
        if not cases:
            raise self.error(("cases",), "the suite has no cases")
        return Suite(
            path=self.path,
            description=description,
            cases=tuple(
                self.case(item, ("cases", index), index, system, common)
                for index, item in enumerate(cases)
            ),
        )

    def case(
        self,
        value: Any,
        path: _Path,
        index: int,
        system: str | None,
        common: tuple[Assertion, ...],
    ) -> Case:
        item = self.mapping(value, path, ("name", "prompt", "system", "images", "assert"))
        if "prompt" not in item:
            raise self.error(path, "missing field 'prompt'")
        prompt = self.text(item["prompt"], (*path, "prompt"), required=True)
        assert prompt is not None
        name = self.text(item.get("name"), (*path, "name")) or f"case {index + 1}"
        own_system = self.text(item.get("system"), (*path, "system"))
        images = tuple(
            self.image(image, (*path, "images", i))
            for i, image in enumerate(self.items(item.get("images"), (*path, "images")))
        )
        return Case(
            name=name,
            prompt=prompt,
            system=own_system if own_system is not None else system,
            images=images,
            assertions=common + self.assertions(item.get("assert"), (*path, "assert")),
            line=self.document.line(path),
        )

    def image(self, value: Any, path: _Path) -> Path:
        from ollang.turns.images import image_kind

        if not self.images:
            raise self.error(
                path,
                "images are not supported here: only a suite file names images "
                "(run it with `ollang compare --suite FILE`)",
            )
        name = self.text(value, path, required=True)
        assert name is not None
        file = (self.path.parent / Path(name).expanduser()).resolve()
        if not file.is_file():
            raise self.error(path, f"no image file {name} (looked for {file})")
        try:
            with file.open("rb") as stream:
                head = stream.read(16)
        except OSError as err:
            raise self.error(path, f"cannot read {name}: {err.strerror or err}") from err
        if image_kind(head) is None:
            raise self.error(path, f"{name} is not an image (PNG, JPEG, GIF or WebP)")
        return file

    def assertions(self, value: Any, path: _Path) -> tuple[Assertion, ...]:
        return tuple(
            self.assertion(item, (*path, index))
            for index, item in enumerate(self.items(value, path))
        )

    def assertion(self, value: Any, path: _Path) -> Assertion:
        if not isinstance(value, Mapping):
            raise self.error(
                path, f"expected a mapping such as {{contains: ...}}, got {_kind(value)}"
            )
        kinds = [key for key in value if key != "ignore_case"]
        expected = f"expected one of {', '.join(ASSERTION_KINDS)}"
        if len(kinds) != 1:
            found = ", ".join(map(str, kinds)) or "none"
            raise self.error(path, f"an assertion has exactly one kind, found {found} ({expected})")
        kind = kinds[0]
        if kind not in ASSERTION_KINDS:
            raise self.error(path, f"unknown assertion {kind!r} ({expected})")
        ignore_case = value.get("ignore_case", False)
        if not isinstance(ignore_case, bool):
            raise self.error(
                (*path, "ignore_case"), f"expected true or false, got {_kind(ignore_case)}"
            )
        if ignore_case and kind not in _TEXT_KINDS:
            raise self.error((*path, "ignore_case"), f"{kind} does not take ignore_case")
        here = (*path, kind)
        line = self.document.line(path)
        raw = value[kind]
        if kind in ("contains", "not-contains"):
            texts = raw if isinstance(raw, list) else [raw]
            if not texts or not all(isinstance(t, str) and t for t in texts):
                raise self.error(here, "expected a non-empty string or a list of them")
            return Assertion(kind, tuple(texts), ignore_case, line)
        if kind == "json-schema":
            return Assertion(kind, self.schema(raw, here), False, line)
        if isinstance(raw, (int, float)) and not isinstance(raw, bool) and kind == "equals":
            raw = str(raw)  # `equals: 4` means the text "4"
        text = self.text(raw, here, required=True)
        assert text is not None
        if kind == "regex":
            try:
                re.compile(text, re.IGNORECASE if ignore_case else 0)
            except re.error as err:
                raise self.error(here, f"invalid regex {text!r}: {err}") from err
        return Assertion(kind, text, ignore_case, line)

    def schema(self, value: Any, path: _Path) -> dict[str, Any]:
        from jsonschema import SchemaError
        from jsonschema.validators import validator_for

        if not isinstance(value, Mapping):
            raise self.error(path, f"expected a JSON schema (a mapping), got {_kind(value)}")
        schema = dict(value)
        try:
            validator_for(schema).check_schema(schema)
        except SchemaError as err:
            raise self.error(path, f"invalid JSON schema: {err.message}") from err
        return schema


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def load_suite(path: Path) -> Suite:
    """Read and check the suite file at ``path`` (``.yaml``, ``.yml`` or ``.json``).

    Raises:
        InvalidInputError: the file cannot be read or parsed, or a field is missing,
            of the wrong type or invalid; the message names the file, line and field.
    """
    path = Path(path)
    return _Checker(path, _read(path)).suite()


def parse_suite(data: Any, source: str = "<request>") -> Suite:
    """Check a suite given as data (e.g. the JSON of a server request), not as a file.

    The same schema as a file, but without images: there is no file to find them next
    to (and a server must not open its own files for a client). Errors name ``source``
    and the field, without a line: ``<request>: cases[1].assert[0]: ...``. The suite's
    ``path`` is ``None``.

    Raises:
        InvalidInputError: a field is missing, of the wrong type or invalid, or a case
            names images.
    """
    suite = _Checker(Path(source), _Document(data), images=False).suite()
    return Suite(path=None, cases=suite.cases, description=suite.description)
