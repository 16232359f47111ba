"""Server-side batching: concurrent requests for one signature merged into one call.

TF Serving's BatchingSession, on the asyncio side: requests for the same model,
version and signature join an open batch until it holds ``max_batch_size`` rows or
its first task has waited ``batch_timeout_micros``; the batch then runs as one call
on a worker (at most ``num_batch_threads`` at a time) and each request gets its
rows back. At most ``max_enqueued_batches`` batches wait for a worker; beyond that
a request is refused with UNAVAILABLE (HTTP 503), as the real scheduler does.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

import numpy as np

from tfbake.model_server import errors
from tfbake.model_server.config import BatchingOptions
from tfbake.model_server.servable import Servable, Signature

log = logging.getLogger(__name__)

QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"


class _Task:
    __slots__ = ("inputs", "rows", "future")

    def __init__(self, inputs, rows, future):
        self.inputs = inputs
        self.rows = rows
        self.future = future


class _Batch:
    __slots__ = ("tasks", "rows", "timer")

    def __init__(self):
        self.tasks: list[_Task] = []
        self.rows = 0
        self.timer: asyncio.TimerHandle | None = None


class _Queue:
    """One queue per (model, version, signature)."""

    def __init__(self, servable: Servable, signature: Signature):
        self.servable = servable
        self.signature = signature
        self.open: _Batch | None = None
        self.waiting: collections.deque[_Batch] = collections.deque()


def _merge(tasks: list[_Task], signature: Signature) -> dict[str, np.ndarray] | None:
    """Inputs of all tasks concatenated on dimension 0, or None if shapes differ."""
    merged = {}
    for alias in signature.inputs:
        parts = [t.inputs[alias] for t in tasks]
        tail = parts[0].shape[1:]
        if any(p.shape[1:] != tail for p in parts):
            return None
        merged[alias] = np.concatenate(parts, axis=0)
    return merged


def _pad(inputs: dict[str, np.ndarray], rows: int, target: int) -> dict[str, np.ndarray]:
    # allowed_batch_sizes: pad by repeating the first row, trimmed off afterwards.
    return {
        alias: np.concatenate([a, np.repeat(a[:1], target - rows, axis=0)], axis=0)
        for alias, a in inputs.items()
    }


class BatchScheduler:
    """Merges concurrent calls of one signature into batches."""

    def __init__(self, options: BatchingOptions, call: Callable, on_batch: Callable | None = None):
        """``call(servable, signature, inputs)`` is awaited to run one (merged) batch."""
        self.options = options
        self._call = call
        self._on_batch = on_batch
        self._queues: dict[tuple, _Queue] = {}
        self._workers = asyncio.Semaphore(options.num_batch_threads)
        self._timeout = options.batch_timeout_micros / 1e6

    async def run(self, servable: Servable, signature: Signature,
                  inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """Runs one request's inputs as part of a batch; returns its own outputs."""
        if not signature.batchable or not inputs:
            return await self._call(servable, signature, inputs)
        max_size = self.options.max_batch_size
        if rows > max_size:
            raise errors.invalid_argument(
                f"Task size {rows} is larger than maximum input batch size {max_size}"
            )
        key = (servable.name, servable.version, signature.key)
        queue = self._queues.get(key)
        if queue is None or queue.servable is not servable:
            queue = self._queues[key] = _Queue(servable, signature)
        loop = asyncio.get_running_loop()
        batch = queue.open
        if batch is not None and batch.rows + rows > max_size:
            self._close(queue)
            batch = None
        if batch is None:
            if len(queue.waiting) >= self.options.max_enqueued_batches:
                raise errors.unavailable(QUEUE_FULL)
            batch = queue.open = _Batch()
            if self._timeout > 0:
                batch.timer = loop.call_later(self._timeout, self._close, queue, batch)
            else:
                batch.timer = loop.call_soon(self._close, queue, batch)
        task = _Task(inputs, rows, loop.create_future())
        batch.tasks.append(task)
        batch.rows += rows
        if batch.rows >= max_size:
            self._close(queue)
        return await task.future

    def _close(self, queue: _Queue, batch: _Batch | None = None) -> None:
        if batch is not None and queue.open is not batch:
            return  # already closed when it filled up
        batch = queue.open
        if batch is None:
            return
        queue.open = None
        if batch.timer is not None:
            batch.timer.cancel()
        queue.waiting.append(batch)
        asyncio.get_running_loop().create_task(self._dispatch(queue))

    async def _dispatch(self, queue: _Queue) -> None:
        async with self._workers:
            batch = queue.waiting.popleft()
            await self._process(queue, batch)

    async def _process(self, queue: _Queue, batch: _Batch) -> None:
        tasks = [t for t in batch.tasks if not t.future.done()]
        if not tasks:
            return
        signature = queue.signature
        merged = _merge(tasks, signature) if len(tasks) > 1 else tasks[0].inputs
        if merged is None:
            # Different trailing shapes cannot share a tensor: run them one by one.
            for task in tasks:
                await self._run_tasks(queue, [task], task.inputs, task.rows)
            return
        await self._run_tasks(queue, tasks, merged, batch.rows)

    async def _run_tasks(self, queue, tasks, inputs, rows) -> None:
        target = rows
        for size in self.options.allowed_batch_sizes:
            if size >= rows:
                target = size
                break
        if target > rows:
            inputs = _pad(inputs, rows, target)
        if self._on_batch is not None:
            self._on_batch(queue.servable.name, len(tasks), rows)
        try:
            outputs = await self._call(queue.servable, queue.signature, inputs)
            for alias, array in outputs.items():
                if array.ndim == 0 or array.shape[0] != target:
                    raise errors.internal(
                        f"Batched output tensor {alias} has {array.shape[0] if array.ndim else 0} "
                        f"rows; expected {target}"
                    )
        except Exception as e:  # noqa: BLE001 - every task of the batch gets the error.
            for task in tasks:
                if not task.future.done():
                    task.future.set_exception(e)
            return
        start = 0
        for task in tasks:
            end = start + task.rows
            if not task.future.done():
                task.future.set_result({a: v[start:end] for a, v in outputs.items()})
            start = end
