"""Request and response schemas of the HTTP API, with examples for /docs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

# The response is the predictor's own result types (dataclasses), so the API schema cannot drift from them.
from model.results import ActorSummary, RelationSummary, SentenceResult

ARTICLE = "Senate Passes Climate Bill\nThe senator praised Acme Corp for its generosity. Critics blamed Globex for the delays."


def is_unicode(value: str) -> bool:
    """False for a string with a lone surrogate ("\\ud800" is valid JSON): no tokenizer reads it, no JSON encoder writes it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# The words pydantic uses for the same failure in fields with length constraints.
NOT_UNICODE = "Input should be a valid string, unable to parse raw data as a unicode string"


def _unicode(value: str) -> str:
    if not is_unicode(value):
        raise PydanticCustomError("string_unicode", NOT_UNICODE)
    return value


# Unconstrained strings reach the code as given; constrained ones (min_length, max_length) pydantic checks itself.
Text = Annotated[str, AfterValidator(_unicode)]


class ActorIn(BaseModel):
    """An explicit actor; aliases are matched literally as whole words."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "Ukraine", "aliases": ["Kyiv", "Kiev"]}]})
    name: str = Field(min_length=1, max_length=200)
    aliases: list[Text] = Field(default_factory=list, max_length=100)


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"text": ARTICLE, "actors": [{"name": "Acme Corp", "aliases": ["Acme"]}], "detect_actors": True}]
        },
    )
    text: Text = Field(description="the document; offsets in the response index into it")
    actors: list[ActorIn] = Field(default_factory=list, description="explicit actors, combined with detection")
    detect_actors: bool = Field(True, description="find named actors with NER; false scores only explicit actors")
    relations: bool = Field(False, description="also score who supports or opposes whom (holder → target)")


class BatchDocument(ClassifyRequest):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"id": "doc-1", "text": ARTICLE}]})
    id: str = Field(min_length=1, max_length=200)


class BatchRequest(BaseModel):
    """Each document is validated on its own: one bad document gets an error entry, the others still succeed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"documents": [{"id": "a", "text": ARTICLE}, {"id": "b", "text": "Acme Corp cut jobs."}]}]
        },
    )
    documents: list[dict[str, Any]] = Field(description="objects with id, text, and optional actors and detect_actors")


class ModelRef(BaseModel):
    name: str
    version: str


class ClassifyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": {"name": "actor-stance", "version": "0.4.0"},
                    "sentences": [
                        {
                            "index": 0,
                            "text": "The senator praised Acme Corp.",
                            "start": 0,
                            "end": 30,
                            "sentiment": {"label": "positive", "scores": {"positive": 0.91, "negative": 0.02, "neutral": 0.07}},
                            "actors": [
                                {
                                    "actor": "Acme Corp",
                                    "mentions": [{"text": "Acme Corp", "start": 20, "end": 29}],
                                    "mentioned": True,
                                    "stance": {"label": "support", "scores": {"support": 0.93, "oppose": 0.02, "neutral": 0.05}},
                                }
                            ],
                        }
                    ],
                    "actors": [
                        {
                            "actor": "Acme Corp",
                            "type": "ORG",
                            "mentions": 1,
                            "support": 1,
                            "oppose": 0,
                            "neutral": 0,
                            "net": 0.91,
                            "label": "support",
                        }
                    ],
                }
            ]
        }
    )
    model: ModelRef
    sentences: list[SentenceResult]
    actors: list[ActorSummary]
    relations: list[RelationSummary] | None = Field(None, description="only with relations: true")


class ErrorOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"error": "text must not be empty", "error_type": "invalid_input"}]}
    )
    error: str
    error_type: str


class BatchItemOut(BaseModel):
    id: str | None
    status: int = Field(description="200, or the status this document alone would have got")
    result: ClassifyResponse | None = None
    error: ErrorOut | None = None


class BatchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {
                            "id": "b",
                            "status": 422,
                            "result": None,
                            "error": {"error": "text must not be empty", "error_type": "invalid_input"},
                        }
                    ]
                }
            ]
        }
    )
    results: list[BatchItemOut]


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"model_dir": "/models/newsroom-v2"}, {}]})
    model_dir: Text | None = Field(None, description="folder to load; omitted: re-read the configured folder")


class Status(BaseModel):
    status: str


class FeedbackRequest(BaseModel):
    """A correction in the labelled format: a stance label needs an actor; offsets are optional."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "text": "The senator praised Acme Corp for its generosity.",
                    "actor": "Acme Corp",
                    "start": 20,
                    "end": 29,
                    "stance": "support",
                    "source": "desk-review",
                },
                {"text": "Markets slumped on Friday.", "sentiment": "negative"},
            ]
        },
    )
    text: str = Field(min_length=1, max_length=100_000)
    actor: str | None = Field(None, max_length=200)
    start: int | None = Field(None, ge=0)
    end: int | None = Field(None, ge=0)
    stance: Literal["support", "oppose", "neutral"] | None = None
    sentiment: Literal["positive", "negative", "neutral"] | None = None
    source: str | None = Field(None, max_length=200)


class FeedbackOut(BaseModel):
    id: int
    stored: bool = Field(description="false when an identical row was already stored")
