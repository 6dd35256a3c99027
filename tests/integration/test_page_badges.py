"""The model picker's badges (issue 21) in a real headless browser: the real server in
front of the Ollama-protocol test server, with models as a real Ollama reports them."""

from __future__ import annotations

import os

import pytest

from ollang.server import ServerSettings
from ollang.server.testing import LiveServer
from tests.fake_ollama import FakeOllama, real_model

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
#: What the fit badge may say, whatever this machine's memory (tests run on many).
FIT_TEXTS = ("GPU", "CPU", "won't fit")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    models = [real_model(name) for name in ("llama3:8b", "llava:7b", "nomic-embed-text")]
    path = tmp_path_factory.mktemp("badges") / "sessions.db"
    with FakeOllama(models=models) as fake:
        config = ServerSettings(
            store_url=f"sqlite:///{path}",
            ollama_url=fake.url,
            backend="ollama",  # only the fake's models
            default_model="llama3:8b",
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
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.goto(live.url)
    page.wait_for_selector("#model option", state="attached")
    yield page
    context.close()
    assert errors == []


def badge_texts(page) -> list[str]:
    return page.locator("#model-badges .model-badge").all_inner_texts()


def is_fit_text(text: str) -> bool:
    return text in FIT_TEXTS or (text.endswith("% GPU") and text[:-5].isdigit())


def test_the_picker_shows_capability_and_fit_badges_with_titles(page):
    picker = page.get_by_label("Model")
    assert picker.input_value() == "llama3:8b"
    page.wait_for_selector("#model-badges .model-badge")
    # llama3's template has no tools: only the fit.
    [fit] = badge_texts(page)
    assert is_fit_text(fit), fit
    title = page.locator("#model-badges .model-badge").last.get_attribute("title") or ""
    assert "4096 tokens" in title and "KV cache" in title

    picker.select_option("llava:7b")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#model-badges .model-badge')]"
        ".some((b) => b.textContent === 'vision')"
    )
    texts = badge_texts(page)
    assert texts[0] == "vision" and is_fit_text(texts[-1]), texts
    vision = page.locator("#model-badges .model-badge", has_text="vision")
    assert "images" in (vision.get_attribute("title") or "")

    picker.select_option("nomic-embed-text:latest")
    page.wait_for_function(
        "() => document.querySelector('#model-badges .model-badge').textContent === 'embedding'"
    )
    # The picker's own description is the badges' text (screen readers read it).
    assert picker.get_attribute("aria-describedby") == "model-badges"
    # Each option says the same in its title (the tooltip over the open list).
    title = page.locator("#model option[value='llava:7b']").get_attribute("title") or ""
    assert title.startswith("vision, ")
