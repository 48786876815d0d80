"""Measure actor detection against hand-annotated news-style articles (training/examples/articles.jsonl).

Gold lists, per actor, its canonical name and the surface strings that mention it; every
whole-word occurrence of a surface string is a gold mention of that actor.
Reports actor-level and mention-level precision and recall.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model.actors import ActorFinder
from model.text import split_sentences
from training.data import find_mentions

ARTICLES = Path(__file__).resolve().parent / "examples" / "articles.jsonl"


def _prf(tp: int, predicted: int, gold: int) -> dict[str, float]:
    precision = tp / predicted if predicted else 0.0
    recall = tp / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "predicted": predicted,
        "gold": gold,
    }


def evaluate_detection(path: Path = ARTICLES, finder: ActorFinder | None = None) -> dict[str, Any]:
    finder = finder or ActorFinder()
    actor_tp = actor_pred = actor_gold = 0
    mention_tp = mention_pred = mention_gold = 0
    errors: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        article = json.loads(line)
        text = article["text"]
        gold_mentions: dict[tuple[int, int], str] = {}
        surfaces = sorted(((m, a["name"]) for a in article["actors"] for m in a["mentions"]), key=lambda x: -len(x[0]))
        for surface, name in surfaces:  # longest first; a shorter form inside a longer one is not a mention
            for start, end in find_mentions(text, surface):
                if text[start:end] == surface and not any(a < end and start < b for a, b in gold_mentions):
                    gold_mentions[(start, end)] = name
        found = finder.find(split_sentences(text))
        predicted_mentions = {(m.start, m.end): a.name for a in found for m in a.mentions}
        gold_names = {a["name"] for a in article["actors"]}
        predicted_names = {a.name for a in found}
        actor_tp += len(gold_names & predicted_names)
        actor_pred += len(predicted_names)
        actor_gold += len(gold_names)
        mention_tp += sum(1 for span, name in predicted_mentions.items() if gold_mentions.get(span) == name)
        mention_pred += len(predicted_mentions)
        mention_gold += len(gold_mentions)
        errors.append(
            {
                "id": article["id"],
                "spurious_actors": sorted(predicted_names - gold_names),
                "missed_actors": sorted(gold_names - predicted_names),
            }
        )
    return {
        "articles": len(errors),
        "actors": _prf(actor_tp, actor_pred, actor_gold),
        "mentions": _prf(mention_tp, mention_pred, mention_gold),
        "errors": errors,
    }


HELD_OUT = ARTICLES.with_name("articles_heldout.jsonl")


def main() -> None:
    """Evaluate both annotated sets and write benchmarks/results/actor_detection.json."""
    finder = ActorFinder()
    report = {path.name: evaluate_detection(path, finder) for path in (ARTICLES, HELD_OUT)}
    out = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "actor_detection.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({name: {k: r[k] for k in ("actors", "mentions")} for name, r in report.items()}, indent=2))


if __name__ == "__main__":
    main()
