"""One writer process of the concurrency test: ``turns`` chat turns through the real chain
(``ChatOllama`` against the fake Ollama) into one shared SQLite session.

    python -m tests.reliability._chain_worker DB OLLAMA_URL WORKER TURNS
"""

from __future__ import annotations

import sys

from ollang.chains import ChatChain, make_chat_model
from ollang.memory import SQLiteChatStore


def main() -> None:
    db, url, worker, turns = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with SQLiteChatStore(db) as store:
        chain = ChatChain(make_chat_model("llama3", base_url=url), store=store)
        config = {"configurable": {"session_id": "shared"}}
        for turn in range(turns):
            reply = chain.invoke(f"p{worker}-t{turn}", config)
            assert reply == f"echo: p{worker}-t{turn}", reply


if __name__ == "__main__":
    main()
