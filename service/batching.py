"""Dynamic micro-batching: documents from concurrent requests are scored together, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from model.errors import StanceError
from model.predictor import DocumentInput, StancePredictor
from model.results import DocumentResult
from service.metrics import Metrics


@dataclass
class _Job:
    predictor: StancePredictor
    documents: Sequence[DocumentInput]
    future: asyncio.Future[list[DocumentResult | StanceError]]


class MicroBatcher:
    """Collects jobs until `max_documents` or `wait_ms` has passed, then scores them in one dedicated thread.

    While one batch is being scored, new requests queue up and form the next batch, so
    throughput grows with concurrency. Each job keeps the predictor it was submitted with,
    so requests in flight during a model reload finish on the old model.
    """

    def __init__(self, max_documents: int, wait_ms: float, metrics: Metrics) -> None:
        self.max_documents = max_documents
        self.wait = wait_ms / 1000
        self.metrics = metrics
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        # One scoring thread, always the same: torch's kernel caches are per thread, so a pool would hold several.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stance-scoring")
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.cancel()

    async def submit(self, predictor: StancePredictor, documents: Sequence[DocumentInput]) -> list[DocumentResult | StanceError]:
        future: asyncio.Future[list[DocumentResult | StanceError]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(predictor, documents, future))
        self.metrics.queue_depth.set(self._queue.qsize())
        return await future

    async def _collect(self) -> list[_Job]:
        jobs = [await self._queue.get()]
        count = len(jobs[0].documents)
        deadline = asyncio.get_running_loop().time() + self.wait
        while count < self.max_documents:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                job = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
            except (asyncio.QueueEmpty, TimeoutError):
                break
            jobs.append(job)
            count += len(job.documents)
        self.metrics.queue_depth.set(self._queue.qsize())
        return jobs

    async def _run(self) -> None:
        while True:
            # A job whose request timed out or went away is not scored.
            jobs = [job for job in await self._collect() if not job.future.done()]
            for predictor in {id(j.predictor): j.predictor for j in jobs}.values():
                group = [j for j in jobs if j.predictor is predictor]
                documents = [d for j in group for d in j.documents]
                self.metrics.batch_documents.observe(len(documents))
                try:
                    loop = asyncio.get_running_loop()
                    results = await loop.run_in_executor(self._executor, predictor.predict_documents_safe, documents)
                    pairs = sum(len(s.actors) for r in results if not isinstance(r, StanceError) for s in r.sentences)
                except Exception as exc:  # the jobs fail, the batcher keeps running
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                self.metrics.pairs_scored.inc(pairs)
                start = 0
                for job in group:
                    if not job.future.done():
                        job.future.set_result(results[start : start + len(job.documents)])
                    start += len(job.documents)
