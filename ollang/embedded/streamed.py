"""What ollang's own LangChain chat models share: an answer is its stream, collected,
and structured output by Ollama's ``format`` (a JSON schema, or any JSON).

:class:`~ollang.embedded.model.LlamaCppChatModel` and the test fake
(:class:`ollang.chains.fake.FakeChatModel`) are both written on this base; it lives
here, below the chains, so that the embedded backend may use it too.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, ClassVar, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_core.utils.pydantic import is_basemodel_subclass

from ollang.errors import InvalidInputError

__all__ = ["StreamedChatModel", "StructuredMethod"]

#: How :meth:`StreamedChatModel.with_structured_output` makes the answer fit a schema.
StructuredMethod = Literal["function_calling", "json_schema", "json_mode"]
_METHODS: tuple[StructuredMethod, ...] = ("function_calling", "json_schema", "json_mode")


class StreamedChatModel(BaseChatModel):
    """A ``BaseChatModel`` that implements ``_stream``; generating collects the stream.

    Structured output: ``method="function_calling"`` is LangChain's (a forced call
    of one tool, through ``bind_tools``); ``"json_schema"`` sets ``format`` to the
    schema and ``"json_mode"`` sets ``format="json"``, the answer parsed either way.
    """

    #: The ``method`` of :meth:`with_structured_output` when the caller gives none.
    default_structured_method: ClassVar[StructuredMethod] = "function_calling"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: StructuredMethod | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """A runnable whose answers are ``schema`` instances (pydantic) or dicts.

        Args:
            schema: A pydantic class, a TypedDict or a JSON schema.
            include_raw: Answer ``{"raw", "parsed", "parsing_error"}`` instead.
            method: ``"function_calling"``, ``"json_schema"`` or ``"json_mode"``
                (see the class docstring); ``None``: the model's
                :attr:`default_structured_method`.
            strict: Accepted for compatibility.
            **kwargs: Passed on for ``"function_calling"``.

        Raises:
            InvalidInputError: for an unknown ``method``.
        """
        method = method or self.default_structured_method
        if method == "function_calling":
            return super().with_structured_output(schema, include_raw=include_raw, **kwargs)
        if method not in _METHODS:
            first = self.default_structured_method
            names = [first, *(m for m in _METHODS if m != first)]
            raise InvalidInputError(
                f"unknown structured output method {method!r}",
                f"use {', '.join(names[:-1])} or {names[-1]}",
            )
        json_schema = convert_to_json_schema(schema)
        bound = self.bind(
            format=json_schema if method == "json_schema" else "json",
            ls_structured_output_format={"kwargs": {"method": method}, "schema": json_schema},
        )
        parser: Runnable[Any, Any]
        if isinstance(schema, type) and is_basemodel_subclass(schema):
            parser = PydanticOutputParser(pydantic_object=schema)
        else:
            parser = JsonOutputParser()
        if not include_raw:
            return bound | parser
        parse = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        ).with_fallbacks(
            [RunnablePassthrough.assign(parsed=lambda _: None)], exception_key="parsing_error"
        )
        return RunnableMap(raw=bound) | parse
