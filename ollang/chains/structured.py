"""Structured output: the JSON schema a model's answer must follow, and the check that it does.

A schema is given as JSON text, as a file holding it, or in the concise form of
simonw/llm (``name, age int, bio: a short biography``): comma-separated fields, each
``NAME [TYPE][: DESCRIPTION]``, ``TYPE`` one of ``str`` (default), ``int``, ``float``,
``bool``; every field required. Ollama's ``format`` takes the schema (or ``"json"``)
and constrains the answer to it; :func:`check_answer` then validates the answer, since
not every model (or backend) enforces it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ollang.errors import InvalidInputError, OllangError

__all__ = [
    "AnswerDoesNotFitError",
    "check_answer",
    "parse_format",
    "parse_schema",
    "schema_validator",
]

_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
_FIELD = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*([A-Za-z]+)?\s*(?::\s*(.*))?$")


class AnswerDoesNotFitError(OllangError):
    """The model's answer is not JSON, or not JSON of the schema it was asked for."""

    exit_code = 1
    http_status = 502


def _concise(text: str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        match = _FIELD.match(part)
        if match is None:
            raise InvalidInputError(
                f"cannot read the schema field {part.strip()!r}",
                "write fields as NAME [str|int|float|bool][: description], comma-separated",
            )
        name, kind, description = match.groups()
        kind = (kind or "str").lower()
        if kind not in _TYPES:
            raise InvalidInputError(
                f"unknown type {kind!r} for field {name!r}", "types: str, int, float, bool"
            )
        entry: dict[str, Any] = {"type": _TYPES[kind]}
        if description:
            entry["description"] = description.strip()
        properties[name] = entry
    if not properties:
        raise InvalidInputError("the schema is empty", "e.g. --schema 'name, age int'")
    return {"type": "object", "properties": properties, "required": list(properties)}


def parse_schema(text: str) -> dict[str, Any]:
    """A JSON schema from JSON text, a file holding it, or llm's concise form.

    Raises:
        InvalidInputError: none of those (exit 2).
    """
    value = text.strip()
    path = Path(value).expanduser()
    if value and not value.startswith("{") and len(value) < 4096 and path.is_file():
        value = path.read_text(encoding="utf-8").strip()
    if value.startswith("{"):
        try:
            schema = json.loads(value)
        except ValueError as err:
            raise InvalidInputError(f"the schema is not valid JSON: {err}") from err
        if not isinstance(schema, dict):
            raise InvalidInputError("the schema must be a JSON object")
        _check_schema(schema)
        return schema
    return _concise(value)


def _check_schema(schema: dict[str, Any]) -> None:
    from jsonschema import SchemaError, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as err:
        raise InvalidInputError(f"not a valid JSON schema: {err.message}") from err


def parse_format(value: str | dict[str, Any]) -> str | dict[str, Any]:
    """Ollama's ``format`` option from what a user wrote: ``json``, or a schema."""
    if isinstance(value, dict):
        return value
    if value.strip().lower() == "json":
        return "json"
    return parse_schema(value)


def check_answer(text: str, schema: str | dict[str, Any]) -> Any:
    """The answer parsed as JSON, checked against ``schema`` (``"json"``: any JSON).

    Raises:
        AnswerDoesNotFitError: not JSON, or not of the schema (the message says where).
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise AnswerDoesNotFitError(
            f"the model's answer is not JSON ({err.msg} at line {err.lineno}, column {err.colno})",
            "try again, or a model that supports structured output",
        ) from err
    if isinstance(schema, dict):
        from jsonschema.exceptions import best_match

        try:
            failure = best_match(schema_validator(schema).iter_errors(value))
        except Exception as unresolved:  # a $ref that resolves nowhere
            raise AnswerDoesNotFitError(
                f"the schema cannot be applied: {unresolved}", "give a self-contained schema"
            ) from unresolved
        if failure is not None:
            where = "/".join(str(p) for p in failure.absolute_path) or "the top level"
            raise AnswerDoesNotFitError(
                f"the model's answer does not fit the schema at {where}: {failure.message}",
                "try again, or a model that supports structured output",
            ) from failure
    return value


def schema_validator(schema: dict[str, Any]) -> Any:
    """A jsonschema validator for ``schema`` that never fetches anything.

    A schema can come from an HTTP request (a suite posted to ``/compare``, a
    ``format``): resolving a ``$ref`` to a URL would let any caller make the server
    fetch any address. Only references inside the schema itself resolve.
    """
    from jsonschema.validators import validator_for
    from referencing import Registry
    from referencing.exceptions import NoSuchResource

    def refuse(uri: str) -> Any:
        raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # attrs field, public alias

    registry: Any = Registry(retrieve=refuse)  # type: ignore[call-arg]  # the same
    return validator_for(schema)(schema, registry=registry)
