"""``POST /compare``: an evaluation (``ollang compare --suite``) run by the server.

The body names the models and carries the suite inline (the same schema as a suite
file, checked by :func:`~ollang.evaluation.suite.parse_suite`; images are not
supported: a server does not open files for a client). Everything is checked before
the stream starts, so errors are the server's own JSON answers: 401 without a key,
404 for a model that is not installed *or not allowed* (the same answer, so the
allow-list does not tell what else is installed), 422 for a bad body or suite, 503
when no host is up.

The answer is NDJSON: a ``{"type": "progress", ...}`` line after each run, then one
``{"type": "result", ...}`` line, :meth:`~ollang.evaluation.runner.Evaluation.to_json`.
:func:`~ollang.evaluation.runner.run_evaluation` is synchronous, so it runs in a
thread of its own; its progress reaches the stream through an :class:`asyncio.Queue`.
A client that leaves stops it at the next token or run. A finished evaluation is kept
in the server's data directory, as the CLI keeps its own, for ``ollang recommend``.

The runs go to the hosts directly, as the CLI's do, not through the router's slots
(``max`` per host): an evaluation measures one model at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from langchain_core.callbacks import BaseCallbackHandler
from pydantic import BaseModel, ConfigDict, Field

from ollang.errors import InvalidInputError, ModelNotFoundError
from ollang.server.auth import request_owner
from ollang.server.body import body_schema, parse_request
from ollang.server.context import ServerContext, context_of
from ollang.server.schemas import MODEL_NAME_PATTERN, ErrorResponse
from ollang.server.streaming import NDJSON, LiveStream, StreamItem

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from ollang.evaluation import Evaluation, Progress, Suite

__all__ = ["CompareRequest", "router"]

log = logging.getLogger("ollang.server")

router = APIRouter(tags=["evaluation"], dependencies=[Depends(request_owner)])

#: Most models, and runs per case and model, one request may ask for.
MAX_MODELS = 16
MAX_REPEAT = 100


_ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN, max_length=300)]


class CompareRequest(BaseModel):
    """``POST /compare``: the models, the suite, how many runs per case."""

    model_config = ConfigDict(extra="forbid")

    models: list[_ModelName] = Field(
        ...,
        min_length=1,
        max_length=MAX_MODELS,
        description="The models to evaluate, in order.",
        examples=[["llama3", "qwen3:8b"]],
    )
    suite: dict[str, Any] = Field(
        ...,
        description="The suite, as a suite file holds it: `{description?, defaults?, "
        "cases: [{name?, prompt, system?, assert: [...]}]}` (no images).",
        examples=[{"cases": [{"prompt": "Capital of France?", "assert": [{"contains": "Paris"}]}]}],
    )
    repeat: int = Field(1, ge=1, le=MAX_REPEAT, description="Runs per case and model.")
    judge: str | None = Field(
        None,
        pattern=MODEL_NAME_PATTERN,
        max_length=300,
        description="The model that grades `rubric` assertions.",
    )


class _ClientGone(KeyboardInterrupt):
    """The client left: the evaluation stops as Ctrl-C stops it (what finished is kept)."""


class _StopWhenGone(BaseCallbackHandler):
    """Stops a model's answer at its next token once the client has left."""

    raise_error = True

    def __init__(self, gone: threading.Event) -> None:
        self.gone = gone

    def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        """Raise :class:`_ClientGone` if the client has left."""
        if self.gone.is_set():
            raise _ClientGone


def _check_model(ctx: ServerContext, name: str) -> str:
    """The installed name of ``name``; a model the allow-list excludes is "not found" too.

    Raises:
        ModelNotFoundError: not installed, or not allowed (404, naming the allowed ones).
        NoHostError: no host is up, or one that is down may have it (503).
    """
    if not ctx.gate.allowed(name):
        raise ModelNotFoundError(name, [d.name for d, _ in ctx.gate.usable()])
    ctx.router.check_model(name, allowed=ctx.gate.allowed)
    return ctx.router.installed_name(name)


def _open_model(ctx: ServerContext, name: str, gone: threading.Event) -> BaseChatModel:
    """A chat model for ``name`` over the hosts that have it, best first (failing over
    before the first token), that stops when the client leaves."""
    from ollang.routing.routed import RoutedChatModel

    core = ctx.settings.core
    hosts = ctx.router.order(name)
    models: list[BaseChatModel] = []
    for host in hosts:
        if host.is_embedded:
            from ollang.embedded.model import make_embedded_chat_model

            models.append(make_embedded_chat_model(name, settings=core))
        else:
            from ollang.transport.chat_model import make_chat_model

            models.append(make_chat_model(name, base_url=host.name, settings=core))
    model = models[0]
    if len(models) > 1:
        model = RoutedChatModel(model=name, hosts=[h.name for h in hosts], models=models)
    model.callbacks = [_StopWhenGone(gone)]
    return model


def _progress_line(progress: Progress) -> dict[str, Any]:
    return {
        "type": "progress",
        "model": progress.model,
        "case": progress.result.case,
        "repeat": progress.repeat,
        "done": progress.done,
        "total": progress.total,
        "passed": progress.result.passed,
        "error": progress.result.error,
    }


async def _evaluate(
    ctx: ServerContext,
    suite: Suite,
    opened: dict[str, BaseChatModel],
    repeat: int,
    judge: BaseChatModel | None,
    gone: threading.Event,
) -> AsyncIterator[list[StreamItem]]:
    """Run the evaluation in a thread of its own; a line per run, then the result.

    Cancelled (the client left), it sets ``gone``: the worker stops at the next token
    or run and its result is dropped.
    """
    from ollang.evaluation import run_evaluation, save_run

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Progress | None] = asyncio.Queue()

    def put(item: Progress | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server stopped
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def on_progress(progress: Progress) -> None:
        put(progress)
        if gone.is_set():
            raise _ClientGone

    def work() -> Evaluation:
        try:
            evaluation = run_evaluation(
                suite,
                list(opened),
                opened.__getitem__,
                repeat=repeat,
                judge=judge,
                on_progress=on_progress,
            )
            if not gone.is_set():
                try:
                    save_run(evaluation, ctx.settings.core.home)
                except OSError as err:  # the answer is still good: say so in the log
                    log.warning("cannot keep the evaluation in %s: %s", ctx.settings.core.home, err)
            return evaluation
        finally:
            put(None)

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ollang-compare")
    try:
        done: asyncio.Future[Evaluation] = loop.run_in_executor(executor, work)
        while (progress := await queue.get()) is not None:
            yield [StreamItem("progress", data=_progress_line(progress))]
        evaluation = await done
        # A "progress" item is written as its data alone: the result line has no "done".
        yield [StreamItem("progress", data={"type": "result", **evaluation.to_json()})]
    finally:
        gone.set()
        executor.shutdown(wait=False)


@router.post(
    "/compare",
    responses={
        200: {
            "description": 'NDJSON: a `{"type": "progress", model, case, repeat, done, total, '
            'passed, error}` line per run, then `{"type": "result", models, cases, ...}`.',
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        },
        **{code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 503)},
    },
    response_class=Response,
    openapi_extra=body_schema(CompareRequest),
    summary="Evaluate models on a suite (as `ollang compare --suite`)",
)
async def compare(request: Request) -> Response:
    """Run every case of the suite on every model (`repeat` times), check and time each
    answer, and stream progress, then the evaluation (pass rate, time to first token,
    tokens/s per model, and every run).

    404 for a model (or judge) that is not installed or that `--allow-model` excludes;
    422 for a bad suite (the message names the field), a suite with images, or rubric
    assertions without a `judge`. Failed checks are results, not errors.
    """
    from ollang.evaluation import parse_suite

    ctx = context_of(request)
    body = await parse_request(request, CompareRequest)
    suite = parse_suite(body.suite)
    if suite.needs_judge and body.judge is None:
        raise InvalidInputError(
            "<request>: the suite has rubric assertions but no judge model",
            'name one: "judge": "MODEL", or drop the rubric assertions',
        )
    names = list(dict.fromkeys(body.models))
    installed = {name: _check_model(ctx, name) for name in names}
    judge_name = _check_model(ctx, body.judge) if body.judge is not None else None
    gone = threading.Event()
    opened = {name: _open_model(ctx, installed[name], gone) for name in names}
    judge = _open_model(ctx, judge_name, gone) if judge_name is not None else None
    items = _evaluate(ctx, suite, opened, body.repeat, judge, gone)
    return LiveStream(items, NDJSON())
