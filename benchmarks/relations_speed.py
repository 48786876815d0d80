"""Does asking for nothing cost nothing? Predictor throughput with relations off and on, in one run.

Scores the same synthetic 400-word articles on the default path (precision auto), interleaved and repeated, three
ways: the default model with its relation head stripped (the path before relations existed), the same model with
relations off, and relations on.
Modes run in a shuffled order each round, after one untimed warm-up round. Reports median documents/s.
Writes benchmarks/results/relations_speed.json.

    .venv/bin/python benchmarks/relations_speed.py [--articles 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import article

from model import StancePredictor, default_model_path
from model.predictor import DEFAULT_PRECISION, DocumentInput, resolve_precision

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(11)
    texts = [article(rng, 400) for _ in range(args.articles)]
    predictor = StancePredictor.load(default_model_path(), precision=DEFAULT_PRECISION)
    stripped = StancePredictor.load(default_model_path(), precision=DEFAULT_PRECISION)
    stripped.network.relation_head, stripped.config.relation_labels = None, []
    timings: dict[str, list[float]] = {"no_relation_head": [], "off": [], "on": []}
    counts: dict[str, int] = {}
    order = random.Random(5)
    for repeat in range(args.repeats + 1):  # the first round warms up spaCy, torch and caches, and is not timed
        modes = list(timings)
        order.shuffle(modes)
        for mode in modes:
            documents = [DocumentInput(t, relations=mode == "on") for t in texts]
            started = time.perf_counter()
            results = (stripped if mode == "no_relation_head" else predictor).predict_documents(documents)
            if repeat:
                timings[mode].append(time.perf_counter() - started)
            counts[mode] = sum(len(s.relations or ()) for r in results for s in r.sentences)
    out = {
        "articles": args.articles,
        "words_per_article": 400,
        "repeats": args.repeats,
        "documents_per_s_median": {m: round(args.articles / statistics.median(t), 3) for m, t in timings.items()},
        "seconds": {m: [round(x, 3) for x in t] for m, t in timings.items()},
        "relations_scored": counts,
        "off_vs_no_head_time_ratio": round(statistics.median(timings["off"]) / statistics.median(timings["no_relation_head"]), 3),
        "on_vs_off_time_ratio": round(statistics.median(timings["on"]) / statistics.median(timings["off"]), 3),
        "threads": torch.get_num_threads(),
        "precision": f"{DEFAULT_PRECISION}: {resolve_precision(DEFAULT_PRECISION)} here",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "relations_speed.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
