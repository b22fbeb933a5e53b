"""Prometheus metrics of the inference server, in a registry of its own (one per app).

Request counters and token counters are recorded per finished request; an engine that implements
the optional ``stats()`` (see ``corral.inference.generation.SupportsStats``) adds its own
throughput, prefix-cache hit rate and per-expert utilisation, read at scrape time.

The ``model`` label takes only the served model ids (anything else is counted as ``unknown``): a
label taken from the request would let clients grow the series without bound.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from corral.inference.chat.service import Usage

__all__ = ["CONTENT_TYPE", "InferenceMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNKNOWN_MODEL = "unknown"
log = logging.getLogger(__name__)


class InferenceMetrics:
    def __init__(self, engines: Mapping[str, Any]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._engines = dict(engines)
        self._lock = threading.Lock()
        self._totals: dict[str, dict[str, float]] = {
            name: {"prompt": 0.0, "cached": 0.0, "completion": 0.0, "decode_s": 0.0} for name in engines
        }
        r = self.registry
        self.requests = Counter("corral_inference_requests", "Chat completion requests by outcome.",
                                ["model", "outcome"], registry=r)
        self.prompt_tokens = Counter("corral_inference_prompt_tokens", "Prompt tokens.", ["model"],
                                     registry=r)
        self.cached_tokens = Counter("corral_inference_cached_prompt_tokens",
                                     "Prompt tokens served from the prefix cache.", ["model"], registry=r)
        self.completion_tokens = Counter("corral_inference_completion_tokens", "Generated tokens.",
                                         ["model"], registry=r)
        self.first_token = Histogram("corral_inference_time_to_first_token_seconds",
                                     "Request start to first generated token.", ["model"], registry=r,
                                     buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
        r.register(_Derived(self))

    def _label(self, model: str) -> str:
        return model if model in self._engines else UNKNOWN_MODEL

    def record(self, model: str, usage: Usage) -> None:
        model = self._label(model)
        self.requests.labels(model, "ok").inc()
        self.prompt_tokens.labels(model).inc(usage.prompt_tokens)
        self.cached_tokens.labels(model).inc(usage.cached_tokens)
        self.completion_tokens.labels(model).inc(usage.completion_tokens)
        self.first_token.labels(model).observe(usage.first_token_s)
        with self._lock:
            t = self._totals.setdefault(model, {"prompt": 0.0, "cached": 0.0, "completion": 0.0,
                                                "decode_s": 0.0})
            t["prompt"] += usage.prompt_tokens
            t["cached"] += usage.cached_tokens
            # The first token comes with the prefill; decode throughput counts the tokens after it.
            t["completion"] += max(usage.completion_tokens - 1, 0)
            decode_s = usage.decode_s if usage.decode_s is not None else usage.total_s - usage.first_token_s
            t["decode_s"] += max(decode_s, 0.0)

    def record_failure(self, model: str, outcome: str) -> None:
        self.requests.labels(self._label(model), outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {name: dict(t) for name, t in self._totals.items()}

    def engine_stats(self, name: str) -> Mapping[str, Any]:
        stats = getattr(self._engines.get(name), "stats", None)
        if not callable(stats):
            return {}
        try:
            found = stats()
        except Exception:  # a broken stats() must not take /metrics down
            log.exception("stats() of engine %s failed", name)
            return {}
        return found if isinstance(found, Mapping) else {}


class _Derived(Collector):
    """Gauges computed at scrape time from the totals and from each engine's ``stats()``."""

    def __init__(self, metrics: InferenceMetrics) -> None:
        self._m = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tps = GaugeMetricFamily("corral_inference_tokens_per_second",
                                "Decode throughput (engine-reported, else averaged over requests).",
                                labels=["model"])
        hit = GaugeMetricFamily("corral_inference_prefix_cache_hit_rate",
                                "Share of prompt tokens served from the prefix cache.", labels=["model"])
        experts = GaugeMetricFamily("corral_inference_expert_utilisation",
                                    "Share of routed tokens each expert received, per MoE layer.",
                                    labels=["model", "layer", "expert"])
        for name, t in self._m.snapshot().items():
            stats = self._m.engine_stats(name)
            rate = stats.get("tokens_per_second")
            if not isinstance(rate, int | float):
                rate = t["completion"] / t["decode_s"] if t["decode_s"] > 0 else 0.0
            tps.add_metric([name], float(rate))
            share = stats.get("prefix_cache_hit_rate")
            if not isinstance(share, int | float):
                share = t["cached"] / t["prompt"] if t["prompt"] > 0 else 0.0
            hit.add_metric([name], float(share))
            per_layer = stats.get("expert_utilisation")
            if isinstance(per_layer, Mapping):
                for layer, values in per_layer.items():
                    for expert, value in enumerate(values):
                        experts.add_metric([name, str(layer), str(expert)], float(value))
        yield tps
        yield hit
        yield experts
