"""End-to-end test of the web page at GET /: a real uvicorn server and the system chromium via Playwright."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 15_000

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tiny_predictor, tiny_model_dir):
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(model_dir=tiny_model_dir), predictor=tiny_predictor)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, server_url):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(server_url + "/")
    yield page
    page.close()
    assert not dialogs, f"a dialog opened: {dialogs}"


def classify(page, text: str, actors: str = "") -> None:
    page.fill("textarea#text", text)
    page.fill("textarea#actors", actors)
    page.click("button#classify")


def test_classify_renders_sentences_mentions_and_summary(page, tmp_path):
    classify(page, "Donald Trump praised Acme Corp.\nCritics blamed Acme Corp for the losses.", "Acme Corp=Acme")
    page.wait_for_selector("#sentences .sentence")
    assert page.locator("#error").is_hidden()
    assert page.locator("#sentences .sentence").count() == 2
    mentions = page.locator('#sentences .mention[data-actor="Acme Corp"]')
    assert mentions.count() >= 1
    for i in range(mentions.count()):
        classes = set(mentions.nth(i).get_attribute("class").split())
        assert classes & {"support", "oppose", "neutral"}, classes
        assert mentions.nth(i).text_content() in {"Acme Corp", "Acme"}
    row = page.locator("table#summary tbody tr", has=page.locator("td.actor", has_text="Acme Corp"))
    assert row.count() == 1
    assert row.locator("td").count() == 8

    folder = Path(os.environ.get("STANCE_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.is_file() and shot.stat().st_size > 0


def test_error_is_shown(page):
    classify(page, "   \n  ")
    error = page.locator("#error")
    error.wait_for(state="visible")
    message = error.text_content()
    assert "text must not be empty" in message
    assert "422" in message
    assert page.locator("#results").is_hidden()


def test_model_output_is_not_interpreted_as_html(page):
    text = 'Acme Corp said <img src=x onerror="window.__xss=1"> and <script>window.__xss=2</script> hello.'
    classify(page, text, "Acme Corp")
    page.wait_for_selector("#sentences .sentence")
    page.wait_for_timeout(200)  # give any injected handler a chance to run
    assert page.evaluate("window.__xss") is None
    assert page.locator("#sentences img").count() == 0
    assert page.locator("#sentences script").count() == 0
    assert "<img src=x" in page.locator("#sentences").text_content()
    assert page.locator('#sentences .mention[data-actor="Acme Corp"]').count() >= 1
