"""The chat page in a real headless browser (Debian's chromium driven by Playwright),
served by the real server in front of the Ollama-protocol test server."""

from __future__ import annotations

import base64
import os
import struct
import time
import zlib
from typing import Any

import httpx
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


#: The server's default model: neither the alphabetically first nor the built-in llama3.
DEFAULT = "mistral:latest"


@pytest.fixture(scope="module")
def fake():
    models = [
        ModelInfo("aaa-tiny:latest", size=98_000_000, parameter_size="135M"),
        ModelInfo("llama3:latest"),  # 4_661_224_676 bytes
        ModelInfo(DEFAULT, size=14_960_000_000),
    ]
    with FakeOllama(models=models, token_delay=0.03) as srv:
        yield srv


@pytest.fixture(scope="module")
def live(fake, tmp_path_factory):
    path = tmp_path_factory.mktemp("page") / "sessions.db"
    config = ServerSettings(
        store_url=f"sqlite:///{path}",
        ollama_url=fake.url,
        backend="ollama",  # only the fake's models (module fixtures start before conftest's env)
        default_model="mistral",
    )
    with LiveServer(config) as server:
        yield server


@pytest.fixture
def page(browser, live):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    # Nothing the page does may break its Content Security Policy (inline code, images
    # from elsewhere...): the browser reports each violation on the console.
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.goto(live.url)
    page.wait_for_selector("#model option", state="attached")
    yield page
    context.close()
    assert errors == []


def send(page, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")


def turn(page, text: str) -> None:
    """Send ``text`` and wait for the answer's ``done`` (its meta line)."""
    before = page.locator(".msg.ai .meta").count()
    send(page, text)
    page.wait_for_function("n => document.querySelectorAll('.msg.ai .meta').length > n", arg=before)


def posted(page) -> list[dict[str, Any]]:
    """The bodies the page POSTs to /chat/stream from now on (filled in as it sends)."""
    bodies: list[dict[str, Any]] = []

    def seen(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/chat/stream"):
            bodies.append(request.post_data_json)

    page.on("request", seen)
    return bodies


def last_chat(fake) -> dict[str, Any]:
    """The last /api/chat body that reached the fake Ollama."""
    return fake.chat_requests()[-1]


def system_of(body: dict[str, Any]) -> str | None:
    return next((m["content"] for m in body["messages"] if m["role"] == "system"), None)


def reopened(page) -> None:
    """Reload and wait until the page has reopened the session it had open."""
    page.reload()
    page.wait_for_selector("#model option", state="attached")
    page.wait_for_selector(".msg.human")


def png(width: int = 48, height: int = 32, rgb: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A real PNG image (so the server's check by first bytes accepts it)."""
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def attach(page, *paths: Any) -> None:
    """Choose files with the attach button, as a user does (the file chooser)."""
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach images").click()
    chooser.value.set_files([str(p) for p in paths])


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

    # The server stored the same partial answer, marked interrupted (on its writer
    # thread, after the cancellation: wait for it).
    store = SQLiteChatStore(live.store.path)
    session = next(s for s in store.list_sessions() if s.title == "Tell me a long story")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while len(stored := store.get_messages(session.id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
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
    # Escape closes the drawer and gives the focus back to its button.
    page.keyboard.press("Escape")
    page.wait_for_selector("#sidebar:not(.open)")
    assert page.evaluate("() => document.activeElement.id") == "toggle-sessions"
    assert page.get_by_role("button", name="Attach images").is_visible()
    assert page.get_by_label("Think").is_visible()
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
        # issue 22: the key's use today, once the server has counted the turn (every 2 s)
        deadline = time.monotonic() + 10
        while "1 request " not in page.inner_text("#usage"):
            assert time.monotonic() < deadline, page.inner_text("#usage")
            time.sleep(0.5)
            page.reload()
            page.wait_for_selector("#usage:not([hidden])")
        assert page.inner_text("#usage").startswith("Today (api-key-1): 1 request · ")
        context.close()


# ---------------------------------------------------------------- issue 12, item 7


def test_first_visit_picks_the_servers_default_model_with_sizes_as_ollama_shows_them(page, fake):
    """1 and 6: the server's `default_model`, not the alphabetically first; decimal sizes."""
    picker = page.get_by_label("Model")
    assert picker.input_value() == DEFAULT
    labels = page.locator("#model option").all_inner_texts()
    assert sorted(labels) == [
        "aaa-tiny:latest (98 MB)",
        "llama3:latest (4.7 GB)",
        "mistral:latest (15 GB)",
    ]
    bodies = posted(page)
    turn(page, "which model?")
    assert bodies[-1]["model"] == DEFAULT
    assert last_chat(fake)["model"] == DEFAULT
    assert page.locator(".msg.ai .meta").last.inner_text().startswith(DEFAULT)
    # A choice made in this browser is remembered over the default.
    picker.select_option("aaa-tiny:latest")
    page.get_by_role("button", name="New chat").click()
    page.reload()
    page.wait_for_selector("#model option", state="attached")
    assert page.get_by_label("Model").input_value() == "aaa-tiny:latest"


def test_think_toggle_sends_think_and_the_session_keeps_it(page, fake):
    """2: the toggle sends options.think; reasoning shows apart; a reopened chat keeps it."""
    bodies = posted(page)
    toggle = page.get_by_label("Think")
    assert not toggle.is_checked()
    fake.queue(Reply(tokens=["Forty", " two"], thinking=["Let me", " count"]))
    toggle.check()
    turn(page, "what is six times seven?")
    answer = page.locator(".msg.ai").last
    assert answer.locator(".reasoning").is_visible()
    assert answer.locator(".reasoning").inner_text() == "Let me count"
    assert answer.locator(".body").inner_text() == "Forty two"
    assert bodies[-1]["options"] == {"think": True}
    assert last_chat(fake)["think"] is True

    # The next message needs no option: the session goes on thinking.
    fake.queue(Reply(tokens=["Yes"], thinking=["Still", " thinking"]))
    turn(page, "sure?")
    assert "options" not in bodies[-1]
    assert last_chat(fake)["think"] is True
    assert page.locator(".msg.ai .reasoning").last.inner_text() == "Still thinking"

    # Reopened, the toggle shows the session's setting; turned off, thinking stops.
    reopened(page)
    bodies = posted(page)
    toggle = page.get_by_label("Think")
    assert toggle.is_checked()
    assert page.locator(".msg.ai .reasoning").first.inner_text() == "Let me count"
    toggle.uncheck()
    fake.queue(Reply(tokens=["Plain"], thinking=["hidden"]))
    turn(page, "no thinking now")
    assert bodies[-1]["options"] == {"think": False}
    assert last_chat(fake)["think"] is False
    assert page.locator(".msg.ai .reasoning").last.is_hidden()


def test_reload_reopens_the_open_session_and_a_deleted_one_starts_a_new_chat(page, live, fake):
    """3: the open session survives a reload; one deleted meanwhile (404) is a new chat."""
    fake.queue("I will remember.")
    turn(page, "remember me")
    session_id = page.evaluate("() => localStorage.getItem('ollang.session')")
    assert session_id and live.store.get_session(session_id) is not None

    reopened(page)
    assert page.locator(".msg.human .body").all_inner_texts() == ["remember me"]
    assert page.locator(".msg.ai .body").all_inner_texts() == ["I will remember."]
    assert page.locator("#session-title").inner_text() == "remember me"
    assert page.locator("#sessions button.current").inner_text().startswith("remember me")
    # The next message continues that session: the model sees the history.
    turn(page, "second")
    contents = [m["content"] for m in last_chat(fake)["messages"]]
    assert contents[-3:] == ["remember me", "I will remember.", "second"]
    assert len(live.store.get_messages(session_id)) == 4

    # Deleted elsewhere: the reload starts a new chat, without an error.
    httpx.delete(f"{live.url}/sessions/{session_id}").raise_for_status()
    page.reload()
    page.wait_for_function("() => localStorage.getItem('ollang.session') === null")
    assert page.locator(".msg").count() == 0
    assert page.locator("#empty").is_visible()
    assert page.locator("#banner").is_hidden()
    assert page.locator("#session-title").inner_text() == "New chat"
    turn(page, "fresh start")
    body = last_chat(fake)
    assert [m["content"] for m in body["messages"] if m["role"] == "user"] == ["fresh start"]
    new_id = page.evaluate("() => localStorage.getItem('ollang.session')")
    assert new_id and new_id != session_id


def test_rename_retitle_and_delete_a_session(page, live, fake):
    """4: PATCH id and title (409 shown when the id is taken), DELETE after a confirm."""
    fake.queue("Where to?")
    turn(page, "plan a trip")
    old_id = page.evaluate("() => localStorage.getItem('ollang.session')")
    page.get_by_role("button", name="Rename").click()
    page.get_by_label("Title").fill("Trip plans")
    page.get_by_label("Id", exact=True).fill("trip-2024")
    page.get_by_role("button", name="Save").click()
    page.locator("#sessions button", has_text="Trip plans").wait_for()
    assert page.locator("#session-title").inner_text() == "Trip plans"
    assert page.locator("#rename-form").is_hidden()
    assert live.store.get_session(old_id) is None
    assert live.store.get_session("trip-2024").title == "Trip plans"
    assert page.evaluate("() => localStorage.getItem('ollang.session')") == "trip-2024"
    # The chat goes on in the renamed session, history and all.
    bodies = posted(page)
    turn(page, "and the hotel?")
    assert bodies[-1]["session_id"] == "trip-2024"
    assert [m["content"] for m in last_chat(fake)["messages"]][-3:] == [
        "plan a trip",
        "Where to?",
        "and the hotel?",
    ]
    assert len(live.store.get_messages("trip-2024")) == 4

    # Another session may not take that id: the 409 is shown, nothing changes.
    page.get_by_role("button", name="New chat").click()
    turn(page, "something else")
    other_id = page.evaluate("() => localStorage.getItem('ollang.session')")
    page.get_by_role("button", name="Rename").click()
    page.get_by_label("Id", exact=True).fill("trip-2024")
    page.get_by_label("Id", exact=True).press("Enter")
    page.wait_for_selector("#banner:not([hidden])")
    assert "'trip-2024' already exists" in page.locator("#banner").inner_text()
    assert page.locator("#rename-form").is_visible()
    assert live.store.get_session(other_id) is not None
    assert len(live.store.get_messages("trip-2024")) == 4
    page.get_by_label("Id", exact=True).press("Escape")
    assert page.locator("#rename-form").is_hidden()

    # Delete asks first: dismissed, nothing happens; accepted, the session is gone.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete").click()
    assert live.store.get_session(other_id) is not None
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    page.wait_for_function("() => localStorage.getItem('ollang.session') === null")
    page.wait_for_function(
        "() => ![...document.querySelectorAll('#sessions button')]"
        ".some(b => b.textContent.startsWith('something else'))"
    )
    assert live.store.get_session(other_id) is None
    assert live.store.get_session("trip-2024") is not None
    assert page.locator(".msg").count() == 0
    assert page.locator("#session-title").inner_text() == "New chat"
    assert page.get_by_role("button", name="Delete").is_hidden()


def test_system_prompt_and_model_belong_to_the_session(page, fake):
    """5: the system prompt goes as `system`; a reopened session shows its own system
    prompt and model, and settings are sent only when the user changes them."""
    bodies = posted(page)
    page.get_by_label("Model").select_option("llama3:latest")
    page.locator("#system-box summary").click()
    page.get_by_label("System prompt").fill("Be terse.")
    turn(page, "tell me about owls")
    assert bodies[-1]["system"] == "Be terse." and bodies[-1]["model"] == "llama3:latest"
    assert system_of(last_chat(fake)) == "Be terse."
    assert last_chat(fake)["model"] == "llama3:latest"
    turn(page, "and bats?")
    assert "system" not in bodies[-1] and "model" not in bodies[-1]
    assert system_of(last_chat(fake)) == "Be terse."
    assert last_chat(fake)["model"] == "llama3:latest"

    # A new chat starts without a system prompt, on the picker's model.
    page.get_by_role("button", name="New chat").click()
    assert page.get_by_label("System prompt").input_value() == ""
    page.get_by_label("Model").select_option("aaa-tiny:latest")
    turn(page, "hello tiny")
    assert "system" not in bodies[-1]
    assert system_of(last_chat(fake)) is None
    assert last_chat(fake)["model"] == "aaa-tiny:latest"

    # Reopening the owls chat shows its settings, and continues with them.
    page.locator("#sessions button", has_text="tell me about owls").click()
    page.wait_for_function(
        "() => document.querySelector('#session-title').textContent === 'tell me about owls'"
    )
    assert page.get_by_label("Model").input_value() == "llama3:latest"
    assert page.get_by_label("System prompt").input_value() == "Be terse."
    page.locator("#system-box summary").click()  # closed, it still shows the prompt
    assert page.locator("#system-box summary").inner_text() == "System prompt: Be terse."
    turn(page, "and cats?")
    assert "system" not in bodies[-1] and "model" not in bodies[-1]
    assert system_of(last_chat(fake)) == "Be terse."
    assert last_chat(fake)["model"] == "llama3:latest"

    # A changed prompt is sent once, and kept by the session (also after a reload).
    page.locator("#system-box summary").click()
    page.get_by_label("System prompt").fill("Answer in French.")
    turn(page, "and dogs?")
    assert bodies[-1]["system"] == "Answer in French."
    assert system_of(last_chat(fake)) == "Answer in French."
    reopened(page)
    assert page.get_by_label("System prompt").input_value() == "Answer in French."
    assert page.get_by_label("Model").input_value() == "llama3:latest"

    # Emptied, the system prompt is dropped.
    bodies = posted(page)
    page.locator("#system-box summary").click()
    page.get_by_label("System prompt").fill("")
    turn(page, "and fish?")
    assert bodies[-1]["system"] == ""
    assert system_of(last_chat(fake)) is None


def test_attach_images_shows_thumbnails_sends_them_and_reopens_with_them(page, fake, tmp_path):
    """7: the attach button; thumbnails; `images` reach Ollama; reopened sessions show them."""
    image = tmp_path / "red.png"
    image.write_bytes(png())
    bodies = posted(page)
    attach(page, image)
    pending = page.locator("#attachments li")
    pending.first.wait_for()
    assert pending.count() == 1 and pending.locator(".name").inner_text() == "red.png"
    assert page.locator("#attachments img").evaluate("img => img.naturalWidth") == 48
    turn(page, "what colour is this?")
    encoded = base64.b64encode(image.read_bytes()).decode()
    assert bodies[-1]["images"] == [f"data:image/png;base64,{encoded}"]
    question = last_chat(fake)["messages"][-1]
    assert question["content"] == "what colour is this?"
    assert question["images"] == [encoded]
    shown = page.locator(".msg.human").last.locator("img")
    assert shown.count() == 1 and shown.evaluate("img => img.naturalWidth") == 48
    assert page.locator("#attachments").is_hidden()  # sent: the composer is clear again

    reopened(page)
    shown = page.locator(".msg.human img")
    assert shown.count() == 1
    assert shown.get_attribute("src") == f"data:image/png;base64,{encoded}"
    assert shown.evaluate("img => img.complete && img.naturalWidth") == 48
    assert shown.get_attribute("alt").startswith("Attached image 1")


def test_bad_images_get_the_servers_422_and_413_shown_and_the_draft_back(page, fake, tmp_path):
    """7: not an image (422), too large (413), too many (422): shown; nothing reaches Ollama."""
    fake_png = tmp_path / "notes.png"
    fake_png.write_bytes(b"just some notes, not an image")
    huge = tmp_path / "huge.png"
    huge.write_bytes(png()[:16] + b"\0" * (10 * 2**20))
    asked = len(fake.chat_requests())

    for path, status, words in [
        (fake_png, 422, "not an image"),
        (huge, 413, "10 MiB"),
    ]:
        attach(page, path)  # sent at once: the send waits for the file to be read
        with page.expect_response(lambda r: r.url.endswith("/chat/stream")) as response:
            send(page, "look at this")
        assert response.value.status == status
        page.wait_for_selector("#banner:not([hidden])")
        assert words in page.locator("#banner").inner_text()
        # The message and its image are back in the composer, to fix and resend.
        assert page.get_by_label("Message").input_value() == "look at this"
        assert page.locator("#attachments .name").all_inner_texts() == [path.name]
        assert page.locator(".msg").count() == 0
        page.get_by_role("button", name=f"Remove {path.name}").click()
        assert page.locator("#attachments").is_hidden()

    many = []
    for i in range(9):
        many.append(tmp_path / f"p{i}.png")
        many[-1].write_bytes(png(4, 4, (i * 20, 0, 0)))
    attach(page, *many)
    with page.expect_response(lambda r: r.url.endswith("/chat/stream")) as response:
        send(page, "look at these")
    assert response.value.status == 422
    page.wait_for_selector("#banner:not([hidden])")
    assert "images" in page.locator("#banner").inner_text()
    assert len(fake.chat_requests()) == asked

    # One fewer is fine.
    page.get_by_role("button", name="Remove p8.png").click()
    page.get_by_label("Message").fill("look at these")
    turn(page, "look at these")
    assert len(last_chat(fake)["messages"][-1]["images"]) == 8
    assert page.locator(".msg.human").last.locator("img").count() == 8
    assert page.locator("#banner").is_hidden()
