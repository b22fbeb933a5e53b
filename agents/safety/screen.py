"""The prompt-injection screen of one run: the pattern stage, then optionally the guard model.

Every text that enters a prompt from the corpus or a tool passes :meth:`InjectionScreen.screen`. The
pattern stage (:func:`corral.agents.executor.screening.screen`) is free and always on; text it passes
goes to the guard model (:mod:`corral.agents.safety.guard`) when one is configured for screening.
Each flag is recorded on the run as a ``screened`` decision naming its source.

The guard's cost is bounded per run: text is classified in windows of ``max_chars``, at most
``max_calls`` calls (text past the cap is left to the patterns, and the run says so), identical
windows are asked once (cached by content hash), and after the first failure the guard is not asked
again in that run — what the failure means (``on_error``) is applied to the rest, and recorded.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from corral.agents.executor.screening import Screened, defang_all, screen
from corral.agents.safety.guard import GuardClassifier, GuardConfig, GuardUnavailable, Verdict

__all__ = ["Decide", "InjectionScreen", "RunScreen"]

Decide = Callable[[str, str, str], None]  # (kind, source, detail), as Trace.decide


class InjectionScreen(Protocol):
    def screen(self, text: str, source: str) -> Screened:
        """``text`` as it may enter a prompt (flagged lines or all of it defanged) and the flags
        raised; ``source`` names it on the run (``path:start-end`` or a tool's name)."""
        ...


def _ignore(kind: str, source: str, detail: str) -> None:
    """A screen whose decisions are not recorded (tools used outside a run)."""


class RunScreen:
    """The screen of one run. Without ``guard`` (or with its screening off) it is the pattern stage."""

    def __init__(self, decide: Decide = _ignore, guard: GuardConfig | None = None, *,
                 classifier: GuardClassifier | None = None) -> None:
        self._decide = decide
        self._guard = guard if guard is not None and guard.screen else None
        self._classifier = classifier or (GuardClassifier(self._guard) if self._guard else None)
        self._lock = threading.Lock()
        self._cache: dict[str, Verdict] = {}
        self._calls = 0
        self._down: str | None = None  # why the guard gave no verdict, once it failed
        self._patterns_only = 0

    @property
    def calls(self) -> int:
        """Calls made to the guard model so far."""
        return self._calls

    @contextmanager
    def patterns_only(self) -> Iterator[None]:
        """Skip the guard inside: text read here is screened again where it is used (the router's
        planned reads send the planned text, not what the tools returned)."""
        with self._lock:
            self._patterns_only += 1
        try:
            yield
        finally:
            with self._lock:
                self._patterns_only -= 1

    def screen(self, text: str, source: str) -> Screened:
        first = screen(text)
        if first.flags:
            self._decide("screened", source, f"possible prompt injection ({', '.join(first.flags)})")
            return first
        if self._guard is None or self._patterns_only or not text.strip():
            return first
        verdict = self._classify(text)
        if verdict is None or not verdict.flagged:
            return first
        flag = f"guard:{verdict.describe()}"
        self._decide("screened", source, f"the guard model flagged it ({verdict.describe()})")
        return Screened(defang_all(text, f"screened by the guard: {verdict.describe()}"), (flag,))

    def _classify(self, text: str) -> Verdict | None:
        """The first flagging verdict over ``text``'s windows, else the last benign one; None when
        nothing was classified (the cap, or the guard down and failing open)."""
        assert self._guard is not None and self._classifier is not None
        step = self._guard.max_chars
        last: Verdict | None = None
        for start in range(0, len(text), step):
            window = text[start:start + step]
            key = hashlib.sha256(window.encode("utf-8", "surrogatepass")).hexdigest()
            with self._lock:
                cached = self._cache.get(key)
                if cached is None and self._down is None:
                    if self._calls >= self._guard.max_calls:
                        self._decide("screened", "guard", f"the guard's cap of {self._guard.max_calls} "
                                     "calls per run was reached: later text was screened by the "
                                     "patterns only")
                        return last
                    self._calls += 1
            if cached is None and self._down is None:
                try:
                    cached = self._classifier.classify(window)
                except GuardUnavailable as exc:
                    with self._lock:
                        self._down = str(exc)
                else:
                    with self._lock:
                        self._cache[key] = cached
            if cached is None:  # the guard is down
                return self._unavailable()
            if cached.flagged:
                return cached
            last = cached
        return last

    def _unavailable(self) -> Verdict | None:
        assert self._guard is not None
        if self._guard.on_error == "closed":
            self._decide("screened", "guard", f"guard unavailable ({self._down}): retrieved text and tool "
                         "output are treated as injections (fail closed)")
            return Verdict(True, "guard unavailable")
        self._decide("screened", "guard", f"guard unavailable ({self._down}): text was screened by the "
                     "patterns only (fail open)")
        return None
