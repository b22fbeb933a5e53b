"""Budgets for one run: steps (model or tool calls), tokens and wall time, checked before each step."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Budget", "BudgetExceeded", "Usage"]


class BudgetExceeded(Exception):
    """A run used up one of its budgets; ``str()`` says which, with the numbers."""


@dataclass(frozen=True, slots=True)
class Budget:
    max_steps: int = 12
    max_tokens: int = 200_000
    max_seconds: float = 300.0


@dataclass(slots=True)
class Usage:
    """What a run has spent so far; ``check`` raises before a step that would go over."""

    budget: Budget
    steps: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def check(self, upcoming_tokens: int = 0) -> None:
        b = self.budget
        if self.steps >= b.max_steps:
            raise BudgetExceeded(f"step budget exhausted: {self.steps} of {b.max_steps} steps used")
        if self.tokens + upcoming_tokens > b.max_tokens:
            raise BudgetExceeded(f"token budget exhausted: {self.tokens} used, {upcoming_tokens} more "
                                 f"needed, limit {b.max_tokens}")
        if self.seconds > b.max_seconds:
            raise BudgetExceeded(f"time budget exhausted: {self.seconds:.1f}s of {b.max_seconds:.0f}s")

    def spend(self, tokens: int = 0) -> None:
        self.steps += 1
        self.tokens += tokens
