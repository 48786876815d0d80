"""Hostile and odd input against the HTTP API with the tiny predictor: a clear status and message, never a 500 or a hang."""

from contextlib import ExitStack

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

JSON = {"content-type": "application/json"}
NOT_UNICODE = "Input should be a valid string, unable to parse raw data as a unicode string"


@pytest.fixture()
def make_client(tiny_predictor, tiny_model_dir):
    """A client on an app with the shipped limits, or with the given ones raised."""
    with ExitStack() as stack:

        def make(**limits) -> TestClient:
            app = create_app(Settings(model_dir=tiny_model_dir, **limits), predictor=tiny_predictor)
            return stack.enter_context(TestClient(app))

        yield make


@pytest.fixture()
def client(make_client) -> TestClient:
    return make_client()


def post_raw(client: TestClient, path: str, body: bytes):
    return client.post(path, content=body, headers=JSON)


def assert_offsets(text: str, result: dict) -> None:
    """Every sentence and mention offset indexes into the submitted text."""
    for sentence in result["sentences"]:
        assert text[sentence["start"] : sentence["end"]] == sentence["text"]
        for actor in sentence["actors"]:
            for mention in actor["mentions"]:
                assert text[mention["start"] : mention["end"]] == mention["text"]


def mentions(result: dict) -> list[list[tuple[str, str]]]:
    """(actor, mention text) per sentence, in text order."""
    found = [[(m["start"], a["actor"], m["text"]) for a in s["actors"] for m in a["mentions"]] for s in result["sentences"]]
    return [[(actor, text) for _, actor, text in sorted(sentence)] for sentence in found]


NESTED = b"[" * 100_000


@pytest.mark.parametrize("path", ["/classify", "/classify/batch", "/admin/reload"])
@pytest.mark.parametrize(
    "body", [NESTED, b'{"text": "Hi.", "actors": ' + NESTED + b"]" * 100_000 + b"}"], ids=["unclosed", "closed-in-a-field"]
)
def test_deeply_nested_json_is_invalid_input(client, path, body):
    response = post_raw(client, path, body)
    assert response.status_code == 422
    assert response.json() == {"error": "JSON is nested too deeply", "error_type": "invalid_input"}


def test_nesting_the_parser_takes_is_a_field_error(client):
    deep = b"[" * 500 + b"]" * 500
    body = b'{"documents": [{"id": "a", "text": ' + deep + b'}, {"id": "b", "text": "Acme Corp grew."}]}'
    results = post_raw(client, "/classify/batch", body).json()["results"]
    assert results[0] == {
        "id": "a",
        "status": 422,
        "result": None,
        "error": {"error": "text: Input should be a valid string", "error_type": "invalid_input"},
    }
    assert results[1]["status"] == 200
    response = post_raw(client, "/classify", b'{"text": "Hi.", "actors": ' + deep + b"}")
    assert response.status_code == 422
    assert response.json() == {
        "error": "actors.0: Input should be a valid dictionary or object to extract fields from",
        "error_type": "invalid_input",
    }


def test_a_number_too_long_for_python_is_invalid_input(client):
    response = post_raw(client, "/classify", b'{"text": "Hi.", "detect_actors": ' + b"1" * 5000 + b"}")
    assert response.status_code == 422
    assert response.json() == {"error": "a JSON number has more than 4300 digits", "error_type": "invalid_input"}


def test_huge_json_arrays(client):
    response = post_raw(client, "/classify", b"[" + b"0," * 3_000_000 + b"0]")  # 6 MB, under the 8 MB body limit
    assert response.status_code == 422
    assert response.json() == {
        "error": "Input should be a valid dictionary or object to extract fields from",
        "error_type": "invalid_input",
    }
    response = post_raw(client, "/classify/batch", b'{"documents": [' + b"{}," * 2_000_000 + b"{}]}")
    assert response.status_code == 413
    assert response.json() == {"error": "more than 64 documents", "error_type": "too_large"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"text": "Acme \xff\xfe Corp grew."}', "request body is not valid UTF-8 (invalid start byte at byte 15)"),
        (b'{"text": "Caf\xc3"}', "request body is not valid UTF-8 (invalid continuation byte at byte 13)"),
    ],
)
def test_invalid_utf8_is_invalid_input(client, body, error):
    response = post_raw(client, "/classify", body)
    assert response.status_code == 422
    assert response.json() == {"error": error, "error_type": "invalid_input"}


def test_lone_surrogates_are_invalid_input(client):
    # "\ud800" is valid JSON but no text: the tokenizer cannot read it and no JSON encoder can write it back.
    for body, field in [
        (b'{"text": "Acme Corp \\ud800 grew."}', "text"),
        (b'{"text": "Acme Corp grew.", "actors": [{"name": "Acme", "aliases": ["\\udfff"]}]}', "actors.0.aliases.0"),
        (b'{"text": "Acme Corp grew.", "actors": [{"name": "\\ud800"}]}', "actors.0.name"),
    ]:
        response = post_raw(client, "/classify", body)
        assert response.status_code == 422
        assert response.json() == {"error": f"{field}: {NOT_UNICODE}", "error_type": "invalid_input"}
    # As the name of an unknown field.
    response = post_raw(client, "/classify", b'{"text": "Hi.", "\\ud800": 1}')
    assert response.status_code == 422
    assert response.json() == {"error": NOT_UNICODE, "error_type": "invalid_input"}
    # A batch document with such an id gets its error, without the id.
    response = post_raw(client, "/classify/batch", b'{"documents": [{"id": "\\ud800", "text": "Hi."}]}')
    assert response.status_code == 200
    assert response.json()["results"] == [
        {"id": None, "status": 422, "result": None, "error": {"error": f"id: {NOT_UNICODE}", "error_type": "invalid_input"}}
    ]


def test_nul_and_control_characters(client):
    text = "Acme Corp\x00 grew\x01 fast.\tGlobex\x1b[31m fell\x7f.\u200b\ufeff Acme Corp cut\x0bjobs."
    actors = [{"name": "Acme Corp"}, {"name": "Globex"}]
    response = client.post("/classify", json={"text": text, "actors": actors, "detect_actors": False})
    assert response.status_code == 200
    result = response.json()
    assert_offsets(text, result)
    # A vertical tab breaks the line (and so the sentence); a zero-width space is not white space.
    assert mentions(result) == [[("Acme Corp", "Acme Corp")], [("Globex", "Globex"), ("Acme Corp", "Acme Corp")], []]
    # NER reads control characters too.
    response = client.post("/classify", json={"text": text})
    assert response.status_code == 200
    assert_offsets(text, response.json())


def test_emoji_and_right_to_left_text(client):
    text = "👩‍👩‍👧 Angela Merkel 🇩🇪 praised Acme Corp 🚀.\n\u202eשלום\u202c said \u200fمرحبا\u200f to Acme Corp."
    actors = [{"name": "Hebrew", "aliases": ["שלום"]}, {"name": "مرحبا"}, {"name": "Acme Corp"}]
    response = client.post("/classify", json={"text": text, "actors": actors})
    assert response.status_code == 200
    result = response.json()
    assert_offsets(text, result)
    # Emoji next to a detected name are not part of it.
    assert mentions(result) == [
        [("Angela Merkel", "Angela Merkel"), ("Acme Corp", "Acme Corp")],
        [("Hebrew", "שלום"), ("مرحبا", "مرحبا"), ("Acme Corp", "Acme Corp")],
    ]


def test_one_megabyte_sentence(make_client, client):
    text = "Acme Corp " + "word " * 209_998 + "grew."
    assert len(text) > 1_000_000
    body = {"text": text, "actors": [{"name": "Acme Corp"}], "detect_actors": False}
    response = client.post("/classify", json=body)
    assert response.status_code == 413
    assert response.json() == {"error": "text is longer than 100000 characters", "error_type": "too_large"}
    response = make_client(max_text_chars=2_000_000).post("/classify", json=body)
    assert response.status_code == 200
    (sentence,) = response.json()["sentences"]
    assert (sentence["start"], sentence["end"]) == (0, len(text))
    assert sentence["actors"][0]["mentions"] == [{"text": "Acme Corp", "start": 0, "end": 9}]


def test_a_sentence_over_the_ner_limit_is_read_in_windows(client, tiny_predictor, monkeypatch):
    # spaCy refuses a text over nlp.max_length (1,000,000 characters); lowered here so the test stays fast.
    monkeypatch.setattr(tiny_predictor.finder.nlp, "max_length", 1_000)
    text = "Angela Merkel spoke " + "at length " * 150 + "before Barack Obama replied in Washington."
    response = client.post("/classify", json={"text": text})
    assert response.status_code == 200
    result = response.json()
    assert len(result["sentences"]) == 1
    assert {"Angela Merkel", "Barack Obama"} <= {a["actor"] for a in result["actors"]}


@pytest.mark.parametrize(
    "text", ["a" * 90_000 + " . Next one.", "." * 90_000 + " x", "word. " * 15_000], ids=["long-word", "dots", "many-periods"]
)
def test_sentence_splitting_stays_linear(make_client, text):
    # These took minutes when the splitter's regular expressions backtracked; the budget turns a regression into a 503.
    client = make_client(request_timeout_s=20)
    response = client.post("/classify", json={"text": text, "actors": [{"name": "Acme"}], "detect_actors": False})
    assert response.status_code == 200


def test_ten_thousand_actors(make_client, client):
    actors = [{"name": f"Actor {i}", "aliases": [f"A{i}"]} for i in range(10_000)]
    text = "Actor 17 praised A9999. Nobody else spoke."
    response = client.post("/classify", json={"text": text, "actors": actors})
    assert response.status_code == 413
    assert response.json() == {"error": "more than 50 actors", "error_type": "too_large"}
    response = make_client(max_actors=10_000).post("/classify", json={"text": text, "actors": actors, "detect_actors": False})
    assert response.status_code == 200
    assert mentions(response.json()) == [[("Actor 17", "Actor 17"), ("Actor 9999", "A9999")], []]


def test_empty_actor_names_and_aliases(client):
    actors = [{"name": "Acme", "aliases": ["", "   "]}]
    response = client.post("/classify", json={"text": "Acme grew.", "actors": actors, "detect_actors": False})
    assert response.status_code == 200
    assert mentions(response.json()) == [[("Acme", "Acme")]]
    for name, error in [
        ("", "actors.0.name: String should have at least 1 character"),
        ("   ", "actor name must not be empty"),
    ]:
        response = client.post("/classify", json={"text": "Acme grew.", "actors": [{"name": name}]})
        assert response.status_code == 422
        assert response.json() == {"error": error, "error_type": "invalid_input"}


def test_aliases_are_literal_not_regular_expressions(client):
    text = "AxB met A.B today. Then .* and ( showed up, not x or y alone. Then abc, [a-z]+, a|b and \\ arrived."
    aliases = ["A.B", ".*", "(", "x|y", "[a-z]+", "a|b", "\\"]
    response = client.post(
        "/classify", json={"text": text, "actors": [{"name": "Q", "aliases": aliases}], "detect_actors": False}
    )
    assert response.status_code == 200
    result = response.json()
    assert_offsets(text, result)
    assert mentions(result) == [
        [("Q", "A.B")],
        [("Q", ".*"), ("Q", "(")],
        [("Q", "[a-z]+"), ("Q", "a|b"), ("Q", "\\")],
    ]
