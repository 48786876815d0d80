"""benchmarks/load.py end to end, briefly: a real server with the tiny model, 4 clients for 3 seconds."""

import importlib.util
import json
import sys
from pathlib import Path

LOAD = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"


def test_load_generator_runs_without_errors(tiny_model_dir, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("benchmark_load", LOAD)
    load = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, load)  # its dataclass looks its module up
    spec.loader.exec_module(load)
    out = tmp_path / "load.json"
    argv = ["--model", str(tiny_model_dir), "--clients", "4", "--duration", "3", "--warmup", "1", "--out", str(out)]
    code = load.main(argv)
    result = json.loads(out.read_text())
    assert result["errors"] == 0 and result["error_kinds"] == {} and result["warmup"]["errors"] == 0
    assert result["requests"] > 0 and result["documents"] >= result["requests"]
    assert code == (0 if result["passed"] else 1)  # memory growth over 20% alone may fail a run this short
    assert set(result) == {
        "settings",
        "warmup",
        "requests",
        "errors",
        "error_kinds",
        "documents",
        "seconds",
        "requests_per_s",
        "documents_per_s",
        "latency_ms",
        "routes",
        "server_rss_mb",
        "server_rss_timeline_mb",
        "machine",
        "passed",
    }
    timeline = result["server_rss_timeline_mb"]
    assert timeline[0][0] == 0.0 and all(len(t) == 2 and t[1] > 0 for t in timeline)
    assert set(result["routes"]) == {"/classify", "/classify/batch"}
    assert set(result["latency_ms"]) == set(result["routes"]["/classify"]["latency_ms"]) == {"p50", "p95", "p99"}
    assert set(result["server_rss_mb"]) == {"after_warmup", "end", "end_over_warmup"}
    assert result["server_rss_mb"]["after_warmup"] > 0
