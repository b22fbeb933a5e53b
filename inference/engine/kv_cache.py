"""A preallocated key/value cache: one buffer per sequence, written in place, never concatenated."""

from __future__ import annotations

import torch

from corral.inference.errors import ContextOverflowError

__all__ = ["KVCache"]


class KVCache:
    """Keys and values of one sequence for every layer: ``k[l]`` and ``v[l]`` are ``[1, K, capacity, D]``
    views into one allocation. ``length`` counts the positions filled so far (the next write position)."""

    def __init__(
        self, num_layers: int, num_kv_heads: int, head_dim: int, capacity: int, dtype: torch.dtype
    ) -> None:
        if capacity <= 0:
            raise ValueError("a KV cache needs a positive capacity")
        self.capacity = capacity
        self.dtype = dtype
        # [L, 2, 1, K, C, D]: one block of memory, so growth never copies and a reset is free.
        self.storage = torch.empty(num_layers, 2, 1, num_kv_heads, capacity, head_dim, dtype=dtype)
        self.k = [self.storage[i, 0] for i in range(num_layers)]
        self.v = [self.storage[i, 1] for i in range(num_layers)]
        self.length = 0

    def reserve(self, extra: int) -> None:
        """Fail before any work when ``extra`` more positions would not fit."""
        if self.length + extra > self.capacity:
            raise ContextOverflowError(
                f"{self.length} cached + {extra} new positions exceed the KV cache's {self.capacity}"
            )

    def positions(self, start: int, stop: int) -> torch.Tensor:
        """KV of positions ``[start, stop)`` for every layer: ``[L, 2, K, stop - start, D]`` (a view)."""
        return self.storage[:, :, 0, :, start:stop]

    def load(self, start: int, kv: torch.Tensor) -> None:
        """Write ``kv`` (``[L, 2, K, T, D]``, as returned by ``positions``) at ``start``; set the length."""
        stop = start + int(kv.shape[3])
        if stop > self.capacity:
            raise ContextOverflowError(f"restoring {stop} positions overflows the cache's {self.capacity}")
        self.storage[:, :, 0, :, start:stop].copy_(kv)
        self.length = stop

    def truncate(self, length: int) -> None:
        self.length = max(0, min(length, self.length))
