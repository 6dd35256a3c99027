"""Helpers behind ``cli.py``: one module per command group, plus error handling.

``cli.py`` declares the commands (Typer); the work is here, importing LangChain
only inside the commands that talk to a model, so ``ollang --help`` starts fast.
"""

__all__: list[str] = []
