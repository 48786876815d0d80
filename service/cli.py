"""The `stance` console script: serve, classify, train, evaluate, score."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from model.errors import DataFormatError, InvalidInputError, ModelLoadError, StanceError
from model.predictor import (
    COMPILE_HELP,
    COMPILE_MODES,
    DEFAULT_COMPILE,
    DEFAULT_PRECISION,
    INT8_KERNEL_HELP,
    PRECISION_HELP,
    PRECISIONS,
)
from model.quant import INT8_KERNEL_CHOICES

PRECISION_ARG_HELP = f"{PRECISION_HELP} (default: {DEFAULT_PRECISION})"
INT8_KERNEL_ARG_HELP = f"{INT8_KERNEL_HELP} (default: STANCE_INT8_KERNEL or auto)"

# Exit codes: 0 ok, 1 unexpected error, 2 bad input or data, 3 model could not be loaded.
EXIT_INVALID = 2
EXIT_MODEL = 3


def _label_map(text: str | None) -> dict[str, str] | None:
    """Parse `oppose=against,support=favor` (ours=theirs) into {theirs: ours}."""
    if not text:
        return None
    mapping: dict[str, str] = {}
    for part in text.split(","):
        ours, sep, theirs = part.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            raise InvalidInputError(f"--label-map entry {part!r} is not ours=theirs")
        mapping[theirs.strip()] = ours.strip()
    return mapping


def _read_text(args: argparse.Namespace) -> str:
    if args.file and args.text:
        raise InvalidInputError("give TEXT or --file, not both")
    if args.file:
        try:
            return Path(args.file).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise InvalidInputError(f"{args.file}: file not found") from exc
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{args.file}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if args.text in (None, "-"):
        return sys.stdin.read()
    return args.text


def _load_predictor(path: str | None, precision: str = "fp32", int8_kernel: str = "auto"):
    from model import StancePredictor, default_model_path

    return StancePredictor.load(path or default_model_path(), precision=precision, int8_kernel=int8_kernel)


def format_document(result: dict) -> str:
    """A readable table: each sentence with its sentiment and actor stances, then the actor summary."""
    lines = []
    for s in result["sentences"]:
        sentiment = s["sentiment"]
        lines.append(f"[{s['index']}] {s['text']}")
        lines.append(f"    sentiment  {sentiment['label']:<8} {sentiment['scores'][sentiment['label']]:.2f}")
        for a in s["actors"]:
            stance = a["stance"]
            implicit = "" if a.get("mentioned", True) else "  (not mentioned)"
            lines.append(f"    {a['actor']:<28} {stance['label']:<8} {stance['scores'][stance['label']]:.2f}{implicit}")
    for r in result.get("relations") or []:
        if not lines or not lines[-1].startswith("relation"):
            lines.append("")
        lines.append(f"relation  {r['holder']} → {r['target']}: {r['label']} (net {r['net']:+.3f}, sentences {r['sentences']})")
    if result["actors"]:
        lines.append("")
        lines.append(f"{'actor':<28} {'type':<7} {'mentions':>8} {'support':>8} {'oppose':>7} {'neutral':>8} {'net':>7}  label")
        for a in result["actors"]:
            lines.append(
                f"{a['actor']:<28} {a['type']:<7} {a['mentions']:>8} {a['support']:>8} {a['oppose']:>7} "
                f"{a['neutral']:>8} {a['net']:>7.3f}  {a['label']}"
            )
    if not result["sentences"]:
        lines.append("(no sentences)")
    return "\n".join(lines)


def cmd_classify(args: argparse.Namespace) -> int:
    from model.actors import ActorSpec

    text = _read_text(args)
    actors = [ActorSpec.parse(a) for a in args.actor or []]
    if args.no_detect and not actors:
        raise InvalidInputError("--no-detect needs at least one --actor")
    predictor = _load_predictor(args.model, args.precision, args.int8_kernel)
    result = predictor.predict(text, actors, detect_actors=not args.no_detect, relations=args.relations).to_dict()
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else format_document(result))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.data import load_file
    from training.evaluate import compare, evaluate_data, format_delta, format_report

    models = args.model or [None]
    if len(models) > 2:
        raise InvalidInputError("--model may be given at most twice")
    data = load_file(args.data, args.format)
    errors: list[dict] | None = [] if args.errors else None
    reports = []
    for i, folder in enumerate(models):
        predictor = _load_predictor(folder, args.precision)
        reports.append(evaluate_data(predictor, data, errors if i == len(models) - 1 else None))
    if args.errors:
        with open(args.errors, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in errors or [])
    if len(reports) == 1:
        text = "\n\n".join(format_report(h, r) for h, r in reports[0].items() if r is not None)
        print(json.dumps(reports[0], indent=2) if args.json else text)
        return 0
    delta = compare(reports[0], reports[1])
    if args.json:
        print(json.dumps({"models": models, "reports": reports, "delta": delta}, indent=2))
        return 0
    blocks = []
    for folder, report in zip(models, reports, strict=True):
        blocks.append(f"== {folder}\n" + "\n\n".join(format_report(h, r) for h, r in report.items() if r is not None))
    blocks.append("\n\n".join(format_delta(h, d) for h, d in delta.items() if d is not None))
    print("\n\n".join(blocks))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    overrides: dict[str, str] = {"model_dir": args.model} if args.model else {}
    for name in ("precision", "compile", "int8_kernel"):
        if getattr(args, name):
            overrides[name] = getattr(args, name)
    settings = Settings(**overrides)
    from model import StancePredictor

    # Refuse to start on a missing or corrupt model rather than serve garbage; loading itself runs after start-up.
    StancePredictor.verify(settings.model_dir)
    # One JSON line per request from our own logger; uvicorn's access log would repeat it.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    service_log = logging.getLogger("stance")
    service_log.addHandler(handler)
    service_log.setLevel(logging.INFO)
    service_log.propagate = False
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import TrainConfig
    from training.pipeline import DataSpec, train_model

    try:
        config = TrainConfig(
            input_format=args.input_format,
            stance_pooling=args.stance_pooling,
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
            layer_decay=args.layer_decay,
            sentiment_weight=args.sentiment_weight,
            relation_training=args.relation_training,
            relation_weight=args.relation_weight,
            max_length=args.max_length,
            patience=args.patience,
            threads=args.threads,
            device=args.device,
            class_balance=args.class_balance,
            multi_actor_repeat=args.multi_actor_repeat,
            adversarial=args.adversarial,
        )
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc
    data = list(args.data or [])
    if args.feedback_db:
        from service.feedback import FeedbackStore

        if not Path(args.feedback_db).is_file():
            raise InvalidInputError(f"{args.feedback_db}: feedback database not found")
        exported = Path(args.out).parent / f".{Path(args.out).name}.feedback.jsonl"
        FeedbackStore(args.feedback_db).export(exported)
        data.append(str(exported))
    if not data and not args.relation_data:
        raise InvalidInputError("give --data FILE, --relation-data FILE or --feedback-db PATH")
    spec = DataSpec(
        train=data,
        dev=args.dev or (),
        sentiment_corpora=args.sentiment_corpus or (),
        relation_train=args.relation_data or (),
        relation_dev=args.relation_dev or (),
        fmt=args.format,
        label_map=_label_map(args.label_map),
        sentiment_per_epoch=args.sentiment_per_epoch,
        relation_per_epoch=args.relation_per_epoch,
        skip_invalid=args.skip_invalid,
    )
    start = getattr(args, "from")
    try:
        metrics = train_model(
            spec, config, args.out, start=start, name=args.name, version=args.model_version, command=["stance", *args.argv]
        )
    finally:
        if args.feedback_db:
            Path(data[-1]).unlink(missing_ok=True)
    print(
        json.dumps(
            {
                "out": str(args.out),
                "best_epoch": metrics["best_epoch"],
                "skipped_rows": metrics["skipped_rows"],
                "dev": {k: {h: v[h]["macro_f1"] for h in v} for k, v in metrics["dev"].items()},
            },
            indent=2,
        )
    )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from model import default_model_path
    from service.batch_score import ScoreOptions, run

    options = ScoreOptions(
        inputs=tuple(args.inputs),
        out=args.out,
        fmt=args.format,
        granularity=args.granularity,
        workers=args.workers,
        chunk_size=args.batch_size,
        id_field=args.id_field,
        text_field=args.text_field,
        actors_file=args.actors_file,
        precision=args.precision,
        compile=args.compile,
        int8_kernel=args.int8_kernel,
        relations=args.relations,
        force=args.force,
        engine=args.engine,
        ray_address=args.ray_address,
    )
    model_dir = Path(args.model) if args.model else default_model_path()
    summary = run(options, model_dir)
    print(
        f"documents {summary['documents']}  sentences {summary['sentences']}  pairs {summary['pairs']}  "
        f"failures {summary['failures']}  elapsed {summary['elapsed_seconds']}s"
        + (f"  (resumed after {summary['resumed_documents']} documents)" if summary["resumed_documents"] else "")
    )
    return 0


def cmd_feedback_export(args: argparse.Namespace) -> int:
    from service.feedback import FeedbackStore

    if not Path(args.db).is_file():
        raise InvalidInputError(f"{args.db}: feedback database not found")
    count = FeedbackStore(args.db).export(args.out)
    print(f"wrote {count} rows to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stance", description="Stance toward named actors, and sentiment, in news text.")
    int8_kernel = os.environ.get("STANCE_INT8_KERNEL", "auto")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start the HTTP service")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", help="model folder (default: STANCE_MODEL_DIR or the shipped model)")
    p.add_argument("--precision", choices=PRECISIONS, help=f"default: STANCE_PRECISION or {DEFAULT_PRECISION}")
    p.add_argument("--compile", choices=COMPILE_MODES, help=f"{COMPILE_HELP} (default: STANCE_COMPILE or {DEFAULT_COMPILE})")
    p.add_argument("--int8-kernel", choices=INT8_KERNEL_CHOICES, help=INT8_KERNEL_ARG_HELP)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("classify", help="classify one document and print per-sentence stance and sentiment")
    p.add_argument("text", nargs="?", help="the text, or - for standard input")
    p.add_argument("--file", help="read the text from a UTF-8 file")
    p.add_argument("--actor", action="append", help='explicit actor with aliases: "Ukraine=Kyiv,Kiev" (repeatable)')
    p.add_argument("--no-detect", action="store_true", help="score only the --actor actors")
    p.add_argument("--relations", action="store_true", help="also score who supports or opposes whom")
    p.add_argument("--json", action="store_true", help="print the JSON that POST /classify returns")
    p.add_argument("--model", help="model folder (default: the shipped model)")
    p.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION, help=PRECISION_ARG_HELP)
    p.add_argument("--int8-kernel", choices=INT8_KERNEL_CHOICES, default=int8_kernel, help=INT8_KERNEL_ARG_HELP)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("evaluate", help="score a model on labelled data")
    p.add_argument("--data", required=True, help="NewsMTSC JSONL, or the labelled JSONL/CSV format")
    p.add_argument("--format", default="auto", choices=["auto", "newsmtsc", "jsonl", "csv", "parquet", "directed"])
    p.add_argument("--model", action="append", help="model folder (default: the shipped model); twice to compare two models")
    p.add_argument("--errors", help="write the misclassified items (of the last model) to this JSONL file")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32 (default): the exact model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="fine-tune a model on labelled data")
    p.add_argument("--data", action="append", help="labelled file (repeatable)")
    p.add_argument("--dev", action="append", help="dev file (repeatable); default: a stratified 10%% hold-out")
    p.add_argument("--sentiment-corpus", action="append", help="extra sentence-sentiment corpus: SST-2 TSV or TweetEval JSONL")
    p.add_argument("--format", default="auto", choices=["auto", "newsmtsc", "jsonl", "csv", "parquet", "directed"])
    p.add_argument("--from", default="default", help="default (the shipped model), base (fresh heads), or a model folder")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--input-format", default="markers", choices=["markers", "pair", "markers+pair"])
    p.add_argument(
        "--stance-pooling",
        default="sentence+actor",
        choices=["sentence+actor", "actor"],
        help="what the stance head reads: the pooled sentence and the actor's markers, or the markers alone",
    )
    p.add_argument("--layer-decay", type=float, default=1.0)
    p.add_argument("--sentiment-weight", type=float, default=0.5)
    p.add_argument("--sentiment-per-epoch", type=int, default=None)
    p.add_argument("--relation-data", action="append", help="relation rows only (holder → target), e.g. a directed TSV")
    p.add_argument("--relation-dev", action="append", help="relation dev rows only, e.g. a directed TSV")
    p.add_argument(
        "--relation-training",
        default="separate",
        choices=["separate", "joint"],
        help="relation head: after the other heads on the frozen encoder, or in the same loop as them (updates the encoder)",
    )
    p.add_argument("--relation-weight", type=float, default=0.5, help="joint: weight of the relation loss")
    p.add_argument(
        "--relation-per-epoch",
        type=int,
        default=4000,
        help="joint: relation pairs drawn per epoch (about +30%% epoch time on NewsMTSC + 3,000 sentiment sentences)",
    )
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, or auto (cuda when available)")
    p.add_argument(
        "--class-balance",
        type=float,
        default=0.0,
        help="weight the stance loss by inverse class frequency to this power (0: off, 1: fully balanced)",
    )
    p.add_argument(
        "--multi-actor-repeat",
        type=int,
        default=1,
        help="show stance pairs whose sentence has another labelled actor this many times per epoch (default 1)",
    )
    p.add_argument(
        "--adversarial",
        type=float,
        default=0.0,
        help="adversarial training (FGM): also train each batch with its word embeddings moved this far (L2 norm per "
        "example) along the loss gradient; 0: off (default); 0.1 was measured on NewsMTSC, 0.3 was too strong; "
        "doubles the time per step",
    )
    p.add_argument("--label-map", help="map your label names onto ours: oppose=against,support=favor")
    p.add_argument("--skip-invalid", action="store_true", help="skip bad rows (and report how many) instead of stopping")
    p.add_argument("--name", default="actor-stance")
    p.add_argument("--model-version", default="0.1.0")
    p.add_argument("--feedback-db", help="also train on the rows stored by POST /feedback in this SQLite file")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("score", help="batch-score an archive into resumable part files")
    p.add_argument("inputs", nargs="+", help="JSONL (.gz), CSV, Parquet, or a folder of .txt files (file name = id)")
    p.add_argument("--out", required=True, help="output folder; failures go to OUT.errors.jsonl")
    p.add_argument("--format", default="jsonl", choices=["jsonl", "parquet"])
    p.add_argument("--granularity", default="pair", choices=["pair", "sentence", "document"])
    p.add_argument("--workers", type=int, default=1, help="processes (with --engine ray: actors), each holding one predictor")
    p.add_argument("--batch-size", type=int, default=64, help="documents per committed chunk")
    p.add_argument("--id-field", default="id")
    p.add_argument("--text-field", default="text")
    p.add_argument("--actors-file", help='actors for the whole run, one "Name=alias1,alias2" per line')
    p.add_argument("--engine", default="local", choices=["local", "ray"], help="ray: run through Ray Data (needs the ray extra)")
    p.add_argument("--ray-address", help="with --engine ray: connect to this Ray cluster (default: start a local Ray)")
    p.add_argument("--force", action="store_true", help="start over when the output was written with other settings")
    p.add_argument("--relations", action="store_true", help="also write a relations table (part-*.relations.*)")
    p.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION, help=PRECISION_ARG_HELP)
    p.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        default=os.environ.get("STANCE_COMPILE", DEFAULT_COMPILE),
        help=f"{COMPILE_HELP}; each worker compiles once (default: STANCE_COMPILE or {DEFAULT_COMPILE})",
    )
    p.add_argument("--int8-kernel", choices=INT8_KERNEL_CHOICES, default=int8_kernel, help=INT8_KERNEL_ARG_HELP)
    p.add_argument("--model", help="model folder (default: the shipped model)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("feedback", help="work with corrections stored by POST /feedback")
    feedback = p.add_subparsers(dest="feedback_command", required=True)
    p = feedback.add_parser("export", help="write the stored rows in the labelled JSONL format")
    p.add_argument("--db", default="stance-feedback.sqlite3", help="the service's STANCE_FEEDBACK_DB")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_feedback_export)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwinding like Ctrl-C.

    Not a bare KeyboardInterrupt: when one passes through code that exec() runs from a string (a dataclass being
    defined during a lazy import), CPython 3.11 ends `python -m service.cli`, as sweeps run it, by SIGINT instead
    of with main()'s exit code.
    """


def _interrupt(signum: int, _frame: object) -> None:
    raise Terminated(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if args.command in ("train", "score") and argv is None:
        # SIGTERM unwinds like Ctrl-C, so temporary files are removed and no half-written output is left.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except DataFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except InvalidInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except ModelLoadError as exc:
        print(f"error: cannot load model: {exc}", file=sys.stderr)
        return EXIT_MODEL
    except StanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
