"""`stance score --engine ray`: the local engine's reading and scoring, run through Ray Data.

Ray reads each input file whole (`read_binary_files`, which also decompresses .gz) and a task per file parses it
with the local engine's parser, so ids, line numbers and error records are the same. A pool of actors, each
holding one predictor, scores batches of `--batch-size` documents with the local engine's `score_part`: each
batch becomes `part-KEY.*` files, KEY a hash of where its documents are (input file number, document number in that
file), then `done-KEY.json`, written last, lists those places. A rerun deletes part files that have no `done-` file
and skips the documents listed, so it scores each document once even where ids repeat; a batch that Ray retries
after an actor died rewrites the same files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from model.actors import ActorSpec
from model.errors import InvalidInputError
from model.predictor import StancePredictor
from service.batch_score import (
    COUNTS,
    ScoreOptions,
    SourceDoc,
    documents_in,
    input_files,
    load_predictor,
    score_part,
    write_atomic,
)

try:
    import ray
    import ray.data
except ImportError as exc:
    raise InvalidInputError("--engine ray needs Ray: pip install 'actor-stance[ray]'") from exc


def resume(out: Path, manifest: dict[str, Any]) -> set[str]:
    """Delete part files no `done-` file commits, set the manifest's completed parts from the `done-` files,
    and return the documents they list."""
    done: set[str] = set()
    completed: dict[str, dict[str, int]] = {}
    for marker in out.glob("done-*.json"):
        record = json.loads(marker.read_text(encoding="utf-8"))
        done.update(record["documents_done"])
        completed[marker.name.removeprefix("done-").removesuffix(".json")] = {k: record[k] for k in COUNTS}
    for part in out.glob("part-*"):
        if part.name.split(".")[0].removeprefix("part-") not in completed:
            part.unlink()
    manifest["completed"] = completed
    return done


def _parse_file(
    row: dict[str, Any], options: ScoreOptions, numbers: dict[str, int], done: frozenset[str]
) -> list[dict[str, Any]]:
    """The documents of one input file that are not done yet, each pickled (Arrow has no type for them) beside
    its place: "FILE:N", FILE its number among the input files, N its number in the file."""
    documents = documents_in(io.BytesIO(row["bytes"]), Path(row["path"]).name, options)
    file = numbers[row["path"]]
    return [{"place": f"{file}:{n}", "doc": pickle.dumps(doc)} for n, doc in enumerate(documents) if f"{file}:{n}" not in done]


class _Scorer:
    """A Ray actor that loads the predictor once and commits one part per batch."""

    def __init__(self, model_dir: str, options: ScoreOptions, run_actors: tuple[ActorSpec, ...], threads: int) -> None:
        self.predictor = load_predictor(model_dir, threads, options)
        self.options = options
        self.run_actors = run_actors

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        documents: list[SourceDoc] = [pickle.loads(doc) for doc in batch["doc"]]
        places = [str(place) for place in batch["place"]]
        key = hashlib.sha256("\n".join(places).encode()).hexdigest()[:32]
        counts = score_part(self.predictor, key, documents, self.options, self.run_actors)
        marker = {"documents_done": places, **counts}
        write_atomic(Path(self.options.out) / f"done-{key}.json", [marker], "jsonl", self.options.granularity)
        return {"part": [key], **{k: [v] for k, v in counts.items()}}


def _threads_per_actor(workers: int) -> int:
    """The cluster's CPUs shared among the actors, but no more than the smallest node has, so every actor fits."""
    cpus = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]]
    cpus = [int(c) for c in cpus if c >= 1]
    return max(1, min(min(cpus, default=1), sum(cpus) // workers))


def score_parts(
    options: ScoreOptions, model_dir: Path, run_actors: tuple[ActorSpec, ...], done: set[str]
) -> Iterator[dict[str, Any]]:
    """Score the documents whose places are not in `done`; yields each committed part's key and counts.

    Uses the Ray instance this process is connected to, else connects to `options.ray_address`, or starts a new
    local one when that is None (and shuts down what it started). Paths must be the same on every node.
    """
    StancePredictor.verify(model_dir)  # a broken model fails here, not inside an actor
    paths = [str(path.resolve()) for path in input_files(options)]
    if not paths:
        return
    options = dataclasses.replace(options, out=str(Path(options.out).resolve()))
    started_here = not ray.is_initialized()
    if started_here:
        # "local" starts a new instance even where `ray start` left one running or its address behind.
        ray.init(address=options.ray_address or "local", include_dashboard=False, logging_level=logging.WARNING)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        threads = _threads_per_actor(options.workers)
        # Reading and parsing reserve no CPU: the actors may hold all of them, and a read that waited for one would
        # never start.
        files = ray.data.read_binary_files(paths, include_paths=True, num_cpus=0)
        numbers = {path: i for i, path in enumerate(paths)}
        documents = files.flat_map(
            _parse_file, fn_kwargs={"options": options, "numbers": numbers, "done": frozenset(done)}, num_cpus=0
        )
        parts = documents.map_batches(
            _Scorer,
            fn_constructor_kwargs={
                "model_dir": str(model_dir.resolve()),
                "options": options,
                "run_actors": run_actors,
                "threads": threads,
            },
            batch_size=options.chunk_size,
            compute=ray.data.ActorPoolStrategy(size=options.workers),
            num_cpus=threads,
        )
        for row in parts.iter_rows():
            yield {"part": str(row["part"]), **{k: int(row[k]) for k in COUNTS}}
    finally:
        if started_here:
            ray.shutdown()
