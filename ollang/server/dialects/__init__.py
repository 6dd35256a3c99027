"""Translation between the OpenAI and Ollama APIs and ollang's turns.

``openai`` and ``ollama`` translate requests, answers, stream chunks and errors for one API
each; ``common`` holds what both share (images, limits, streams, error answers).
"""
