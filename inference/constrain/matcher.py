"""One request's grammar state as a ``TokenConstraint`` (see ``corral.inference.generation``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from corral.inference.errors import InferenceError
from corral.inference.generation import TokenConstraint

__all__ = ["GrammarConstraint", "as_token_constraint"]


class GrammarConstraint:
    """Wraps an ``llguidance.LLMatcher``; not thread-safe (one per request, as the protocol says).

    ``allowed_mask`` allows the end-of-sequence tokens exactly when the grammar accepts what was
    generated so far; once ``is_finished`` the grammar allows nothing but them.
    """

    def __init__(self, matcher: Any, *, tokenizer_vocab: int, eos_token_ids: Sequence[int]) -> None:
        import numpy as np
        import torch

        self._np = np
        self._torch = torch
        self._matcher = matcher
        self._words = (tokenizer_vocab + 31) // 32
        self._bitmask = np.zeros(self._words, dtype=np.int32)
        self._eos = list(eos_token_ids)

    def allowed_mask(self, vocab_size: int) -> Any:
        """Bool tensor ``[vocab_size]``; ids past the tokenizer's vocabulary (padding rows) are False."""
        np, torch = self._np, self._torch
        self._check()
        self._matcher.unsafe_compute_mask_ptr(self._bitmask.ctypes.data, self._words * 4)
        self._check()
        # Bit i of 32-bit word w is token 32w+i; the words are little-endian, so the bytes' bits in
        # little bit order are the tokens in order. Built in numpy and handed over without a copy:
        # torch runs ops this size on its thread pool, which costs milliseconds on a busy machine
        # against numpy's ~20 µs.
        bits = np.unpackbits(self._bitmask.view(np.uint8), count=min(vocab_size, 32 * self._words),
                             bitorder="little")
        if bits.size < vocab_size:  # the model's padding rows past the tokenizer's vocabulary
            bits = np.concatenate([bits, np.zeros(vocab_size - bits.size, dtype=np.uint8)])
        return torch.from_numpy(bits.view(np.bool_))

    def forced(self) -> list[int]:
        """Tokens that are the only legal continuation (e.g. the rest of a JSON key); may be empty."""
        if self._matcher.is_stopped():
            return []
        return [int(t) for t in self._matcher.compute_ff_tokens()]

    def advance(self, token_ids: Sequence[int]) -> None:
        """Record accepted tokens; an end-of-sequence token after the grammar finished is ignored."""
        ids = [int(t) for t in token_ids]
        if self._matcher.is_stopped():
            ids = [t for t in ids if t not in self._eos]
        if ids and not self._matcher.consume_tokens(ids):
            raise InferenceError(f"the grammar rejected tokens {ids}: {self._matcher.get_error()}")

    def is_finished(self) -> bool:
        """True when the grammar allows no further text (only end-of-sequence)."""
        return bool(self._matcher.is_stopped())

    def is_accepting(self) -> bool:
        """True when what was generated so far is a complete match (stopping here is legal)."""
        return bool(self._matcher.is_accepting())

    def _check(self) -> None:
        if self._matcher.is_error():
            raise InferenceError(f"constrained decoding failed: {self._matcher.get_error()}")


def as_token_constraint(constraint: GrammarConstraint) -> TokenConstraint:
    """The grammar as the contract type (mypy proves ``GrammarConstraint`` satisfies the protocol)."""
    return constraint
