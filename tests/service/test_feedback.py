"""POST /feedback, the SQLite store, export, and the full loop back into a retrained, reloaded model."""

import json
import sqlite3

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.cli import main
from service.settings import Settings

KEY = "k3y"
CORRECTION = {"text": "Critics blamed Acme Corp for the losses.", "actor": "Acme Corp", "stance": "oppose", "source": "desk"}


@pytest.fixture()
def db(tmp_path):
    return tmp_path / "feedback.sqlite3"


def make_client(tiny_predictor, tiny_model_dir, db, key=None):
    return TestClient(create_app(Settings(model_dir=tiny_model_dir, feedback_db=db, api_key=key), predictor=tiny_predictor))


def test_feedback_is_stored_once_and_durably(tiny_predictor, tiny_model_dir, db):
    with make_client(tiny_predictor, tiny_model_dir, db) as client:
        first = client.post("/feedback", json=CORRECTION)
        assert first.status_code == 201 and first.json() == {"id": 1, "stored": True}
        again = client.post("/feedback", json=CORRECTION)
        assert again.status_code == 200 and again.json() == {"id": 1, "stored": False}
        assert client.post("/feedback", json={"text": "Markets slumped.", "sentiment": "negative"}).json() == {
            "id": 2,
            "stored": True,
        }
        # Committed before the reply: another connection sees the rows while the service still runs.
        with sqlite3.connect(db) as other:
            assert other.execute("SELECT count(*) FROM feedback").fetchone() == (2,)
            assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"text": "A b.", "stance": "support"}, "field 'actor' is missing or empty for a stance row"),
        ({"text": "A b."}, "row has neither a 'stance' nor a 'sentiment' label"),
        (
            {"text": "A b.", "actor": "A", "start": 0, "end": 30, "stance": "support"},
            "fields 'start'/'end' (0, 30) are outside the text",
        ),
        ({"text": "A b.", "sentiment": "great"}, "sentiment: Input should be 'positive', 'negative' or 'neutral'"),
        ({"text": "A b.", "sentiment": "neutral", "extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_feedback_validation(tiny_predictor, tiny_model_dir, db, body, error):
    with make_client(tiny_predictor, tiny_model_dir, db) as client:
        response = client.post("/feedback", json=body)
        assert response.status_code == 422
        assert response.json() == {"error": error, "error_type": "invalid_input"}


def test_feedback_needs_the_key_when_one_is_set(tiny_predictor, tiny_model_dir, db):
    with make_client(tiny_predictor, tiny_model_dir, db, key=KEY) as client:
        assert client.post("/feedback", json=CORRECTION).status_code == 401
        ok = client.post("/feedback", json=CORRECTION, headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 201


def test_export_needs_an_existing_database(capsys, tmp_path):
    assert main(["feedback", "export", "--db", str(tmp_path / "none.sqlite3"), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'none.sqlite3'}: feedback database not found\n"


def stance(client, text: str, actor: str) -> dict:
    body = client.post("/classify", json={"text": text, "actors": [{"name": actor}], "detect_actors": False}).json()
    return body["sentences"][0]["actors"][0]["stance"]


def test_full_feedback_loop(capsys, tiny_predictor, tiny_model_dir, db, tmp_path):
    text = "Critics blamed Acme Corp for the losses."
    with make_client(tiny_predictor, tiny_model_dir, db, key=KEY) as client:
        before = stance(client, text, "Acme Corp")
        target = min(before["scores"], key=before["scores"].get)  # the label the model is least inclined to give
        corrections = [
            {"text": text, "actor": "Acme Corp", "stance": target},
            {"text": "Acme Corp was blamed for the losses.", "actor": "Acme Corp", "stance": target},
            {"text": "They blamed Acme Corp again.", "actor": "Acme Corp", "stance": target},
        ]
        headers = {"Authorization": f"Bearer {KEY}"}
        for row in corrections:
            assert client.post("/feedback", json=row, headers=headers).status_code == 201

        exported = tmp_path / "feedback.jsonl"
        assert main(["feedback", "export", "--db", str(db), "--out", str(exported)]) == 0
        assert [json.loads(line) for line in exported.read_text().splitlines()] == corrections

        out = tmp_path / "retrained"
        args = [
            "train",
            "--from",
            str(tiny_model_dir),
            "--feedback-db",
            str(db),
            "--out",
            str(out),
            "--epochs",
            "8",
            "--lr",
            "5e-3",
            "--batch-size",
            "3",
            "--patience",
            "8",
        ]
        assert main(args) == 0, capsys.readouterr().err
        assert not list(tmp_path.glob(".retrained.feedback.jsonl"))

        assert client.post("/admin/reload", json={"model_dir": str(out)}, headers=headers).status_code == 200
        after = stance(client, text, "Acme Corp")
        assert after["label"] == target != before["label"]
        assert after["scores"][target] > before["scores"][target]
