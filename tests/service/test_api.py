"""The HTTP API with the tiny predictor: every route, every error type and limit, batch partial failure, reload."""

import json
import shutil
import time

import pytest
from fastapi.testclient import TestClient

from model.predictor import cpu_features
from service.app import create_app
from service.settings import Settings

KEY = "s3cret-key"


@pytest.fixture()
def app(tiny_predictor, tiny_model_dir):
    settings = Settings(
        model_dir=tiny_model_dir, max_text_chars=300, max_actors=2, max_batch_documents=3, max_body_bytes=4096, api_key=KEY
    )
    return create_app(settings, predictor=tiny_predictor)


@pytest.fixture()
def client(app):
    with TestClient(app) as c:
        yield c


def admin(token: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_batch_keeps_order_and_ids_with_partial_failure(client):
    documents = [
        {"id": "a", "text": "Donald Trump praised Acme Corp."},
        {"id": "b", "text": "   "},
        {"id": "c", "text": 7},
    ]
    response = client.post("/classify/batch", json={"documents": documents})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == ["a", "b", "c"]
    assert results[0]["status"] == 200 and results[0]["result"]["sentences"][0]["text"] == "Donald Trump praised Acme Corp."
    assert results[1] == {
        "id": "b",
        "status": 422,
        "result": None,
        "error": {"error": "text must not be empty", "error_type": "invalid_input"},
    }
    assert results[2]["status"] == 422
    assert results[2]["error"] == {"error": "text: Input should be a valid string", "error_type": "invalid_input"}


def test_batch_limits(client):
    response = client.post("/classify/batch", json={"documents": [{"id": str(i), "text": "Hi."} for i in range(4)]})
    assert response.status_code == 413
    assert response.json() == {"error": "more than 3 documents", "error_type": "too_large"}
    response = client.post("/classify/batch", json={"documents": [{"id": "a", "text": "x" * 301}]})
    assert response.json()["results"][0]["error"] == {"error": "text is longer than 300 characters", "error_type": "too_large"}
    assert response.json()["results"][0]["status"] == 413


def test_invalid_json_and_unknown_routes(client):
    response = client.post("/classify", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json() == {"error": "1: JSON decode error", "error_type": "invalid_input"}
    response = client.get("/nope")
    assert response.status_code == 404 and response.json() == {"error": "Not Found", "error_type": "not_found"}
    response = client.get("/classify")
    assert response.status_code == 405 and response.json()["error_type"] == "method_not_allowed"


def test_body_limit_is_enforced_before_parsing(client):
    response = client.post("/classify", content=b'{"text": "' + b"x" * 5000 + b'"}', headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"error": "request body is larger than 4096 bytes", "error_type": "too_large"}


def test_chunked_body_over_the_limit_is_rejected(client):
    def chunks():
        for _ in range(10):
            yield b"x" * 1000

    response = client.post("/classify", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error_type"] == "too_large"


def test_info_metrics_and_request_ids(client):
    client.post("/classify", json={"text": "Donald Trump praised Acme Corp."})
    info = client.get("/info").json()
    assert info["model"]["name"] == "tiny-test"
    assert info["labels"] == {"stance": ["support", "oppose", "neutral"], "sentiment": ["positive", "negative", "neutral"]}
    assert info["limits"] == {"max_text_chars": 300, "max_batch_documents": 3, "max_actors": 2, "max_body_bytes": 4096}
    assert info["metrics"] == {"note": "random weights"}
    runtime = {"precision": "fp32", "int8_kernel": None, "compile": "off", "attention": "sdpa", "cpu": cpu_features()}
    assert info["runtime"] == runtime
    assert set(info["runtime"]["cpu"]) == {"capability", "vnni", "native_bf16", "bf16_faster", "int8_kernel", "tiles"}
    text = client.get("/metrics").text
    assert 'stance_requests_total{method="POST",route="/classify",status="200"} 1.0' in text
    assert "stance_pairs_scored_total" in text and "stance_batch_documents_bucket" in text and "stance_queue_depth" in text
    response = client.get("/health", headers={"x-request-id": "abc123"})
    assert response.headers["x-request-id"] == "abc123"
    assert len(client.get("/health").headers["x-request-id"]) == 32


def test_request_log_has_no_text(client, caplog):
    caplog.set_level("INFO", logger="stance.service")
    client.post("/classify", json={"text": "Secret source says Acme Corp lied."})
    lines = [json.loads(r.message) for r in caplog.records if r.message.startswith('{"request_id"')]
    assert lines and lines[-1]["path"] == "/classify" and lines[-1]["status"] == 200 and lines[-1]["pairs"] >= 1
    assert "duration_ms" in lines[-1]
    assert all("Secret source" not in r.message for r in caplog.records)


def test_unexpected_errors_are_a_generic_500(client, app, monkeypatch, caplog):
    predictor = app.state.stance.predictor

    def boom(*_a, **_k):
        raise RuntimeError("kaboom at /secret/path")

    monkeypatch.setattr(predictor, "predict_documents_safe", boom)
    response = client.post("/classify", json={"text": "Acme Corp grew."})
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error", "error_type": "internal"}
    assert "kaboom" not in response.text
    assert any("unhandled_error" in r.message for r in caplog.records)


def test_admin_is_protected(client):
    assert client.post("/admin/reload").status_code == 401
    response = client.post("/admin/reload", headers=admin("wrong"))
    assert response.status_code == 401 and response.json() == {"error": "missing or wrong API key", "error_type": "unauthorized"}


def test_admin_is_off_without_a_key(tiny_predictor, tiny_model_dir):
    with TestClient(create_app(Settings(model_dir=tiny_model_dir), predictor=tiny_predictor)) as c:
        response = c.post("/admin/reload", headers=admin())
        assert response.status_code == 404 and response.json() == {"error": "Not Found", "error_type": "not_found"}


def test_reload_swaps_in_a_good_folder(client, tiny_model_dir, tmp_path):
    from model.predictor import StancePredictor

    other = tmp_path / "other"
    predictor = StancePredictor.load(tiny_model_dir)
    predictor.config.name, predictor.config.version = "other-model", "2.0.0"
    predictor.save(other)
    response = client.post("/admin/reload", headers=admin(), json={"model_dir": str(other)})
    assert response.status_code == 200
    assert response.json() == {
        "status": "reloaded",
        "model": {"name": "other-model", "version": "2.0.0"},
        "model_dir": str(other),
    }
    assert client.post("/classify", json={"text": "Acme Corp grew."}).json()["model"] == {
        "name": "other-model",
        "version": "2.0.0",
    }
    assert client.get("/info").json()["model"]["folder"] == str(other)


def test_reload_of_a_corrupt_folder_keeps_the_old_model(client, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "weights.safetensors").write_bytes(b"garbage")
    response = client.post("/admin/reload", headers=admin(), json={"model_dir": str(broken)})
    assert response.status_code == 422
    body = response.json()
    assert body["error_type"] == "model_load"
    assert body["error"].startswith(f"{broken / 'weights.safetensors'} is corrupt: sha256 ")
    assert client.post("/classify", json={"text": "Acme Corp grew."}).json()["model"]["name"] == "tiny-test"


def test_requests_in_flight_finish_on_the_old_model(client, app, tiny_model_dir, tmp_path, monkeypatch):
    import threading

    from model.predictor import StancePredictor

    old = app.state.stance.predictor
    original = old.predict_documents_safe
    release = threading.Event()

    def slow(documents, *a):
        release.wait(10)
        return original(documents, *a)

    monkeypatch.setattr(old, "predict_documents_safe", slow)
    other = tmp_path / "new"
    replacement = StancePredictor.load(tiny_model_dir)
    replacement.config.name = "new-model"
    replacement.save(other)
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(r=client.post("/classify", json={"text": "Acme Corp grew."}).json()))
    worker.start()
    time.sleep(0.3)
    assert client.post("/admin/reload", headers=admin(), json={"model_dir": str(other)}).status_code == 200
    release.set()
    worker.join(10)
    assert outcome["r"]["model"]["name"] == "tiny-test"
    assert client.post("/classify", json={"text": "Acme Corp grew."}).json()["model"]["name"] == "new-model"


def test_concurrent_requests_share_a_batch(app):
    import asyncio

    import httpx

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            responses = await asyncio.gather(*[c.post("/classify", json={"text": f"Acme Corp grew {i}%."}) for i in range(8)])
            assert all(r.status_code == 200 for r in responses)
            return (await c.get("/metrics")).text

    text = asyncio.run(main())
    count = next(line for line in text.splitlines() if line.startswith("stance_batch_documents_count"))
    assert float(count.split()[-1]) < 8  # fewer inference batches than requests


def test_openapi_has_examples(client):
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for name in ("ClassifyRequest", "ClassifyResponse", "BatchRequest", "BatchResponse", "ErrorOut", "ActorIn"):
        assert components[name].get("examples"), name
    assert "/classify/batch" in schema["paths"] and "/admin/reload" in schema["paths"]


def test_compute_budget_gives_503(tiny_predictor, tiny_model_dir, monkeypatch):
    import threading

    app = create_app(Settings(model_dir=tiny_model_dir, request_timeout_s=0.2), predictor=tiny_predictor)
    gate = threading.Event()
    original = tiny_predictor.predict_documents_safe
    monkeypatch.setattr(tiny_predictor, "predict_documents_safe", lambda docs, *a: gate.wait(5) and original(docs, *a))
    with TestClient(app) as c:
        response = c.post("/classify", json={"text": "Acme Corp grew."})
        gate.set()
    assert response.status_code == 503
    assert response.json() == {"error": "request took longer than the compute budget of 0.2 s", "error_type": "timeout"}


def test_cors_is_off_by_default_and_configurable(tiny_predictor, tiny_model_dir, client):
    preflight = {"Origin": "https://news.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/classify", headers=preflight).headers
    app = create_app(Settings(model_dir=tiny_model_dir, cors_origins=["https://news.example"]), predictor=tiny_predictor)
    with TestClient(app) as c:
        response = c.options("/classify", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://news.example"


def test_serve_refuses_a_corrupt_model(tiny_model_dir, tmp_path, capsys):
    from service.cli import main

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").write_text(json.dumps({**json.loads((broken / "config.json").read_text()), "name": "x"}))
    (broken / "weights.safetensors").write_bytes(b"truncated")
    assert main(["serve", "--model", str(broken), "--port", "1"]) == 3
    assert capsys.readouterr().err.startswith(f"error: cannot load model: {broken / 'weights.safetensors'} is corrupt: sha256 ")


def test_relations_on_request(tiny_relation_predictor, tiny_model_dir, client):
    app = create_app(Settings(model_dir=tiny_model_dir), predictor=tiny_relation_predictor)
    text = "Moscow blamed Kyiv for the attack. Acme Corp grew."
    actors = [{"name": "Russia", "aliases": ["Moscow"]}, {"name": "Ukraine", "aliases": ["Kyiv"]}]
    with TestClient(app) as c:
        body = c.post("/classify", json={"text": text, "actors": actors, "detect_actors": False, "relations": True}).json()
        plain = c.post("/classify", json={"text": text, "actors": actors, "detect_actors": False}).json()
    pairs = {(r["holder"], r["target"]) for r in body["sentences"][0]["relations"]}
    assert pairs == {("Russia", "Ukraine"), ("Ukraine", "Russia")}
    assert body["sentences"][1]["relations"] == []
    assert {(r["holder"], r["target"]) for r in body["relations"]} == pairs
    assert "relations" not in plain and "relations" not in plain["sentences"][0]
    # A model without a relation head says so.
    response = client.post("/classify", json={"text": text, "relations": True})
    assert response.status_code == 422
    assert response.json() == {
        "error": "this model has no relation head; relations are not available",
        "error_type": "invalid_input",
    }
