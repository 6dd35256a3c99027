"""The one-shot chain: a prompt template | model | parser, no memory (``/api/generate``)."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseLanguageModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda

from ollang.errors import InvalidInputError

__all__ = ["build_generate_chain"]


def build_generate_chain(
    model: BaseLanguageModel[Any], *, template: str = "{prompt}"
) -> Runnable[Any, str]:
    """A one-shot runnable: fill ``template``, call ``model``, return the text.

    Args:
        model: An LLM (:func:`~chains.make_llm`) or a chat model; both accept
            the filled prompt.
        template: A prompt template; its variables come from a dict input. A
            plain string input fills the single variable of the template.

    Raises (on invoke):
        InvalidInputError: the input is empty or misses a template variable.
    """
    prompt = PromptTemplate.from_template(template)
    variables = prompt.input_variables

    def to_variables(value: Any) -> dict[str, Any]:
        if isinstance(value, str):
            if len(variables) != 1:
                raise InvalidInputError(
                    "this template needs a dict input",
                    "variables: " + ", ".join(variables),
                )
            value = {variables[0]: value}
        if not isinstance(value, dict):
            raise InvalidInputError(
                f"generate input must be a string or dict, got {type(value).__name__}"
            )
        missing = [v for v in variables if v not in value]
        if missing:
            raise InvalidInputError("missing template variable(s): " + ", ".join(missing))
        if not any(isinstance(value[v], str) and value[v].strip() for v in variables):
            raise InvalidInputError("the prompt is empty", "type something to send")
        return value

    return (
        RunnableLambda(to_variables, name="check_input") | prompt | model | StrOutputParser()
    ).with_config(run_name="generate")
