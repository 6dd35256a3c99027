"""Stateless replicas: two ``ollang serve`` processes on one PostgreSQL behind a real nginx.

nginx (Debian's) balances round-robin on loopback, as in README's example. Nothing is
per process: a conversation alternates between the replicas turn by turn, keys own
their sessions on both, and a replica killed with SIGKILL mid-answer leaves the
question and the partial answer (less at most the last second) to the other one, where
the client's next turn goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import pg
from tests.fake_ollama import FakeOllama
from tests.nginx import Nginx, nginx_binary
from tests.reliability.conftest import OllamaProcess


@pytest.fixture
def store_url() -> Iterator[str]:
    try:
        pg.server()
    except RuntimeError as err:
        pytest.skip(str(err))
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx): no load balancer to test")
    with pg.fresh_schema_url() as url:
        yield url


class Replicas:
    """Two ``ollang serve`` on ``store_url`` and nginx in front of them."""

    def __init__(self, store_url: str, ollama: str, tmp_path: Path, *args: str) -> None:
        self.procs = []
        self.ports = []
        self.homes = []
        for name in ("r1", "r2"):
            proc, port = pg.start_serve(store_url, ollama, tmp_path / name, *args)
            self.procs.append(proc)
            self.ports.append(port)
            self.homes.append(tmp_path / name)
        self.lb = Nginx([f"127.0.0.1:{p}" for p in self.ports]).start()

    def upstreams(self) -> set[str]:
        return {f"127.0.0.1:{p}" for p in self.ports}

    def logs(self) -> str:
        return "".join(pg.serve_log(h, p) for h, p in zip(self.homes, self.ports, strict=True))

    def close(self) -> None:
        self.lb.stop()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except Exception:
                proc.kill()


@pytest.mark.reliability("Load", "two replicas behind nginx: one conversation across both")
def test_a_conversation_alternates_between_replicas_and_keeps_its_history(
    store_url, tmp_path, ledger
):
    with FakeOllama() as fake:
        replicas = Replicas(store_url, fake.host_port, tmp_path)
        try:
            client = httpx.Client(base_url=replicas.lb.url, timeout=30)
            sent = []
            for n in range(6):
                text = f"turn number {n}"
                sent.append(text)
                body = {"message": text, "session_id": "conv"}
                if n % 2:
                    with client.stream("POST", "/chat/stream", json=body) as resp:
                        assert resp.status_code == 200
                        assert "".join(resp.iter_text()) == f"echo: {text}"
                else:
                    resp = client.post("/chat", json=body)
                    assert resp.status_code == 200, resp.text
                    assert resp.json()["response"] == f"echo: {text}"
            stored = client.get("/sessions/conv").json()["messages"]
            log = replicas.lb.access_log()
        finally:
            replicas.close()
        served = [up for _m, path, _s, up in log if path.startswith("/chat")]
        # Each turn was answered by the replica that read the history the others wrote.
        assert set(served) == replicas.upstreams(), served
        last_prompt = fake.chat_requests()[-1]["messages"]
        assert [m["content"] for m in last_prompt if m["role"] == "user"] == sent
    assert [m["content"] for m in stored] == [t for text in sent for t in (text, f"echo: {text}")]
    assert all(m["status"] == "complete" for m in stored)
    assert ledger.account(sent, [m["content"] for m in stored if m["role"] == "human"]) == 0
    ledger.note = f"6 turns over 2 replicas ({served.count(served[0])} / {len(served)} on one)"


def test_keys_own_their_sessions_on_every_replica_and_racing_claims_have_one_winner(
    store_url, tmp_path
):
    with FakeOllama() as fake:
        replicas = Replicas(
            store_url, fake.host_port, tmp_path, "--api-key", "key-a", "--api-key", "key-b"
        )
        try:
            a = httpx.Client(
                base_url=replicas.lb.url, headers={"Authorization": "Bearer key-a"}, timeout=30
            )
            b = httpx.Client(
                base_url=replicas.lb.url, headers={"Authorization": "Bearer key-b"}, timeout=30
            )
            assert a.post("/chat", json={"message": "mine", "session_id": "a1"}).status_code == 200
            for _ in range(2):  # both replicas answer the same
                assert a.get("/sessions/a1").status_code == 200
                assert b.get("/sessions/a1").status_code == 404
            # Two keys race for one new id through both replicas at once, many times.
            wins = []
            for n in range(10):
                results: dict[str, int] = {}

                def claim(client: httpx.Client, name: str, sid: str, out: dict[str, int]) -> None:
                    out[name] = client.post(
                        "/chat", json={"message": name, "session_id": sid}
                    ).status_code

                threads = [
                    threading.Thread(target=claim, args=(c, name, f"race{n}", results))
                    for c, name in ((a, "a"), (b, "b"))
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                assert sorted(results.values()) == [200, 404], results
                wins.append(next(name for name, code in results.items() if code == 200))
        finally:
            replicas.close()
    assert len(wins) == 10


@pytest.mark.reliability(
    "Faults", "`kill -9` of a replica mid-answer: the other has the partial, next turn works"
)
def test_kill_9_of_a_replica_mid_answer_leaves_the_partial_to_the_other(
    store_url, tmp_path, ledger
):
    ollama = OllamaProcess(rate=25, tokens=100).start()  # a 4 s answer
    replicas = Replicas(store_url, ollama.host_port, tmp_path)
    try:
        client = httpx.Client(base_url=replicas.lb.url, timeout=60)
        question = "tell me a long story"
        received = ""
        with client.stream(
            "POST", "/chat/stream", json={"message": question, "session_id": "k"}
        ) as resp:
            assert resp.status_code == 200
            upstream = resp.headers["x-upstream"]
            victim = replicas.procs[replicas.ports.index(int(upstream.rsplit(":", 1)[1]))]
            first = None
            try:
                for chunk in resp.iter_text():
                    first = first or time.monotonic()
                    received += chunk
                    if time.monotonic() - first >= 2.2:  # two flushes behind it at least
                        victim.kill()  # SIGKILL: no shutdown, nothing flushed on the way out
                        killed_at = time.monotonic()
                        break
            except httpx.HTTPError:
                pytest.fail(f"the stream broke before the kill: {received!r}")
        assert victim.wait(10) == -9
        chars_per_s = len(received) / (killed_at - first)
        # The other replica: nginx skips the dead one (a refused connection sends nothing).
        session = client.get("/sessions/k")
        assert session.status_code == 200, session.text
        human, partial = session.json()["messages"]
        assert (human["role"], human["content"]) == ("human", question)
        assert partial["role"] == "ai" and partial["status"] == "interrupted", partial
        assert received.startswith(partial["content"]) and partial["content"]
        lost_s = (len(received) - len(partial["content"])) / chars_per_s
        assert lost_s <= 1.25, (lost_s, received, partial["content"])
        # The client goes on in the same session, on the surviving replica.
        nxt = client.post("/chat", json={"message": "go on", "session_id": "k"})
        assert nxt.status_code == 200, nxt.text
        after = client.get("/sessions/k").json()["messages"]
    finally:
        replicas.close()
        ollama.kill()
    assert [m["role"] for m in after] == ["human", "ai", "human", "ai"]
    assert after[1]["content"] == partial["content"] and after[3]["status"] == "complete"
    assert ledger.account([question, "go on"], [m["content"] for m in after]) == 0
    ledger.note = (
        f"{len(partial['content'])} of {len(received)} streamed characters kept "
        f"({lost_s:.2f} s lost)"
    )
