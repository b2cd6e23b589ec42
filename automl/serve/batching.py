"""Micro-batching: concurrent requests gathered into one model call.

A request's samples wait at most ``wait_ms`` after the first waiting request arrived, or until
``max_batch`` samples are waiting, whichever comes first; then one ``run`` on a worker thread
serves them all and each request gets its own slice back. While a batch runs, the next one
gathers, so under load batches fill up by themselves and the wait only matters when traffic is light.
A request larger than ``max_batch`` runs as a batch of its own (it is never split).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from automl.exceptions import ConfigError, InputError


@dataclass
class _Pending:
    x: np.ndarray
    future: asyncio.Future[np.ndarray]
    arrived: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Batches ``submit(x)`` calls into ``run(batch)`` calls on one worker thread.

    ``on_batch(size, seconds)`` is called after every model call (for metrics). ``max_queue`` bounds
    the samples waiting; past it ``submit`` raises an InputError (code ``overloaded``: a 503) instead of
    queueing without end.
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch: int = 32, wait_ms: float = 2.0,
                 max_queue: int = 4096, on_batch: Callable[[int, float], None] | None = None) -> None:
        if max_batch < 1:
            raise ConfigError(f"--max-batch must be >= 1, got {max_batch}")
        if wait_ms < 0 or wait_ms > 10_000:
            raise ConfigError(f"--batch-wait-ms must be in [0, 10000], got {wait_ms}")
        if max_queue < 1:
            raise ConfigError(f"max_queue must be >= 1, got {max_queue}")
        self._run = run
        self.max_batch = int(max_batch)
        self.wait_s = float(wait_ms) / 1000.0
        self.max_queue = int(max_queue)
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._queued = 0  # samples waiting
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False

    @property
    def queued_samples(self) -> int:
        return self._queued

    async def start(self) -> None:
        """Start the gathering loop on the running event loop."""
        self._wake = asyncio.Event()
        # One thread: ONNX Runtime parallelises inside a run; two runs at once would fight for the cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="automl-infer")
        self._task = asyncio.create_task(self._loop(), name="automl-batcher")

    async def stop(self) -> None:
        """Serve what is queued, then stop the loop and the worker thread."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """Queue a checked batch of one request; returns that request's outputs."""
        if self._closing or self._wake is None:
            raise InputError("the server is shutting down", "unavailable")
        n = int(x.shape[0])
        if self._queued and self._queued + n > self.max_queue:
            raise InputError(f"the server is overloaded ({self._queued} samples queued); retry later",
                             "overloaded")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(x, future))
        self._queued += n
        self._wake.set()
        return await future

    def _take(self) -> list[_Pending]:
        items = [self._queue.popleft()]
        total = items[0].x.shape[0]
        while self._queue and total + self._queue[0].x.shape[0] <= self.max_batch:
            item = self._queue.popleft()
            items.append(item)
            total += item.x.shape[0]
        self._queued -= total
        return items

    async def _gather_wait(self) -> None:
        """Wait until max_batch samples are queued or the first one has waited wait_s."""
        assert self._wake is not None
        deadline = self._queue[0].arrived + self.wait_s
        while self._queued < self.max_batch and not self._closing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    async def _loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._gather_wait()
            items = self._take()
            x = items[0].x if len(items) == 1 else np.concatenate([it.x for it in items], axis=0)
            try:
                y = await loop.run_in_executor(self._executor, self._timed_run, x)
            except Exception:
                # One bad request must not fail its neighbours: run each alone and fail only the guilty.
                await self._run_each(items, loop)
                continue
            self._deliver(items, y)

    def _timed_run(self, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        y = self._run(x)
        if self._on_batch is not None:
            self._on_batch(int(x.shape[0]), time.perf_counter() - t0)
        return y

    def _deliver(self, items: list[_Pending], y: np.ndarray) -> None:
        start = 0
        for item in items:
            n = item.x.shape[0]
            if not item.future.done():  # the client may have gone away
                item.future.set_result(y[start : start + n])
            start += n

    async def _run_each(self, items: list[_Pending], loop: asyncio.AbstractEventLoop) -> None:
        for item in items:
            try:
                y = await loop.run_in_executor(self._executor, self._timed_run, item.x)
            except Exception as exc:
                err = InputError(f"the model cannot run on this input ({_first_line(exc)})", "model_rejected_input")
                if not item.future.done():
                    item.future.set_exception(err)
                continue
            self._deliver([item], y)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else exc.__class__.__name__)[:200]

