"""benchmarks/score_archive.py's two modes on a two-article archive: both load the predictor as `stance score` does,
and so does its load-only timing."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.real_model
def test_score_and_naive_modes_score_the_same_pairs(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # for its `synthetic` import, as when run as a script
    spec = importlib.util.spec_from_file_location("benchmark_score_archive", BENCHMARKS / "score_archive.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    archive = tmp_path / "archive.jsonl"
    module.write_archive(archive, 2, 60)
    _, documents, pairs = module.score(archive, tmp_path / "scored", 64, "off")
    assert documents == 2 and pairs > 0
    assert module.naive(archive, tmp_path / "naive.jsonl", "off")[1:] == (documents, pairs)
    assert module.load_only("off") > 0
