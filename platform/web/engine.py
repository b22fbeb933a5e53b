"""What the Engine page shows: the chat engine's tokens/s, prefix-cache hit rate and per-expert
utilisation, now and over the last hour.

Where the engine runs decides where they are read: the embedded engine of this process (its
``stats()``, once the model is loaded — the page never loads it), or, with
``CORRAL_CHAT_BACKEND=openai``, the inference service's Prometheus ``/metrics`` (beside its ``/v1``;
``CORRAL_OPENAI_API_KEY`` as the bearer). A sampler thread, started by the first visit to the page,
keeps a reading every :data:`SAMPLE_S` seconds for an hour, so the plots fill in as the process runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from corral.core.config import get_settings

__all__ = ["EngineReading", "engine_history", "read_engine", "read_metrics_text", "series"]

log = logging.getLogger(__name__)

SAMPLE_S = 15.0
HOUR = int(3600 / SAMPLE_S)


@dataclass(frozen=True, slots=True)
class EngineReading:
    """One look at the engine; ``source`` says where it came from, ``problem`` why there is nothing."""

    at: float
    source: str
    tokens_per_second: float | None = None
    prefix_cache_hit_rate: float | None = None
    experts: dict[int, list[float]] = field(default_factory=dict)  # layer -> each expert's share
    extra: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


def _embedded(now: float) -> EngineReading:
    from corral.platform.composition import get_chat_model

    if not get_chat_model.loaded:
        return EngineReading(now, "embedded", problem="the chat model is not loaded in this process yet: "
                             "it loads on the first question")
    stats = getattr(get_chat_model(), "stats", None)
    if not callable(stats):
        return EngineReading(now, "embedded", problem="the loaded backend (transformers) reports no engine "
                             "statistics; CORRAL_INFERENCE_BACKEND=engine does")
    found = stats()
    experts = found.get("expert_utilisation") or {}
    return EngineReading(now, "embedded", float(found.get("tokens_per_second") or 0.0),
                         float(found.get("prefix_cache_hit_rate") or 0.0),
                         {int(k): [float(x) for x in v] for k, v in experts.items()},
                         extra={"requests": found.get("requests"), **(found.get("batching") or {})})


def read_metrics_text(text: str, now: float, source: str) -> EngineReading:
    """A reading from the inference service's Prometheus text (the first model it lists)."""
    tps: float | None = None
    hit: float | None = None
    experts: dict[int, dict[int, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "corral_inference_tokens_per_second" and tps is None:
                tps = float(sample.value)
            elif sample.name == "corral_inference_prefix_cache_hit_rate" and hit is None:
                hit = float(sample.value)
            elif sample.name == "corral_inference_expert_utilisation":
                layer, expert = sample.labels.get("layer", ""), sample.labels.get("expert", "")
                if layer.isdigit() and expert.isdigit():
                    experts.setdefault(int(layer), {})[int(expert)] = float(sample.value)
    grid = {layer: [row.get(e, 0.0) for e in range(max(row) + 1)] for layer, row in experts.items() if row}
    return EngineReading(now, source, tps, hit, grid)


def _remote(now: float, base_url: str, api_key: str | None) -> EngineReading:
    root = base_url.rstrip("/")
    root = root[:-3] if root.endswith("/v1") else root
    url = f"{root}/metrics"
    try:
        got = httpx.get(url, timeout=5, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
        got.raise_for_status()
    except httpx.HTTPError as exc:
        return EngineReading(now, url, problem=f"the inference service's metrics did not answer: {exc}")
    return read_metrics_text(got.text, now, url)


def read_engine() -> EngineReading:
    """A reading now, from wherever this deployment's engine runs."""
    now = time.time()
    settings = get_settings()
    try:
        if settings.chat_backend == "openai":
            key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
            return _remote(now, settings.openai_base_url or "", key)
        return _embedded(now)
    except Exception as exc:  # a broken reading is shown on the page, never an error page
        log.warning("reading the engine's statistics failed: %s", exc)
        return EngineReading(now, "engine", problem=f"reading the engine's statistics failed: {exc}")


class _History:
    """The last hour of readings, taken by one daemon thread once someone looks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readings: deque[EngineReading] = deque(maxlen=HOUR)
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            time.sleep(SAMPLE_S)
            self.add(read_engine())

    def add(self, reading: EngineReading) -> None:
        with self._lock:
            self._readings.append(reading)

    def readings(self) -> list[EngineReading]:
        """The hour's readings, starting the sampler on first use."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="corral-engine-sampler", daemon=True)
                self._thread.start()
            return list(self._readings)


_HISTORY = _History()


def engine_history(current: EngineReading) -> list[EngineReading]:
    """The last hour, ending with ``current`` (which is kept as a reading too)."""
    _HISTORY.add(current)
    return _HISTORY.readings()


def series(readings: list[EngineReading]) -> Mapping[str, list[float | None]]:
    """uPlot's columns: seconds since the epoch, tokens/s, hit rate (as %)."""
    usable = [r for r in readings if r.problem is None]
    return {"t": [round(r.at, 1) for r in usable],
            "tps": [r.tokens_per_second for r in usable],
            "hit": [None if r.prefix_cache_hit_rate is None else round(100 * r.prefix_cache_hit_rate, 2)
                    for r in usable]}
