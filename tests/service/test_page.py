"""End-to-end test of the web page at GET /: a real uvicorn server and the system chromium via Playwright."""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
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


@contextmanager
def serve(predictor, model_dir):
    """Run the app for `predictor` in a background uvicorn server; yields its base URL."""
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(model_dir=model_dir), predictor=predictor)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server_url(tiny_predictor, tiny_model_dir):
    with serve(tiny_predictor, tiny_model_dir) as url:
        yield url


@pytest.fixture(scope="module")
def relation_server_url(tiny_relation_predictor, tiny_model_dir):
    with serve(tiny_relation_predictor, tiny_model_dir) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextmanager
def open_page(browser, url: str):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url + "/")
    try:
        yield page
    finally:
        page.close()
    assert not dialogs, f"a dialog opened: {dialogs}"


@pytest.fixture()
def page(browser, server_url):
    with open_page(browser, server_url) as page:
        yield page


@pytest.fixture()
def relation_page(browser, relation_server_url):
    with open_page(browser, relation_server_url) as page:
        yield page


def artifacts_folder(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("STANCE_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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

    shot = artifacts_folder(tmp_path) / "page.png"
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


def test_relations_section_is_hidden_without_the_flag(page):
    assert not page.locator("input#relations").is_checked()
    with page.expect_request("**/classify") as request:
        classify(page, "Moscow blamed Kyiv for the attack.", "Russia=Moscow\nUkraine=Kyiv")
    assert "relations" not in request.value.post_data_json
    page.wait_for_selector("#sentences .sentence")
    assert page.locator("#relations-section").is_hidden()
    assert page.locator("#relations-graph").count() == 0


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


RELATION_TEXT = "Moscow blamed Kyiv for the attack.\nKyiv thanked Berlin for its help."
RELATION_ACTORS = "Russia=Moscow\nUkraine=Kyiv\nGermany=Berlin"


def test_relations_graph_and_table(relation_page, tmp_path):
    page = relation_page
    page.uncheck("input#detect")
    page.check("input#relations")
    with page.expect_response("**/classify") as response_info:
        classify(page, RELATION_TEXT, RELATION_ACTORS)
    response = response_info.value
    assert response.status == 200
    assert response.request.post_data_json["relations"] is True
    body = response.json()
    page.wait_for_selector("#sentences .sentence")
    assert page.locator("#error").is_hidden()

    pairs = {(r["holder"], r["target"]) for r in body["relations"]}
    assert pairs == {("Russia", "Ukraine"), ("Ukraine", "Russia"), ("Ukraine", "Germany"), ("Germany", "Ukraine")}

    graph = page.locator("svg#relations-graph")
    graph.wait_for(state="visible")
    node_names = set(graph.locator("text").all_text_contents())
    assert {"Russia", "Ukraine", "Germany"} <= node_names

    rows = page.locator("table#relations-table tbody tr")
    assert rows.count() == len(body["relations"]) == 4
    shown = {
        (rows.nth(i).locator("td.holder").text_content(), rows.nth(i).locator("td.target").text_content())
        for i in range(rows.count())
    }
    assert shown == pairs

    edges = graph.locator(".edge")
    drawn = {(r["holder"], r["target"]) for r in body["relations"] if r["label"] != "neutral"}
    assert edges.count() == len(drawn)
    for i in range(edges.count()):
        edge = edges.nth(i)
        classes = set(edge.get_attribute("class").split())
        assert "edge" in classes and len(classes & {"support", "oppose"}) == 1, classes
        assert (edge.get_attribute("data-holder"), edge.get_attribute("data-target")) in drawn

    shot = artifacts_folder(tmp_path) / "relations.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.is_file() and shot.stat().st_size > 0


def test_relations_without_relation_head_shows_error(page):
    page.check("input#relations")
    classify(page, RELATION_TEXT, RELATION_ACTORS)
    error = page.locator("#error")
    error.wait_for(state="visible")
    message = error.text_content()
    assert "this model has no relation head" in message
    assert "422" in message
    assert page.locator("#results").is_hidden()


def test_relations_graph_draws_support_and_oppose_edges(page, tmp_path):
    """A canned /classify answer (so labels are fixed): one edge per non-neutral pair, names kept as text."""
    evil = '<img src=x onerror="window.__xss=1">'
    relations = [
        {
            "holder": "Russia",
            "target": "Ukraine",
            "sentences": [0],
            "support": 0,
            "oppose": 1,
            "neutral": 0,
            "net": -0.8,
            "label": "oppose",
        },
        {
            "holder": "Ukraine",
            "target": "Russia",
            "sentences": [0],
            "support": 0,
            "oppose": 1,
            "neutral": 0,
            "net": -0.6,
            "label": "oppose",
        },
        {
            "holder": "Ukraine",
            "target": evil,
            "sentences": [1],
            "support": 1,
            "oppose": 0,
            "neutral": 0,
            "net": 0.7,
            "label": "support",
        },
        {
            "holder": evil,
            "target": "Ukraine",
            "sentences": [1],
            "support": 0,
            "oppose": 0,
            "neutral": 1,
            "net": 0.0,
            "label": "neutral",
        },
    ]
    body = {"model": {"name": "canned", "version": "0"}, "sentences": [], "actors": [], "relations": relations}
    page.route("**/classify", lambda route: route.fulfill(status=200, json=body))
    page.check("input#relations")
    classify(page, RELATION_TEXT, RELATION_ACTORS)
    graph = page.locator("svg#relations-graph")
    graph.wait_for(state="visible")
    assert set(graph.locator("text").all_text_contents()) == {"Russia", "Ukraine", evil}
    edges = {
        (e.get_attribute("data-holder"), e.get_attribute("data-target")): e.get_attribute("class")
        for e in graph.locator(".edge").all()
    }
    assert edges == {
        ("Russia", "Ukraine"): "edge oppose",
        ("Ukraine", "Russia"): "edge oppose",
        ("Ukraine", evil): "edge support",
    }
    assert page.locator("table#relations-table tbody tr").count() == 4
    page.wait_for_timeout(200)
    assert page.evaluate("window.__xss") is None
    assert page.locator("#results img").count() == 0
    page.screenshot(path=str(artifacts_folder(tmp_path) / "relations-canned.png"), full_page=True)
