"""The FastAPI app: loads the predictor in the background and serves it."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from model.actors import ActorSpec
from model.errors import InputTooLargeError, InvalidInputError, ModelLoadError, ModelNotReadyError, StanceError
from model.predictor import StancePredictor
from service.settings import Settings

log = logging.getLogger("stance.service")

STATUS = {InvalidInputError: 422, InputTooLargeError: 413, ModelNotReadyError: 503, ModelLoadError: 503}


class ActorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, examples=["Ukraine"])
    aliases: list[str] = Field(default_factory=list, examples=[["Kyiv", "Kiev"]])


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "The senator praised Acme Corp for its generosity.", "detect_actors": True}]},
    )
    text: str
    actors: list[ActorIn] = Field(default_factory=list)
    detect_actors: bool = True


class State:
    def __init__(self) -> None:
        self.predictor: StancePredictor | None = None
        self.error: str | None = None


def error_body(message: str, error_type: str) -> dict[str, str]:
    return {"error": message, "error_type": error_type}


def create_app(settings: Settings | None = None, predictor: StancePredictor | None = None) -> FastAPI:
    """Build the app. With `predictor` given it is used at once; otherwise the configured folder loads in the background."""
    settings = settings or Settings()
    state = State()

    def load() -> None:
        try:
            if settings.threads:
                import torch

                torch.set_num_threads(settings.threads)
            loaded = StancePredictor.load(settings.model_dir)
            loaded.finder.nlp  # noqa: B018 - load spaCy now, not on the first request
            state.predictor = loaded
            log.info("model loaded from %s", settings.model_dir)
        except StanceError as exc:
            state.error = str(exc)
            log.error("model failed to load: %s", exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        task = None
        if predictor is not None:
            state.predictor = predictor
        else:
            task = asyncio.get_running_loop().run_in_executor(None, load)
        yield
        if task is not None:
            await task

    app = FastAPI(title="actor-stance", version="0.1.0", lifespan=lifespan)
    app.state.stance = state

    @app.exception_handler(StanceError)
    async def stance_error(_: Request, exc: StanceError) -> JSONResponse:
        status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)
        return JSONResponse(error_body(str(exc), exc.error_type), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(error_body(f"{where}: {first.get('msg')}" if where else str(first.get("msg")), "invalid_input"), 422)

    def ready_predictor() -> StancePredictor:
        if state.predictor is None:
            raise ModelNotReadyError(state.error or "model is loading")
        return state.predictor

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        ready_predictor()
        return {"status": "ready"}

    @app.post("/classify")
    async def classify(body: ClassifyRequest) -> dict[str, Any]:
        current = ready_predictor()
        if len(body.text) > settings.max_text_chars:
            raise InputTooLargeError(f"text is longer than {settings.max_text_chars} characters")
        if len(body.actors) > settings.max_actors:
            raise InputTooLargeError(f"more than {settings.max_actors} actors")
        actors = [ActorSpec(a.name, tuple(a.aliases)) for a in body.actors]
        result = await asyncio.to_thread(current.predict, body.text, actors, body.detect_actors)
        return result.to_dict()

    return app
