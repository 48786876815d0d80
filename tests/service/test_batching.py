"""The micro-batcher: concurrent jobs are scored together, always in the same dedicated thread."""

import asyncio
import threading
from types import SimpleNamespace

from model.predictor import DocumentInput
from service.batching import MicroBatcher
from service.metrics import Metrics


class RecordingPredictor:
    """Stands in for StancePredictor: records the thread and the batch of each scoring call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def predict_documents_safe(self, documents):
        self.calls.append((threading.current_thread().name, len(documents)))
        return [SimpleNamespace(text=d.text, sentences=[]) for d in documents]


def test_jobs_are_scored_together_in_one_dedicated_thread():
    predictor = RecordingPredictor()

    async def run() -> list:
        batcher = MicroBatcher(max_documents=8, wait_ms=50, metrics=Metrics())
        batcher.start()
        try:
            first = await asyncio.gather(*(batcher.submit(predictor, [DocumentInput(f"t{i}")]) for i in range(4)))
            second = [await batcher.submit(predictor, [DocumentInput(f"u{i}")]) for i in range(3)]
            return first + second
        finally:
            await batcher.stop()

    results = asyncio.run(run())
    assert [[r.text for r in job] for job in results] == [[f"t{i}"] for i in range(4)] + [[f"u{i}"] for i in range(3)]
    assert predictor.calls[0][1] == 4  # the four concurrent jobs became one batch
    threads = {name for name, _ in predictor.calls}
    assert len(threads) == 1 and threads.pop().startswith("stance-scoring")


def test_a_failing_batch_fails_its_jobs_and_the_batcher_keeps_serving():
    class Flaky(RecordingPredictor):
        def predict_documents_safe(self, documents):
            if not self.calls:
                self.calls.append(("", 0))
                raise RuntimeError("scoring broke")
            return super().predict_documents_safe(documents)

    predictor = Flaky()

    async def run() -> tuple[str, list]:
        batcher = MicroBatcher(max_documents=8, wait_ms=1, metrics=Metrics())
        batcher.start()
        try:
            try:
                await batcher.submit(predictor, [DocumentInput("a")])
            except RuntimeError as exc:
                error = str(exc)
            return error, await batcher.submit(predictor, [DocumentInput("b")])
        finally:
            await batcher.stop()

    error, results = asyncio.run(run())
    assert error == "scoring broke" and [r.text for r in results] == ["b"]
