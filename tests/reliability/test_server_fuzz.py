"""Fuzz every endpoint of the HTTP server from its own OpenAPI schema (schemathesis).

The real app runs under uvicorn on a loopback port with the Ollama-protocol test
server behind it; schemathesis reads ``/openapi.json`` from it and sends generated
requests to every operation: ones that fit the schema and ones that break it
(bodies, query strings, path ids, headers). Each request also gets an ``Accept``
(plain text, SSE, NDJSON, nonsense) and, with a body, a ``Content-Type`` drawn
at random, since the server reads JSON whatever the header says.

Twice: with no API keys (one local user) and with two keys, sent as
``Authorization: Bearer KEY``, now and then a wrong key or the fuzzer's own value.
Pulls stay forbidden (``allow_pull`` off): the fuzzer gets 403s, not downloads.

A second, exhaustive layer takes each operation's example body and puts at every
field the schema names, one request each, values of that field's type that JSON
parsers accept but no JSON Schema can rule out: lone UTF-16 surrogates
(``"\\ud800"``), ``NaN``, ``Infinity``, 30-digit integers.

Whatever it is sent, the server must:

* never answer 5xx, except 502/503/504 carrying a JSON ``{"error": ...}`` body
  (Ollama unreachable or failing upstream);
* answer every non-2xx status with a JSON body holding an ``"error"`` string;
* never put a stack trace in a body, streamed answers included.

The operations are read from the app's schema at collection, so a new endpoint
is fuzzed without touching this file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup

from ollang.server import ServerSettings
from ollang.server.app import create_app
from ollang.server.testing import LiveServer
from tests.fake_ollama import FakeOllama, ModelInfo

KEYS = ("fuzz-key-0123456789", "fuzz-other-key-9876")
UPSTREAM_STATUSES = (502, 503, 504)
TRACE_MARKERS = ("Traceback", 'File "')
REQUEST_TIMEOUT = 15
# Per operation and generation mode, on each of the two servers; raise it for a longer hunt.
MAX_EXAMPLES = int(os.environ.get("OLLANG_FUZZ_EXAMPLES", "25"))
SEEDED_SESSION = "fuzz-seeded-session"

POSITIVE = schemathesis.GenerationMode.POSITIVE
NEGATIVE = schemathesis.GenerationMode.NEGATIVE
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head")


def _operations() -> tuple[list[Any], set[tuple[str, str]]]:
    """A ``pytest.param`` per operation and generation mode, from the app's own schema,
    and the ``(METHOD, path)`` of the operations that take a JSON body.

    The app is built against a closed port and an in-memory store: it contacts nothing.
    Operations without any input (``GET /health``) have nothing to break: positive only.
    """
    app = create_app(
        ServerSettings(store_url="memory://", ollama_url="http://127.0.0.1:9", backend="ollama")
    )
    try:
        paths = app.openapi()["paths"]
    finally:
        app.state.ctx.close()
    params = []
    json_bodies = set()
    for path, item in sorted(paths.items()):
        for method, spec in sorted(item.items()):
            if method not in HTTP_METHODS:
                continue
            if spec.get("requestBody", {}).get("content", {}).get("application/json"):
                json_bodies.add((method.upper(), path))
            has_input = any(spec.get(k) for k in ("parameters", "requestBody", "security"))
            for mode in (POSITIVE, NEGATIVE) if has_input else (POSITIVE,):
                label = f"{method.upper()} {path}"
                params.append(pytest.param(method.upper(), path, mode, id=f"{label}-{mode}"))
    return params, json_bodies


OPERATIONS, JSON_BODIES = _operations()


# -- the servers under test ---------------------------------------------------------------
@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=[ModelInfo("llama3:latest")], token_delay=0.0) as srv:
        yield srv


@pytest.fixture(scope="module", params=["open", "keyed"])
def live(request, fake, tmp_path_factory) -> Iterator[tuple[LiveServer, tuple[str, ...]]]:
    """A live server and the keys it accepts (none: no auth)."""
    keys = KEYS if request.param == "keyed" else ()
    settings = ServerSettings(
        store_url=f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'sessions.db'}",
        ollama_url=fake.url,
        backend="ollama",
        default_model="llama3",
        api_keys=list(keys),
        allow_pull=False,
        access_log=False,
    )
    with LiveServer(settings) as server:
        yield server, keys


@pytest.fixture(scope="module")
def api_schema(live):
    server, _ = live
    config = schemathesis.Config.from_dict(
        # 502/503/504 pass this check; `only_upstream_errors` holds them to a JSON body.
        {
            "checks": {
                "not_a_server_error": {
                    "expected-statuses": ["2xx", "3xx", "4xx", "502", "503", "504"]
                }
            }
        }
    )
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config, timeout=10)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _seed_session(server: LiveServer, keys: tuple[str, ...]) -> None:
    """(Re)create a session the first key owns, so session endpoints also meet a real id."""
    reply = httpx.post(
        f"{server.url}/chat",
        json={"message": "Hello", "session_id": SEEDED_SESSION},
        headers=_bearer(keys[0]) if keys else {},
        timeout=REQUEST_TIMEOUT,
    )
    assert reply.status_code == 200, reply.text


# -- our checks (schemathesis check signature: ctx, response, case) -----------------------
def _text(response: Any) -> str:
    return response.content.decode("utf-8", "replace")


def _content_type(response: Any) -> str:
    value = response.headers.get("content-type") or [""]
    return value[0] if isinstance(value, list) else value


def no_stack_trace(ctx: Any, response: Any, case: Any) -> None:
    """No body, streamed or not, shows a Python traceback."""
    text = _text(response)
    for marker in TRACE_MARKERS:
        assert marker not in text, f"{marker!r} in a {response.status_code} body: {text[:500]}"


def errors_are_json(ctx: Any, response: Any, case: Any) -> None:
    """Every non-2xx answer is ``{"error": "...", ...}`` JSON (``{"error": {"message": ...}}``
    on OpenAI's paths)."""
    if 200 <= response.status_code < 300:
        return
    if case.method.upper() == "HEAD":  # a HEAD answer has the headers of a GET, no body
        return
    status, text = response.status_code, _text(response)
    assert _content_type(response).startswith("application/json"), (
        f"{status} answered as {_content_type(response)!r}: {text[:300]}"
    )
    try:
        body = json.loads(text)
    except ValueError as err:
        raise AssertionError(f"{status} body is not JSON: {text[:300]}") from err
    assert isinstance(body, dict), f"{status} body is not an object: {text[:300]}"
    error = body.get("error")
    # -- the OpenAI dialect (/v1/...) answers in OpenAI's shape: {"error": {"message", ...}}
    if isinstance(error, dict) and case.path.startswith("/v1/"):
        error = error.get("message")
    # -- end of the OpenAI dialect
    assert isinstance(error, str) and error, f"{status} without error: {body}"


def only_upstream_errors(ctx: Any, response: Any, case: Any) -> None:
    """5xx only for upstream trouble: 502/503/504 (as JSON errors, see above)."""
    assert response.status_code < 500 or response.status_code in UPSTREAM_STATUSES, (
        f"server error {response.status_code}: {_text(response)[:300]}"
    )


CHECKS = [not_a_server_error, only_upstream_errors, errors_are_json, no_stack_trace]


def _run(fuzz: Any) -> None:
    """Run a Hypothesis test; report a failure as its text (report and reproduction).

    Without a Python traceback to render: on CPython 3.11.7, pytest rendering these
    failures' source now and then dies with "SystemError: AST constructor recursion
    depth mismatch" (an INTERNALERROR that ends the whole run).
    """
    failure = ""
    try:
        fuzz()
    except (Exception, FailureGroup) as exc:  # FailureGroup: a BaseExceptionGroup
        notes = "\n".join(getattr(exc, "__notes__", []))
        failure = f"{type(exc).__name__}: {exc}\n{notes}"
    if failure:  # outside `except`: no chained traceback to render either
        pytest.fail(failure, pytrace=False)


# -- what the fuzzer adds to schemathesis' cases ------------------------------------------
ACCEPTS = [
    None,
    "text/event-stream",
    "application/x-ndjson",
    "application/jsonl",
    "text/plain",
    "application/json",
    "*/*",
    "text/event-stream;q=0.1, application/x-ndjson",
    "garbage/;;;, q=x",
]
CONTENT_TYPES = [
    None,  # schemathesis' own (application/json)
    "application/x-www-form-urlencoded",  # what `curl -d` sends
    "text/plain; charset=utf-8",
    "application/json; charset=latin-1",
    "multipart/form-data",  # no boundary
]


def _headers(keys: tuple[str, ...], has_body: bool) -> st.SearchStrategy[dict[str, str]]:
    """Extra headers: Accept, Content-Type and, with keys, mostly a right one."""
    auth: st.SearchStrategy[dict[str, str]] = st.just({})  # no keys: the fuzzer's own, if any
    if keys:
        auth = st.sampled_from(
            [_bearer(KEYS[0])] * 3 + [_bearer(KEYS[1]), _bearer("not-a-key"), {}]
        )
    accept = st.sampled_from(ACCEPTS).map(lambda v: {"Accept": v} if v else {})
    content_type = st.sampled_from(CONTENT_TYPES if has_body else [None])
    return st.builds(
        lambda a, b, c: {**a, **b, **({"Content-Type": c} if c else {})},
        auth,
        accept,
        content_type,
    )


CASES_RUN: dict[str, int] = {}


@pytest.mark.reliability(
    "Hostile input", "server: every endpoint fuzzed from its OpenAPI schema (schemathesis)"
)
@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS)
def test_fuzzed_requests_get_no_5xx_and_no_traceback(api_schema, live, method, path, mode) -> None:
    server, keys = live
    operation = api_schema[path][method]
    cases = operation.as_strategy(mode)
    if "{session_id}" in path:
        _seed_session(server, keys)
        if mode is POSITIVE:
            seeded = operation.as_strategy(mode, path_parameters={"session_id": SEEDED_SESSION})
            cases = st.one_of(cases, seeded)
    label = f"{'keyed' if keys else 'open'} {method} {path} {mode}"

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run: a failure here is reproducible
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(
        case=cases, headers=_headers(keys, operation.body is not None and len(operation.body) > 0)
    )
    def fuzz(case: Any, headers: dict[str, str]) -> None:
        CASES_RUN[label] = CASES_RUN.get(label, 0) + 1
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=REQUEST_TIMEOUT)

    _run(fuzz)
    assert CASES_RUN.get(label, 0) >= min(MAX_EXAMPLES, 5), f"only {CASES_RUN.get(label)} cases"


def test_the_live_schema_has_exactly_the_fuzzed_operations(api_schema) -> None:
    served = sorted((r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations())
    assert served == sorted({(p.values[0], p.values[1]) for p in OPERATIONS})


# -- JSON the schema cannot express -------------------------------------------------------
# Values of the type a field's schema asks for that no JSON Schema can rule out, and that
# Python's JSON parser accepts: lone UTF-16 surrogates, NaN, +-Infinity, huge integers.
_HOSTILE_SCALARS: dict[str, list[Any]] = {
    "string": ["\ud800", "a\udfffb", "\x00", "\u202e\ufeff"],
    "number": [float("nan"), float("inf"), float("-inf"), 10**30, 5e-324],
    "integer": [float("nan"), float("inf"), 10**30, -(10**30)],
}
_HOSTILE_SCALARS["any"] = _HOSTILE_SCALARS["string"][:2] + _HOSTILE_SCALARS["number"][:3]


def _hostile(types: set[str]) -> list[Any]:
    """Hostile values for a field that allows the JSON ``types``."""
    values: list[Any] = []
    for kind in ("string", "number", "integer"):
        if kind in types:
            values += _HOSTILE_SCALARS[kind]
    if "array" in types:
        values += [[v] for v in _HOSTILE_SCALARS["any"]]
    if "object" in types:
        values += [{"x": v} for v in _HOSTILE_SCALARS["any"]] + [{"\ud800": 1}]
    return values


def _resolve(root: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _alternatives(root: dict[str, Any], schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    schema = _resolve(root, schema)
    yield schema
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            yield from _alternatives(root, sub)


def _fields(
    root: dict[str, Any], schema: dict[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], set[str]]]:
    """``(path, JSON types it allows)`` for every property the body schema names."""
    for alternative in _alternatives(root, schema):
        for name, sub in alternative.get("properties", {}).items():
            types: set[str] = set()
            for option in _alternatives(root, sub):
                kind = option.get("type")
                types.update([kind] if isinstance(kind, str) else kind or [])
                if "properties" in option or option.get("additionalProperties") is not None:
                    types.add("object")
            if not types - {"null"}:
                types = {"string", "number", "array", "object"}  # untyped: anything goes
            yield (*prefix, name), types
            if len(prefix) < 3:
                yield from _fields(root, sub, (*prefix, name))


def _json_body_schema(api_schema: Any, method: str, path: str) -> dict[str, Any] | None:
    spec = api_schema.raw_schema["paths"][path][method.lower()]
    content = spec.get("requestBody", {}).get("content", {}).get("application/json")
    return content["schema"] if content else None


def _hostile_fields(
    root: dict[str, Any], schema: dict[str, Any]
) -> list[tuple[tuple[str, ...], Any]]:
    """Every ``(field path, hostile value)`` pair for a body schema."""
    pairs = {}
    for where, types in _fields(root, schema):
        for value in _hostile(types):
            pairs[(where, repr(value))] = (where, value)
    return [pairs[key] for key in sorted(pairs)]


def _example_body(root: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A valid body: the schema's example of each required field."""
    schema = _resolve(root, schema)
    return {
        name: schema["properties"][name].get("examples", ["x"])[0]
        for name in schema.get("required", [])
    }


def _put(body: dict[str, Any], where: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = json.loads(json.dumps(body))  # a copy
    node = body
    for name in where[:-1]:
        if not isinstance(node.get(name), dict):
            node[name] = {}
        node = node[name]
    node[where[-1]] = value
    return body


JSON_BODY_OPERATIONS = [
    pytest.param(method, path, id=f"{method} {path}")
    for method, path, mode in (p.values for p in OPERATIONS)
    if mode is POSITIVE and (method, path) in JSON_BODIES
]


# Found by this test (fixed in `server.body.read_object`, now a 422): Python's JSON parser
# accepts "\ud800", NaN and Infinity, which reached fields no pydantic constraint checks
# (`system`, `options.stop`, `options.keep_alive`, `options.format`); the Ollama client
# then could not encode its request and the catch-all answered 500.
@pytest.mark.reliability(
    "Hostile input", "server: NaN, Infinity, 1e400, lone surrogates in every JSON field"
)
@pytest.mark.parametrize(("method", "path"), JSON_BODY_OPERATIONS)
def test_json_the_schema_cannot_express_gets_no_5xx(api_schema, live, method, path) -> None:
    """Each hostile value at each field of the schema's example body, one request each."""
    _, keys = live
    operation = api_schema[path][method]
    schema = _json_body_schema(api_schema, method, path)
    assert schema is not None, "the live schema lost the JSON body the app's schema has"
    root = api_schema.raw_schema
    base = _example_body(root, schema)
    headers = {**(_bearer(keys[0]) if keys else {}), "Content-Type": "application/json"}
    failures = []
    sent = 0
    for where, value in _hostile_fields(root, schema):
        # ASCII JSON: a lone surrogate goes out as the escape `\ud800`, NaN as `NaN`.
        raw = json.dumps(_put(base, where, value), allow_nan=True).encode()
        # Path parameters (PATCH /sessions/{session_id}): a well-formed id, so the body is what is tested.
        parameters = {name: "fuzzed-session" for name in re.findall(r"{(\w+)}", path)}
        case = operation.Case(
            body=base, media_type="application/json", path_parameters=parameters or None
        )
        response = case.call(data=raw, headers=headers, timeout=REQUEST_TIMEOUT)
        sent += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Exception, FailureGroup):
            failures.append(
                f"{method} {path} {raw.decode()} -> {response.status_code} {_text(response)}"
            )
    CASES_RUN[f"{'keyed' if keys else 'open'} {method} {path} hostile"] = sent
    if failures:
        listed = "\n".join(failures)
        pytest.fail(f"{len(failures)} of {sent} hostile bodies failed:\n{listed}", pytrace=False)
