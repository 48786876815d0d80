"""Where the time goes for one 400-word article: a pyinstrument profile of `StancePredictor.predict`.

    .venv/bin/python benchmarks/profile_article.py [--precision fp32] [--compile on] [--repeats 5]

Prints the call tree of --repeats predictions of distinct synthetic articles, after a warm-up, and a table of
stage medians from wall-clock timers (sentence splitting, spaCy NER and linking, tokenisation, the stance and
sentiment encoder passes, the whole prediction), also written to results/profile_article_PRECISION.json
(profile_article_PRECISION_compiled.json with the encoder compiled).
See benchmarks/PROFILE.md for the findings.
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
from pyinstrument import Profiler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import article

from model import StancePredictor, default_model_path
from model.predictor import COMPILE_MODES, DEFAULT_PRECISION, PRECISIONS, DocumentInput
from model.text import split_sentences

RESULTS = Path(__file__).resolve().parent / "results"


def stages(predictor: StancePredictor, text: str) -> dict[str, float]:
    """Wall-clock seconds per stage of one prediction, run stage by stage."""
    times: dict[str, float] = {}

    def clock(name: str, fn):
        started = time.perf_counter()
        value = fn()
        times[name] = time.perf_counter() - started
        return value

    sentences = clock("sentences", lambda: split_sentences(text))
    plan = clock("ner_and_linking", lambda: predictor._plan(DocumentInput(text)))
    pairs = [pair for _, _, pair in plan.pairs]
    texts = [s.text for s in sentences]
    # The encoder memoises tokenisation, and the profiled loop has seen these texts: start each timing cold.
    predictor.encoder.clear_cache()
    items = clock("tokenise", lambda: (predictor.encode_pairs(pairs), predictor.encode_sentences(texts)))
    clock("encoder_stance", lambda: predictor._logits(items[0], "stance", None))
    clock("encoder_sentiment", lambda: predictor._logits(items[1], "sentiment", None))
    predictor.encoder.clear_cache()
    clock("whole_predict", lambda: predictor.predict(text))
    times["pairs"], times["sentences_n"] = len(pairs), len(texts)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS)
    parser.add_argument("--compile", default="off", choices=COMPILE_MODES, help="compile the encoder first")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = StancePredictor.load(default_model_path(), precision=args.precision, compile=args.compile)
    rng = random.Random(400)
    texts = [article(rng, 400) for _ in range(args.repeats + 1)]
    predictor.predict(texts[0])  # warm-up: spaCy and torch initialise lazily
    profiler = Profiler(interval=0.001)
    with profiler:
        for text in texts[1:]:
            predictor.predict(text)
    print(profiler.output_text(unicode=False, color=False, show_all=False))
    rows = [stages(predictor, text) for text in texts[1:]]
    medians = {name: statistics.median(r[name] for r in rows) for name in rows[0]}
    print(f"stage medians over {len(rows)} articles ({predictor.precision}, {args.threads} threads):")
    for name, median in medians.items():
        print(f"  {name:<18} {median * 1000:8.1f} ms" if name not in ("pairs", "sentences_n") else f"  {name:<18} {median:8.0f}")
    out = {
        "precision": f"{args.precision}: {predictor.precision} here",
        "compiled": predictor.compiled,
        "threads": args.threads,
        "articles": len(rows),
        "words_per_article": 400,
        "stage_ms_median": {k: round(v * 1000, 1) for k, v in medians.items() if k not in ("pairs", "sentences_n")},
        "pairs": medians["pairs"],
        "sentences": medians["sentences_n"],
    }
    path = RESULTS / f"profile_article_{args.precision}{'_compiled' if predictor.compiled else ''}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
