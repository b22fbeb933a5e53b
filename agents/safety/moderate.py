"""The output guard: one check of a finished answer, shared by the routed ask and the agent.

The answer and the question it answers go to the guard model in Llama Guard's format (the 'Agent'
assessment). An ``unsafe`` verdict blocks the answer: the reason (categories with their names) is
returned for ``Run.blocked``, recorded as a ``blocked`` decision, and every door shows the answer as
withheld while the run keeps its text for administrators. A guard that gives no verdict follows
``on_error``: ``closed`` blocks the answer, ``open`` lets it through; both are recorded.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from corral.agents.safety.guard import GuardClassifier, GuardConfig, GuardUnavailable

__all__ = ["Recorder", "guards_answers", "moderate_answer"]


class Recorder(Protocol):
    """What the check records into: a run's trace (agents/ask/record.py ``Trace``)."""

    def add(self, kind: str, **details: Any) -> None: ...

    def decide(self, kind: str, source: str, detail: str) -> None: ...


def guards_answers(guard: GuardConfig | None) -> bool:
    """Whether answers are moderated (then their text is not streamed before the verdict)."""
    return guard is not None and guard.answers


def moderate_answer(guard: GuardConfig | None, question: str, answer: str, trace: Recorder, *,
                    classifier: GuardClassifier | None = None) -> str | None:
    """Why ``answer`` is blocked, or None when it may be shown (or answers are not moderated)."""
    if guard is None or not guard.answers or not answer.strip():
        return None
    started = time.monotonic()
    try:
        verdict = (classifier or GuardClassifier(guard)).moderate(question, answer)
    except GuardUnavailable as exc:
        trace.add("guard", target="answer", verdict="unavailable", error=str(exc)[:300],
                  seconds=round(time.monotonic() - started, 3))
        if guard.on_error == "closed":
            reason = f"the guard could not check the answer ({exc}); withheld (fail closed)"
            trace.decide("blocked", "answer", reason)
            return reason
        trace.decide("screened", "answer", f"not moderated: the guard could not check it ({exc}); shown "
                     "(fail open)")
        return None
    trace.add("guard", target="answer", verdict=verdict.label, categories=", ".join(verdict.categories),
              seconds=round(time.monotonic() - started, 3))
    if not verdict.flagged:
        return None
    reason = f"the guard model found the answer {verdict.describe()}"
    trace.decide("blocked", "answer", reason)
    return reason
