"""`stance score` throughput on a synthetic archive, against scoring one document at a time.

Writes N synthetic news articles (benchmarks/synthetic.py) to a JSONL archive, then times, in rounds whose order is
shuffled, after one untimed warm-up round on a few articles:

- `stance score` (local engine, default model and options: one worker, pair rows, JSONL) at each --batch-size given;
- a naive pipeline: the same predictor's `predict()` on one document at a time (sentences and pairs batched and
  deduplicated only within that document), writing the same pair rows to one JSONL file.

Both include loading the model once, as `stance score` does. Each round also times that load (and compile) alone,
so the report gives documents/s both with the load and after it (run time less the median load). Reports median
documents/s and pairs/s and the fastest batch size. Writes benchmarks/results/score_archive.json (or --out).

    .venv/bin/python benchmarks/score_archive.py [--articles 100] [--words 400] [--repeats 3] [--batch-sizes 16,64,256]
        [--compile auto|on|off]

With compiling on (the default of `stance score` where a C++ compiler is found), the warm-up round pays the compile
(20-40 s). Later loads in the same process reuse torch's compiled code and take under a second (`load_seconds`),
so the timed rounds show scoring speed. A fresh `stance score` process pays the compile once per worker
(`load_and_compile_s` in results/inference.json).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow
import torch
import transformers

# The project root before benchmarks/ (already on the path, for `synthetic`), whose service.py would shadow `service`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic import article

from model import default_model_path
from model.predictor import COMPILE_MODES, DEFAULT_COMPILE, DEFAULT_PRECISION
from service.batch_score import ScoreOptions, load_predictor, rows_for, run

RESULTS = Path(__file__).resolve().parent / "results"


def write_archive(path: Path, articles: int, words: int) -> None:
    rng = random.Random(7)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(articles):
            handle.write(json.dumps({"id": f"a{i}", "text": article(rng, words)}) + "\n")


def score(archive: Path, out: Path, batch_size: int, compile_mode: str) -> tuple[float, int, int]:
    """`stance score ARCHIVE --out OUT --batch-size B --compile C` in this process: seconds, documents, pairs."""
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    options = ScoreOptions(inputs=(str(archive),), out=str(out), chunk_size=batch_size, compile=compile_mode)
    summary = run(options, default_model_path(), log=io.StringIO())
    return time.perf_counter() - started, summary["documents"], summary["pairs"]


def naive(archive: Path, out: Path, compile_mode: str) -> tuple[float, int, int]:
    """Load the predictor, then `predict()` and write the pair rows one document at a time: seconds, documents, pairs."""
    started = time.perf_counter()
    options = ScoreOptions(inputs=(str(archive),), out=str(out), compile=compile_mode)
    predictor = load_predictor(str(default_model_path()), os.cpu_count() or 1, options)  # as `stance score`
    documents = pairs = 0
    with archive.open(encoding="utf-8") as source, out.open("w", encoding="utf-8") as sink:
        for line in source:
            record = json.loads(line)
            result = predictor.predict(record["text"])
            rows = rows_for(record["id"], result, "pair")
            sink.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            documents += 1
            pairs += len(rows)
    return time.perf_counter() - started, documents, pairs


def load_only(compile_mode: str) -> float:
    """Seconds to load the predictor as `stance score` does, compile included."""
    started = time.perf_counter()
    load_predictor(str(default_model_path()), os.cpu_count() or 1, ScoreOptions((), "", compile=compile_mode))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=100)
    parser.add_argument("--words", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="16,64,256", help="--batch-size values of `stance score` to time")
    parser.add_argument("--compile", choices=COMPILE_MODES, default=DEFAULT_COMPILE, help="as `stance score --compile`")
    parser.add_argument("--out", type=Path, default=RESULTS / "score_archive.json")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    modes = [f"score_batch_{b}" for b in batch_sizes] + ["naive"]
    work = Path(tempfile.mkdtemp(prefix="score-archive-"))
    try:
        archive, warmup = work / "archive.jsonl", work / "warmup.jsonl"
        write_archive(archive, args.articles, args.words)
        write_archive(warmup, 4, args.words)

        def measure(mode: str, source: Path) -> tuple[float, int, int]:
            if mode == "naive":
                return naive(source, work / "naive.jsonl", args.compile)
            return score(source, work / "scored", int(mode.removeprefix("score_batch_")), args.compile)

        for mode in modes:
            measure(mode, warmup)
        seconds: dict[str, list[float]] = {m: [] for m in modes}
        load_seconds: list[float] = []
        counts: dict[str, tuple[int, int]] = {}
        order = random.Random(5)
        for _ in range(args.repeats):
            load_seconds.append(load_only(args.compile))
            order.shuffle(modes)
            for mode in modes:
                elapsed, documents, pairs = measure(mode, archive)
                seconds[mode].append(elapsed)
                counts[mode] = (documents, pairs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if len({c for c in counts.values()}) != 1:
        raise SystemExit(f"the modes scored different numbers of documents or pairs: {counts}")
    documents, pairs = counts["naive"]
    median = {m: statistics.median(s) for m, s in seconds.items()}
    load = statistics.median(load_seconds)
    best = min(batch_sizes, key=lambda b: median[f"score_batch_{b}"])
    config = json.loads((default_model_path() / "config.json").read_text(encoding="utf-8"))
    result = {
        "archive": {"articles": args.articles, "words_per_article": args.words, "documents": documents, "pairs": pairs},
        "score": "stance score ARCHIVE --out OUT --batch-size B: local engine, 1 worker, pair rows, JSONL, default model",
        "naive": "load the predictor, then predict() and write the pair rows one document at a time (no cross-document batching)",
        "timing": f"median of {args.repeats} shuffled rounds after an untimed warm-up round; each run includes one model load",
        "documents_per_s_median": {m: round(documents / t, 3) for m, t in median.items()},
        "pairs_per_s_median": {m: round(pairs / t, 2) for m, t in median.items()},
        "load_seconds": [round(x, 2) for x in load_seconds],
        "documents_per_s_after_load": {m: round(documents / (t - load), 3) for m, t in median.items()},
        "seconds": {m: [round(x, 2) for x in s] for m, s in seconds.items()},
        "best_batch_size": best,
        "speedup_default_batch_vs_naive": round(median["naive"] / median["score_batch_64"], 3) if 64 in batch_sizes else None,
        "speedup_best_batch_vs_naive": round(median["naive"] / median[f"score_batch_{best}"], 3),
        "model": {"name": config["name"], "version": config["version"], "precision": DEFAULT_PRECISION, "compile": args.compile},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "transformers": transformers.__version__,
            "pyarrow": pyarrow.__version__,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
