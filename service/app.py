"""The FastAPI app: routes, error contract, limits, micro-batching, metrics, admin reload."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.actors import ActorSpec
from model.errors import (
    ComputeBudgetError,
    DataFormatError,
    InputTooLargeError,
    InvalidInputError,
    ModelLoadError,
    ModelNotReadyError,
    StanceError,
)
from model.io import read_json
from model.predictor import DocumentInput, StancePredictor, cpu_features, resolve_compile, resolve_precision
from service.batching import MicroBatcher
from service.feedback import FeedbackStore
from service.metrics import Metrics
from service.schemas import (
    BatchDocument,
    BatchRequest,
    BatchResponse,
    ClassifyRequest,
    ClassifyResponse,
    ErrorOut,
    FeedbackOut,
    FeedbackRequest,
    ReloadRequest,
    Status,
    is_unicode,
)
from service.settings import Settings
from training.data import parse_row

log = logging.getLogger("stance.service")
STATIC = Path(__file__).resolve().parent / "static"
STATUS: dict[type[StanceError], int] = {
    InvalidInputError: 422,
    InputTooLargeError: 413,
    ModelNotReadyError: 503,
    ComputeBudgetError: 503,
    ModelLoadError: 422,  # only a reload reaches the client with this; at start-up /ready says not_ready
}
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (413, 422, 503)}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 404, 413, 422, 503)}
KEYED_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {"model": FeedbackOut, "description": "already stored"},
    401: {"model": ErrorOut},
}


def error_body(message: str, error_type: str) -> dict[str, str]:
    return {"error": message, "error_type": error_type}


def status_of(exc: StanceError) -> int:
    return next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)


def validation_message(errors: list[Any]) -> str:
    """`field.path: message` of the first error, as pydantic words it."""
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))


def unparsable_body(exc: StarletteHTTPException) -> str | None:
    """Why FastAPI could not parse a JSON body, for the errors its generic 400 hides; None for any other error."""
    cause = exc.__cause__ if exc.status_code == 400 else None
    if isinstance(cause, UnicodeDecodeError):
        return f"request body is not valid UTF-8 ({cause.reason} at byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "JSON is nested too deeply"
    if isinstance(cause, ValueError):  # what else json.loads raises: int() refuses that many digits
        return f"a JSON number has more than {sys.get_int_max_str_digits()} digits"
    return None


class BodyLimit:
    """Reject bodies over `limit` bytes while they stream in, before any parsing (pure ASGI)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _reject(self, send: Send) -> None:
        body = json.dumps(error_body(f"request body is larger than {self.limit} bytes", "too_large")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._reject(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class State:
    """What the app serves now; `predictor` is swapped whole on reload."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.predictor: StancePredictor | None = None
        self.model_dir: Path = settings.model_dir
        self.error: str | None = None
        self.feedback: FeedbackStore | None = None


def load_predictor(folder: Path, settings: Settings) -> StancePredictor:
    """Load `folder` ready to serve; with compiling on, the encoder then compiles in a background thread."""
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    compiled = resolve_compile(settings.compile)
    precision = resolve_precision(settings.precision, compiled)
    predictor = StancePredictor.load(folder, precision=precision, int8_kernel=settings.int8_kernel)
    predictor.finder.nlp  # noqa: B018 - load spaCy now rather than on the first request
    if compiled:
        predictor.compile_status = "compiling"  # already, so that /info never says "off" while the thread starts
        threading.Thread(target=compile_predictor, args=(predictor, folder), name="stance-compile", daemon=True).start()
    return predictor


def compile_predictor(predictor: StancePredictor, folder: Path) -> None:
    """Compile the encoder while the service answers eagerly; scoring switches over once it is done."""
    started = time.perf_counter()
    try:
        predictor.compile()
    except Exception as exc:  # inductor and the C++ compiler fail in many ways; the eager path keeps serving
        log.error(json.dumps({"event": "compile_failed", "model_dir": str(folder), "error": str(exc)}))
        return
    seconds = round(time.perf_counter() - started, 1)
    log.info(json.dumps({"event": "model_compiled", "model_dir": str(folder), "seconds": seconds}))


def create_app(settings: Settings | None = None, predictor: StancePredictor | None = None) -> FastAPI:
    """Build the app. With `predictor` it serves that at once; otherwise the configured folder loads in the background."""
    settings = settings or Settings()
    state = State(settings)
    metrics = Metrics()
    batcher = MicroBatcher(settings.batch_max_documents, settings.batch_wait_ms, metrics)

    def initial_load() -> None:
        try:
            state.predictor = load_predictor(settings.model_dir, settings)
            log.info(json.dumps({"event": "model_loaded", "model_dir": str(settings.model_dir)}))
        except StanceError as exc:
            state.error = str(exc)
            log.error(json.dumps({"event": "model_load_failed", "error": str(exc)}))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        loading = None
        if predictor is not None:
            state.predictor = predictor
        else:
            loading = asyncio.get_running_loop().run_in_executor(None, initial_load)
        yield
        if loading is not None:
            await loading
        await batcher.stop()
        if state.feedback is not None:
            state.feedback.close()

    app = FastAPI(
        title="actor-stance",
        version="0.1.0",
        description="Stance toward named actors (support / oppose / neutral) and sentence sentiment in news text.",
        lifespan=lifespan,
    )
    app.state.stance = state
    app.state.metrics = metrics
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"], allow_headers=["*"]
        )

    @app.middleware("http")
    async def access_log(request: Request, call_next):
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = request_id
        request.state.pairs = 0
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            log.exception(json.dumps({"event": "unhandled_error", "request_id": request_id, "path": request.url.path}))
            response = JSONResponse(error_body("internal server error", "internal"), 500)
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        route_path = getattr(route, "path", "unmatched")
        metrics.requests.labels(route_path, request.method, str(response.status_code)).inc()
        metrics.latency.labels(route_path).observe(elapsed)
        response.headers["x-request-id"] = request_id
        log.info(
            json.dumps(
                {
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 2),
                    "pairs": request.state.pairs,
                }
            )
        )
        return response

    @app.exception_handler(StanceError)
    async def stance_error(_: Request, exc: StanceError) -> JSONResponse:
        return JSONResponse(error_body(str(exc), exc.error_type), status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(validation_message(list(exc.errors())), "invalid_input"), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if message := unparsable_body(exc):
            return JSONResponse(error_body(message, "invalid_input"), 422)
        kind = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(str(exc.detail), kind), exc.status_code, headers=getattr(exc, "headers", None))

    def ready_predictor() -> StancePredictor:
        if state.predictor is None:
            raise ModelNotReadyError(f"model is not loaded: {state.error}" if state.error else "model is loading")
        return state.predictor

    def to_document(body: ClassifyRequest) -> DocumentInput:
        if len(body.text) > settings.max_text_chars:
            raise InputTooLargeError(f"text is longer than {settings.max_text_chars} characters")
        if len(body.actors) > settings.max_actors:
            raise InputTooLargeError(f"more than {settings.max_actors} actors")
        if not body.text.strip():
            raise InvalidInputError("text must not be empty")
        actors = tuple(ActorSpec(a.name, tuple(a.aliases)) for a in body.actors)
        return DocumentInput(body.text, actors, body.detect_actors, body.relations)

    async def score(request: Request, current: StancePredictor, documents: list[DocumentInput]):
        try:
            results = await asyncio.wait_for(batcher.submit(current, documents), settings.request_timeout_s)
        except TimeoutError as exc:
            raise ComputeBudgetError(f"request took longer than the compute budget of {settings.request_timeout_s:g} s") from exc
        request.state.pairs = sum(len(s.actors) for r in results if not isinstance(r, StanceError) for s in r.sentences)
        return results

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health", response_model=Status, summary="liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", response_model=Status, responses=ERRORS, summary="readiness: 503 until the model is loaded")
    async def ready() -> dict[str, str]:
        ready_predictor()
        return {"status": "ready"}

    @app.post(
        "/classify",
        response_model=ClassifyResponse,
        response_model_exclude_none=True,
        responses=ERRORS,
        summary="classify one document",
    )
    async def classify(body: ClassifyRequest, request: Request) -> dict[str, Any]:
        current = ready_predictor()
        (result,) = await score(request, current, [to_document(body)])
        if isinstance(result, StanceError):
            raise result
        return result.to_dict()

    @app.post("/classify/batch", response_model=BatchResponse, responses=ERRORS, summary="classify several documents")
    async def classify_batch(body: BatchRequest, request: Request) -> dict[str, Any]:
        current = ready_predictor()
        if len(body.documents) > settings.max_batch_documents:
            raise InputTooLargeError(f"more than {settings.max_batch_documents} documents")
        entries: list[dict[str, Any]] = []
        todo: list[tuple[int, DocumentInput]] = []
        for raw in body.documents:
            doc_id = raw.get("id") if isinstance(raw.get("id"), str) and is_unicode(raw["id"]) else None
            try:
                document = to_document(BatchDocument.model_validate(raw))
            except ValidationError as exc:
                entries.append(
                    {"id": doc_id, "status": 422, "error": error_body(validation_message(exc.errors()), "invalid_input")}
                )
                continue
            except StanceError as exc:
                entries.append({"id": doc_id, "status": status_of(exc), "error": error_body(str(exc), exc.error_type)})
                continue
            entries.append({"id": doc_id, "status": 200})
            todo.append((len(entries) - 1, document))
        results = await score(request, current, [d for _, d in todo]) if todo else []
        for (index, _), result in zip(todo, results, strict=True):
            if isinstance(result, StanceError):
                entries[index].update(status=status_of(result), error=error_body(str(result), result.error_type))
            else:
                entries[index]["result"] = result.to_dict()
        return {"results": entries}

    @app.get("/info", summary="model, labels, training data, metrics and limits")
    async def info() -> dict[str, Any]:
        current = ready_predictor()
        folder = state.model_dir
        config = current.config
        extra: dict[str, Any] = {}
        for name in ("training.json", "metrics.json"):
            path = folder / name
            extra[name] = read_json(path) if path.is_file() else None
        training = extra["training.json"] or {}
        metrics_file = extra["metrics.json"] or {}
        return {
            "model": {"name": config.name, "version": config.version, "folder": str(folder)},
            "base_model": config.base_model,
            "labels": {"stance": config.stance_labels, "sentiment": config.sentiment_labels},
            "input_format": config.input_format,
            "max_length": config.max_length,
            "runtime": {
                "precision": current.precision,
                "int8_kernel": current.int8_kernel,
                "compile": current.compile_status,
                "attention": current.attention,
                "cpu": cpu_features(),
            },
            "training_data": training.get("data"),
            "metrics": {k: v for k, v in metrics_file.items() if k != "history"},
            "limits": settings.limits(),
        }

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def require_key(request: Request, admin: bool) -> None:
        """Admin routes are off (404) without a configured key; other protected routes are then open."""
        if settings.api_key is None:
            if admin:
                raise StarletteHTTPException(404, "Not Found")
            return
        given = request.headers.get("authorization", "")
        expected = f"Bearer {settings.api_key.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise StarletteHTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})

    @app.post("/admin/reload", responses=ADMIN_ERRORS, summary="load another model folder, or re-read the configured one")
    async def reload(request: Request, body: ReloadRequest | None = None) -> dict[str, Any]:
        require_key(request, admin=True)
        folder = Path(body.model_dir) if body and body.model_dir else state.model_dir
        loaded = await asyncio.to_thread(load_predictor, folder, settings)
        state.predictor, state.model_dir, state.error = loaded, folder, None
        log.info(json.dumps({"event": "model_reloaded", "model_dir": str(folder), "request_id": request.state.request_id}))
        return {
            "status": "reloaded",
            "model": {"name": loaded.config.name, "version": loaded.config.version},
            "model_dir": str(folder),
        }

    @app.post("/feedback", status_code=201, response_model=FeedbackOut, responses=KEYED_ERRORS, summary="store a correction")
    async def feedback(body: FeedbackRequest, request: Request, response: Response) -> dict[str, Any]:
        require_key(request, admin=False)
        row = body.model_dump()
        try:
            parse_row(row, Path("feedback"), 0)
        except DataFormatError as exc:
            raise InvalidInputError(exc.detail) from exc
        if state.feedback is None:
            state.feedback = await asyncio.to_thread(FeedbackStore, settings.feedback_db)
        row_id, stored = await asyncio.to_thread(state.feedback.add, row)
        if not stored:
            response.status_code = 200
        return {"id": row_id, "stored": stored}

    return app
