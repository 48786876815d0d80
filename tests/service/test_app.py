import time

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings


@pytest.fixture()
def client(tiny_predictor, tiny_model_dir):
    app = create_app(Settings(model_dir=tiny_model_dir, max_text_chars=200, max_actors=2), predictor=tiny_predictor)
    with TestClient(app) as c:
        yield c


def test_health_and_ready(client):
    assert client.get("/health").json() == {"status": "ok"}
    response = client.get("/ready")
    assert response.status_code == 200 and response.json() == {"status": "ready"}


def test_classify(client):
    response = client.post("/classify", json={"text": "Donald Trump praised Acme Corp.", "actors": [{"name": "Acme Corp"}]})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == {"name": "tiny-test", "version": "0.0.1"}
    assert body["sentences"][0]["text"] == "Donald Trump praised Acme Corp."
    assert {a["actor"] for a in body["actors"]} == {"Donald Trump", "Acme Corp"}


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"text": "  "}, 422, {"error": "text must not be empty", "error_type": "invalid_input"}),
        ({"text": "Hi.", "extra": 1}, 422, {"error": "extra: Extra inputs are not permitted", "error_type": "invalid_input"}),
        ({"text": 5}, 422, {"error": "text: Input should be a valid string", "error_type": "invalid_input"}),
        ({"text": "x" * 201}, 413, {"error": "text is longer than 200 characters", "error_type": "too_large"}),
        (
            {"text": "Hi.", "actors": [{"name": "A"}, {"name": "B"}, {"name": "C"}]},
            413,
            {"error": "more than 2 actors", "error_type": "too_large"},
        ),
    ],
)
def test_error_contract(client, body, status, error):
    response = client.post("/classify", json=body)
    assert response.status_code == status
    assert response.json() == error


def test_not_ready_until_the_model_loads(tmp_path):
    app = create_app(Settings(model_dir=tmp_path / "missing"))
    with TestClient(app) as c:
        for _ in range(100):  # loading runs in the background: wait for it to fail
            response = c.get("/ready")
            if response.json()["error"] != "model is loading":
                break
            time.sleep(0.05)
        assert response.status_code == 503
        assert response.json() == {
            "error": f"model is not loaded: model folder not found: {tmp_path / 'missing'}",
            "error_type": "not_ready",
        }
        assert c.post("/classify", json={"text": "Hi."}).status_code == 503
