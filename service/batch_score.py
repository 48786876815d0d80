"""`stance score`: turn an archive into scored rows, in committed chunks, resumable after any crash.

Documents are read in a fixed order and cut into numbered chunks. Each chunk is scored by one
worker process (each holding one predictor), written to `part-NNNNN.<ext>` through a temporary
file and an atomic rename, and only then recorded in `manifest.json` (also replaced atomically).
A rerun skips recorded chunks and redoes the rest, so a run killed at any moment and resumed
gives the same rows as an uninterrupted one, with no duplicates and none missing.
`--engine ray` (service/ray_engine.py) runs the same reading and scoring code through Ray Data.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from model.actors import ActorSpec
from model.errors import InvalidInputError, StanceError
from model.predictor import DEFAULT_PRECISION, DocumentInput, StancePredictor, resolve_compile, resolve_precision
from model.quant import resolve_int8_kernel
from model.results import DocumentResult

GRANULARITIES = ("pair", "sentence", "document")
OUTPUT_FORMATS = ("jsonl", "parquet")
ENGINES = ("local", "ray")
MANIFEST = "manifest.json"
COUNTS = ("documents", "sentences", "pairs", "failures")
JSON_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


@dataclass(frozen=True)
class SourceDoc:
    """A document as read: `error` is set when it could not be read or decoded."""

    id: str
    text: str | None
    actors: tuple[ActorSpec, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class ScoreOptions:
    inputs: tuple[str, ...]
    out: str
    fmt: str = "jsonl"
    granularity: str = "pair"
    workers: int = 1
    chunk_size: int = 64
    id_field: str = "id"
    text_field: str = "text"
    actors_file: str | None = None
    max_text_chars: int = 100_000
    precision: str = DEFAULT_PRECISION
    compile: str = "off"
    int8_kernel: str = "auto"
    relations: bool = False
    force: bool = False
    engine: str = "local"
    ray_address: str | None = None

    def fingerprint(self, model: dict[str, Any]) -> dict[str, Any]:
        """What must match for a rerun to resume into the same output."""
        return {
            "model": model,
            "inputs": list(self.inputs),
            "format": self.fmt,
            "granularity": self.granularity,
            "chunk_size": self.chunk_size,
            "id_field": self.id_field,
            "text_field": self.text_field,
            "actors_file": _file_sha(self.actors_file) if self.actors_file else None,
            "max_text_chars": self.max_text_chars,
            "precision": self.precision,
            "compile": self.compile,
            "int8_kernel": self.int8_kernel,
            "relations": self.relations,
            "engine": self.engine,
        }


def _file_sha(path: str) -> str:
    from model.io import sha256_file

    return sha256_file(path)


# ----- reading ---------------------------------------------------------------------------------------------------
def _actors(value: Any) -> tuple[ActorSpec, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        value = json.loads(value)
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(ActorSpec.parse(item))
        else:
            out.append(ActorSpec(str(item["name"]), tuple(item.get("aliases") or ())))
    return tuple(out)


def _from_record(record: dict[str, Any], where: str, options: ScoreOptions) -> SourceDoc:
    doc_id = record.get(options.id_field)
    doc_id = where if doc_id is None or doc_id == "" else str(doc_id)
    text = record.get(options.text_field)
    if not isinstance(text, str):
        return SourceDoc(doc_id, None, error=f"field {options.text_field!r} is missing or not text")
    try:
        return SourceDoc(doc_id, text, _actors(record.get("actors")))
    except (ValueError, KeyError, TypeError) as exc:
        return SourceDoc(doc_id, text, error=f"bad actors: {exc}")


def file_kind(name: str) -> str | None:
    """The kind of an input file from its name: jsonl, csv, parquet or txt; None for any other name."""
    if name.endswith(JSON_SUFFIXES):
        return "jsonl"
    return {".csv": "csv", ".parquet": "parquet", ".txt": "txt"}.get(Path(name).suffix)


def input_files(options: ScoreOptions) -> list[Path]:
    """Every input file in the fixed reading order; a folder stands for its .txt files, sorted by name."""
    files: list[Path] = []
    for raw in options.inputs:
        path = Path(raw)
        if not path.exists():
            raise InvalidInputError(f"{path}: input not found")
        if path.is_dir():
            files += sorted(path.glob("*.txt"))
        elif file_kind(path.name) in ("jsonl", "csv", "parquet"):
            files.append(path)
        else:
            raise InvalidInputError(f"{path}: unknown input type; use .jsonl[.gz], .csv, .parquet or a folder of .txt files")
    return files


def documents_in(handle: BinaryIO, name: str, options: ScoreOptions) -> Iterator[SourceDoc]:
    """The documents of the input file called `name`, read (decompressed) from `handle`."""
    kind = file_kind(name)
    if kind == "txt":
        stem = Path(name).stem
        try:
            yield SourceDoc(stem, handle.read().decode("utf-8"))
        except UnicodeDecodeError as exc:
            yield SourceDoc(stem, None, error=f"not valid UTF-8: {exc.reason} at byte {exc.start}")
    elif kind == "parquet":
        import pyarrow.parquet as pq

        for i, record in enumerate(pq.read_table(handle).to_pylist(), start=1):
            yield _from_record(record, f"{name}:{i}", options)
    elif kind == "csv":
        text = io.TextIOWrapper(handle, encoding="utf-8", errors="strict", newline="")
        for i, record in enumerate(csv.DictReader(text), start=2):
            yield _from_record(record, f"{name}:{i}", options)
    else:
        for i, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                yield SourceDoc(f"{name}:{i}", None, error=f"line {i} is not valid JSON: {exc}")
                continue
            if not isinstance(record, dict):
                yield SourceDoc(f"{name}:{i}", None, error=f"line {i} is not a JSON object")
                continue
            yield _from_record(record, f"{name}:{i}", options)


def read_documents(options: ScoreOptions) -> Iterator[SourceDoc]:
    """Every document of every input, in a fixed order. Unreadable records become error documents."""
    for path in input_files(options):
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
            yield from documents_in(handle, path.name, options)


def chunks(documents: Iterator[SourceDoc], size: int) -> Iterator[list[SourceDoc]]:
    while batch := list(islice(documents, size)):
        yield batch


# ----- rows ------------------------------------------------------------------------------------------------------
def _model_fields(model: dict[str, str]) -> dict[str, str]:
    return {"model": model["name"], "model_version": model["version"]}


def rows_for(doc_id: str, result: DocumentResult, granularity: str) -> list[dict[str, Any]]:
    """Output rows of one document. No timestamps or run-dependent values, so reruns give equal rows."""
    model = _model_fields(result.model)
    if granularity == "document":
        summary = [
            {k: getattr(a, k) for k in ("actor", "type", "mentions", "support", "oppose", "neutral", "net", "label")}
            for a in result.actors
        ]
        return [{"doc_id": doc_id, "sentences": len(result.sentences), "actors": summary, **model}]
    rows = []
    for s in result.sentences:
        sentiment = {"sentiment": s.sentiment.label, **{f"p_{k}": v for k, v in s.sentiment.scores.items()}}
        if granularity == "sentence":
            actors = [
                {
                    "actor": p.actor,
                    "mentioned": p.mentioned,
                    "stance": p.stance.label,
                    **{f"p_{k}": v for k, v in p.stance.scores.items()},
                }
                for p in s.actors
            ]
            rows.append(
                {
                    "doc_id": doc_id,
                    "sentence_index": s.index,
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    **sentiment,
                    "actors": actors,
                    **model,
                }
            )
            continue
        for p in s.actors:
            rows.append(
                {
                    "doc_id": doc_id,
                    "sentence_index": s.index,
                    "sentence_start": s.start,
                    "sentence_end": s.end,
                    "actor": p.actor,
                    "mentioned": p.mentioned,
                    "stance": p.stance.label,
                    **{f"p_{k}": v for k, v in p.stance.scores.items()},
                    "sentiment": s.sentiment.label,
                    **{f"p_sentiment_{k}": v for k, v in s.sentiment.scores.items()},
                    **model,
                }
            )
    return rows


def relation_rows(doc_id: str, result: DocumentResult) -> list[dict[str, Any]]:
    """One row per (document, sentence, holder → target)."""
    model = _model_fields(result.model)
    return [
        {"doc_id": doc_id, "sentence_index": r.sentence_index, "holder": r.holder, "target": r.target, "relation": r.label,
         **{f"p_{k}": v for k, v in r.scores.items()}, **model}
        for s in result.sentences
        for r in s.relations or ()
    ]  # fmt: skip


def parquet_schema(granularity: str):
    """The fixed Parquet schema of each granularity, and of the relations table (documented in the README)."""
    import pyarrow as pa

    model = [("model", pa.string()), ("model_version", pa.string())]
    stance_p = [("p_support", pa.float64()), ("p_oppose", pa.float64()), ("p_neutral", pa.float64())]
    if granularity == "relations":
        fields = [
            ("doc_id", pa.string()),
            ("sentence_index", pa.int64()),
            ("holder", pa.string()),
            ("target", pa.string()),
            ("relation", pa.string()),
            *stance_p,
            *model,
        ]
    elif granularity == "pair":
        fields = [
            ("doc_id", pa.string()),
            ("sentence_index", pa.int64()),
            ("sentence_start", pa.int64()),
            ("sentence_end", pa.int64()),
            ("actor", pa.string()),
            ("mentioned", pa.bool_()),
            ("stance", pa.string()),
            *stance_p,
            ("sentiment", pa.string()),
            ("p_sentiment_positive", pa.float64()),
            ("p_sentiment_negative", pa.float64()),
            ("p_sentiment_neutral", pa.float64()),
            *model,
        ]
    elif granularity == "sentence":
        actor = pa.struct([("actor", pa.string()), ("mentioned", pa.bool_()), ("stance", pa.string()), *stance_p])
        fields = [
            ("doc_id", pa.string()),
            ("sentence_index", pa.int64()),
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("text", pa.string()),
            ("sentiment", pa.string()),
            ("p_positive", pa.float64()),
            ("p_negative", pa.float64()),
            ("p_neutral", pa.float64()),
            ("actors", pa.list_(actor)),
            *model,
        ]
    else:
        summary = pa.struct(
            [
                ("actor", pa.string()),
                ("type", pa.string()),
                ("mentions", pa.int64()),
                ("support", pa.int64()),
                ("oppose", pa.int64()),
                ("neutral", pa.int64()),
                ("net", pa.float64()),
                ("label", pa.string()),
            ]
        )
        fields = [("doc_id", pa.string()), ("sentences", pa.int64()), ("actors", pa.list_(summary)), *model]
    return pa.schema(fields)


def write_atomic(path: Path, rows: list[dict[str, Any]], fmt: str, granularity: str) -> None:
    """Write `rows` to a temporary file, fsync it and rename it to `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=parquet_schema(granularity)), tmp)
    else:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# ----- workers ---------------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def load_predictor(model_dir: str, threads: int, options: ScoreOptions) -> StancePredictor:
    """The predictor of one worker, with torch limited to `threads` threads so workers do not oversubscribe the CPUs."""
    import torch

    torch.set_num_threads(threads)
    return StancePredictor.load(model_dir, precision=options.precision, compile=options.compile, int8_kernel=options.int8_kernel)


def _init_worker(model_dir: str, threads: int, options: ScoreOptions) -> None:
    _WORKER["predictor"] = load_predictor(model_dir, threads, options)


def score_part(
    predictor: StancePredictor,
    name: str,
    documents: Sequence[SourceDoc],
    options: ScoreOptions,
    run_actors: tuple[ActorSpec, ...],
) -> dict[str, int]:
    """Score `documents` and commit them as `part-NAME.*` files (rows last); returns the counts for the manifest."""
    errors: list[dict[str, str]] = []
    todo: list[tuple[str, DocumentInput]] = []
    for doc in documents:
        if doc.error is not None:
            errors.append({"id": doc.id, "error": doc.error, "error_type": "invalid_input"})
        elif not doc.text or not doc.text.strip():
            errors.append({"id": doc.id, "error": "text must not be empty", "error_type": "invalid_input"})
        elif len(doc.text) > options.max_text_chars:
            errors.append(
                {"id": doc.id, "error": f"text is longer than {options.max_text_chars} characters", "error_type": "too_large"}
            )
        else:
            todo.append((doc.id, DocumentInput(doc.text, doc.actors + run_actors, relations=options.relations)))
    results = predictor.predict_documents_safe([d for _, d in todo])
    rows: list[dict[str, Any]] = []
    relations: list[dict[str, Any]] = []
    sentences = pairs = 0
    for (doc_id, _), result in zip(todo, results, strict=True):
        if isinstance(result, StanceError):
            errors.append({"id": doc_id, "error": str(result), "error_type": result.error_type})
            continue
        sentences += len(result.sentences)
        pairs += sum(len(s.actors) for s in result.sentences)
        rows += rows_for(doc_id, result, options.granularity)
        relations += relation_rows(doc_id, result)
    out = Path(options.out)
    write_atomic(out / f"part-{name}.errors.jsonl", errors, "jsonl", options.granularity)
    if options.relations:
        write_atomic(out / f"part-{name}.relations.{options.fmt}", relations, options.fmt, "relations")
    write_atomic(out / f"part-{name}.{options.fmt}", rows, options.fmt, options.granularity)
    return {"documents": len(documents), "sentences": sentences, "pairs": pairs, "failures": len(errors)}


def score_chunk(task: tuple[int, list[SourceDoc], ScoreOptions, tuple[ActorSpec, ...]]) -> dict[str, Any]:
    """Score one numbered chunk in a local worker; returns its manifest key and counts."""
    index, documents, options, run_actors = task
    return {"part": str(index), **score_part(_WORKER["predictor"], f"{index:05d}", documents, options, run_actors)}


def _local_parts(
    options: ScoreOptions, model_dir: Path, run_actors: tuple[ActorSpec, ...], done_chunks: set[int]
) -> Iterator[dict[str, Any]]:
    """The local engine: score the chunks not yet done, in this process or a pool of `options.workers`."""
    tasks = (
        (i, docs, options, run_actors)
        for i, docs in enumerate(chunks(read_documents(options), options.chunk_size))
        if i not in done_chunks
    )
    threads = max(1, (os.cpu_count() or 1) // options.workers)
    if options.workers == 1:
        _init_worker(str(model_dir), threads, options)
        yield from map(score_chunk, tasks)
        return
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(options.workers, _init_worker, (str(model_dir), threads, options))
    try:
        yield from pool.imap_unordered(score_chunk, tasks)
    finally:
        pool.terminate()
        pool.join()


# ----- the run ---------------------------------------------------------------------------------------------------
def _read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / MANIFEST)


def model_identity(model_dir: Path) -> dict[str, Any]:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    weights = config.get("files", {}).get("weights.safetensors", "")
    return {"name": config["name"], "version": config["version"], "weights_sha256": weights}


def _progress(done: int, total: int | None, pairs: int, started: float) -> str:
    elapsed = max(1e-9, time.monotonic() - started)
    rate = done / elapsed
    line = f"\r{done}{'' if total is None else f'/{total}'} documents  {rate:.1f} docs/s  {pairs / elapsed:.1f} pairs/s"
    if total is not None:
        line += f"  eta {(total - done) / rate if rate > 0 else 0.0:.0f}s"
    return line + " "


def _open_output(options: ScoreOptions, model_dir: Path) -> dict[str, Any]:
    """The output folder's manifest: the previous run's when its settings match, else a new one."""
    out = Path(options.out)
    fingerprint = options.fingerprint(model_identity(model_dir))
    manifest = _read_manifest(out)
    if manifest is not None and manifest["fingerprint"] != fingerprint:
        if not options.force:
            changed = sorted(k for k in fingerprint if manifest["fingerprint"].get(k) != fingerprint[k])
            raise InvalidInputError(
                f"{out} was written with other settings ({', '.join(changed)} differ); use --force to start over"
            )
        shutil.rmtree(out)
        manifest = None
    out.mkdir(parents=True, exist_ok=True)
    if manifest is None:
        manifest = {"fingerprint": fingerprint, "completed": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _write_manifest(out, manifest)
    return manifest


def run(options: ScoreOptions, model_dir: Path, log=sys.stderr) -> dict[str, Any]:
    """Score every input document into `options.out`, resuming a previous run of the same options."""
    if options.granularity not in GRANULARITIES:
        raise InvalidInputError(f"--granularity must be one of {GRANULARITIES}")
    if options.fmt not in OUTPUT_FORMATS:
        raise InvalidInputError(f"--format must be one of {OUTPUT_FORMATS}")
    if options.engine not in ENGINES:
        raise InvalidInputError(f"--engine must be one of {ENGINES}")
    if options.ray_address and options.engine != "ray":
        raise InvalidInputError("--ray-address needs --engine ray")
    if options.workers < 1 or options.chunk_size < 1:
        raise InvalidInputError("--workers and --batch-size must be at least 1")
    # Here rather than in the workers, where a load error would only make the pool restart them.
    precision = resolve_precision(options.precision, resolve_compile(options.compile))
    resolve_int8_kernel(options.int8_kernel, used=precision == "int8")
    run_actors: tuple[ActorSpec, ...] = ()
    if options.actors_file:
        run_actors = tuple(
            ActorSpec.parse(line) for line in Path(options.actors_file).read_text(encoding="utf-8").splitlines() if line.strip()
        )
    input_files(options)  # a missing or unknown input fails before the output folder is made
    if options.engine == "ray":
        from service import ray_engine  # raises InvalidInputError when Ray is not installed

    out = Path(options.out)
    manifest = _open_output(options, model_dir)
    total: int | None
    if options.engine == "ray":
        done = ray_engine.resume(out, manifest)
        parts = ray_engine.score_parts(options, model_dir, run_actors, done)
        total = None
    else:
        parts = _local_parts(options, model_dir, run_actors, {int(k) for k in manifest["completed"]})
        total = sum(1 for _ in read_documents(options))
    totals = {k: sum(record[k] for record in manifest["completed"].values()) for k in COUNTS}
    resumed = totals["documents"]
    started = time.monotonic()
    with closing(parts):
        for record in parts:
            manifest["completed"][record["part"]] = {k: record[k] for k in COUNTS}
            _write_manifest(out, manifest)
            for k in COUNTS:
                totals[k] += record[k]
            log.write(
                _progress(totals["documents"] - resumed, None if total is None else total - resumed, totals["pairs"], started)
            )
            log.flush()
    log.write("\n")
    merge_errors(out)
    elapsed = round(time.monotonic() - started, 2)
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest["summary"] = {**totals, "resumed_documents": resumed, "elapsed_seconds": elapsed}
    _write_manifest(out, manifest)
    return manifest["summary"]


def merge_errors(out: Path) -> int:
    """Gather the per-chunk error rows into OUT.errors.jsonl (rebuilt whole, so reruns never duplicate)."""
    target = out.with_name(out.name + ".errors.jsonl")
    count = 0
    tmp = target.with_name(f".{target.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for part in sorted(out.glob("part-*.errors.jsonl")):
            for line in part.read_text(encoding="utf-8").splitlines():
                handle.write(line + "\n")
                count += 1
    os.replace(tmp, target)
    return count


def read_rows(out: Path, table: str = "rows") -> list[dict[str, Any]]:
    """Every output row (`table` "rows") or relation row ("relations"), for tests and small archives."""
    rows: list[dict[str, Any]] = []
    parts = [p for p in out.glob("part-*") if not p.name.endswith(".errors.jsonl") and not p.name.startswith(".")]
    for part in sorted(p for p in parts if (".relations." in p.name) == (table == "relations")):
        if part.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows += pq.read_table(part).to_pylist()
        else:
            rows += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines()]
    return rows


def file_digest(rows: Sequence[dict[str, Any]]) -> str:
    """Order-independent digest of a multiset of rows."""
    return hashlib.sha256("\n".join(sorted(json.dumps(r, sort_keys=True) for r in rows)).encode()).hexdigest()
