"""The server's routes, one module per API: thin adapters that parse, call one function
of the turn engine or the session access, and render.

``chat`` (``/chat``, ``/generate`` and their streams), ``models`` (``/models``,
``/health``), ``sessions`` (``/sessions``), ``openai`` (``/v1``), ``ollama`` (``/api``).
"""
