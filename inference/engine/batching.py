"""``DecodeBatcher``: the one-token decode steps of concurrent requests, run as one batched forward pass.

Contract: each request keeps its own thread, KV cache, sampling and constraint; only the model call of a
one-token step goes through ``step``. A request that is decoding alone runs its step on its own thread
(no hand-off, no added latency); while several decode, their steps meet on the batcher's thread, which
waits at most ``gather_s`` for the other active requests' steps and runs up to ``max_batch`` of them
in one ``Transformer.forward_batch``, so every weight is read once per step for all of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from corral.inference.engine.kv_cache import KVCache
from corral.inference.engine.model import Transformer

__all__ = ["DecodeBatcher"]


@dataclass(slots=True)
class _Step:
    token: int
    cache: KVCache
    done: threading.Event = field(default_factory=threading.Event)
    logits: torch.Tensor | None = None
    error: BaseException | None = None


class DecodeBatcher:
    """See the module docstring. ``max_batch=1`` turns batching off (every step runs on its caller)."""

    def __init__(self, model: Transformer, *, max_batch: int = 16, gather_s: float = 0.002) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.model = model
        self.max_batch = max_batch
        self.gather_s = gather_s
        self._cv = threading.Condition()
        self._pending: list[_Step] = []
        self._active = 0
        self._thread: threading.Thread | None = None
        # Counters for stats(): batched forward passes and the steps they carried.
        self.batches = 0
        self.batched_steps = 0
        self.largest_batch = 0

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """Mark the calling request as decoding for the duration: the batcher waits for its steps."""
        with self._cv:
            self._active += 1
        try:
            yield
        finally:
            with self._cv:
                self._active -= 1
                self._cv.notify_all()  # a gather waiting for this request's step need not wait longer

    def step(self, token: int, cache: KVCache) -> torch.Tensor:
        """Logits ``[1, V]`` after feeding ``token`` at ``cache.length``; advances the cache by one."""
        with self._cv:
            alone = self.max_batch == 1 or (self._active <= 1 and not self._pending)
            if not alone:
                item = _Step(token, cache)
                self._pending.append(item)
                self._ensure_thread()
                self._cv.notify_all()
        if alone:
            return self.model.forward(torch.tensor([[token]], dtype=torch.long), cache, cache.length)[0:1]
        item.done.wait()
        if item.error is not None:
            raise item.error
        assert item.logits is not None
        return item.logits

    def stats(self) -> dict[str, float]:
        with self._cv:
            mean = self.batched_steps / self.batches if self.batches else 0.0
            return {"batches": self.batches, "batched_steps": self.batched_steps,
                    "mean_batch": round(mean, 3), "largest_batch": self.largest_batch}

    # -- the batcher's thread ------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="corral-decode-batcher", daemon=True)
            self._thread.start()

    def _take(self) -> list[_Step]:
        with self._cv:
            while not self._pending:
                self._cv.wait()
            # Wait briefly for the other decoding requests' steps, so they share this pass.
            deadline = time.monotonic() + self.gather_s
            while len(self._pending) < min(self._active, self.max_batch):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            self.batches += 1
            self.batched_steps += len(batch)
            self.largest_batch = max(self.largest_batch, len(batch))
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            try:
                logits = self.model.forward_batch([s.token for s in batch], [s.cache for s in batch])
                for r, item in enumerate(batch):
                    item.logits = logits[r : r + 1]
            except BaseException as exc:  # handed to every waiting request; the loop goes on
                for item in batch:
                    item.error = exc
            finally:
                for item in batch:
                    item.done.set()
