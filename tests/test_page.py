"""The chat page in a real headless browser (Debian's chromium driven by Playwright),
served by the real server in front of the Ollama-protocol test server."""

from __future__ import annotations

import os

import pytest

from ollang.memory import SQLiteChatStore, message_status
from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests.fake_ollama import FakeOllama, ModelInfo, Reply

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"{CHROMIUM} is absent: `apt-get install -y chromium` (CI installs it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def fake():
    with FakeOllama(models=[ModelInfo("llama3:latest")], token_delay=0.03) as srv:
        yield srv


@pytest.fixture(scope="module")
def live(fake, tmp_path_factory):
    path = tmp_path_factory.mktemp("page") / "sessions.db"
    config = ServerSettings(store_url=f"sqlite:///{path}", ollama_url=fake.url)
    with LiveServer(config) as server:
        yield server


@pytest.fixture
def page(browser, live):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(live.url)
    page.wait_for_selector("#model option", state="attached")
    yield page
    context.close()
    assert errors == []


def send(page, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")


@pytest.mark.reliability("Faults", "page: Stop keeps the partial, reload reopens it")
def test_stream_stop_keeps_the_partial_and_reload_reopens_it(page, live, fake):
    fake.queue(Reply(tokens=[f" w{i}" for i in range(300)]))  # ~9 s at 30 ms a token
    send(page, "Tell me a long story")
    answer = page.locator(".msg.ai").last
    # Tokens show up while the answer is still streaming.
    page.wait_for_function(
        "() => { const b = document.querySelector('.msg.ai.streaming .body');"
        " return b && b.textContent.includes('w5'); }"
    )
    assert page.locator("#stop").is_visible()
    page.click("#stop")
    page.wait_for_selector(".msg.ai.interrupted .badge")
    assert "stopped" in answer.locator(".badge").inner_text()
    shown = answer.locator(".body").inner_text()
    assert shown.startswith("w0 w1 w2") and "w299" not in shown
    assert page.locator("#send").is_visible()

    # The server stored the same partial answer, marked interrupted.
    store = SQLiteChatStore(live.store.path)
    session = next(s for s in store.list_sessions() if s.title == "Tell me a long story")
    stored = store.get_messages(session.id)
    assert message_status(stored[-1]) == "interrupted"
    assert stored[-1].content.startswith(" w0 w1 w2")

    page.reload()
    item = page.locator("#sessions button", has_text="Tell me a long story")
    item.first.click()
    page.wait_for_selector(".msg.ai.interrupted")
    assert page.locator(".msg.human .body").first.inner_text() == "Tell me a long story"
    assert page.locator(".msg.ai .body").first.inner_text().startswith("w0 w1 w2")


@pytest.mark.reliability("Security", "the page escapes model output (`<script>` shows as text)")
def test_model_output_is_escaped_never_executed(page, fake):
    fake.queue(
        Reply(
            tokens=[
                "<script>window.pwned = 1</script>",
                ' <img src=x onerror="window.pwned2 = 1">',
                " **bold** and `<b>code</b>`",
                " [link](javascript:alert(1)) [ok](https://example.com)",
            ]
        )
    )
    send(page, "be evil")
    page.wait_for_selector(".msg.ai .meta")  # the done event arrived
    body = page.locator(".msg.ai .body").last
    text = body.inner_text()
    assert "<script>window.pwned = 1</script>" in text
    assert '<img src=x onerror="window.pwned2 = 1">' in text
    assert page.evaluate("() => [window.pwned, window.pwned2]") == [None, None]
    assert body.locator("script, img").count() == 0
    assert body.locator("strong").inner_text() == "bold"
    assert body.locator("code").inner_text() == "<b>code</b>"
    links = body.locator("a")
    assert links.count() == 1 and links.get_attribute("href") == "https://example.com"


def test_phone_viewport_has_no_horizontal_scroll(browser, live, fake):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(live.url)
    page.wait_for_selector("#model option", state="attached")
    fake.queue(Reply(tokens=["x" * 300, "\n\n```\n" + "long_line_" * 40 + "\n```\n", " done"]))
    send(page, "a very long answer please")
    page.wait_for_selector(".msg.ai .meta")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, width
    # The session list is a drawer on phones.
    assert not page.locator("#sidebar").is_visible()
    page.click("#toggle-sessions")
    page.wait_for_selector("#sidebar.open")
    page.locator("#sessions button", has_text="a very long answer").first.wait_for()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    context.close()


def test_page_asks_for_the_key_when_the_server_has_keys(browser, fake, tmp_path):
    config = ServerSettings(
        store_url=f"sqlite:///{tmp_path / 's.db'}", ollama_url=fake.url, api_keys=["page-key"]
    )
    with LiveServer(config) as server:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(server.url)
        page.wait_for_selector("#key-panel:not([hidden])")
        page.fill("#key-input", "page-key")
        page.click("#save-key")
        page.wait_for_selector("#model option", state="attached")
        fake.queue(Reply(tokens=["Hi", " with", " a", " key"]))
        send(page, "hello")
        page.wait_for_selector(".msg.ai .meta")
        assert page.locator(".msg.ai .body").last.inner_text() == "Hi with a key"
        assert page.evaluate("() => localStorage.getItem('ollang.apiKey')") == "page-key"
        context.close()
