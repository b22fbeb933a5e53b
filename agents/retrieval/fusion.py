"""Reciprocal rank fusion (Cormack et al., 2009): rank-based, so BM25 and cosine scores need no scaling."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

__all__ = ["reciprocal_rank_fusion", "stable_fusion"]

K = TypeVar("K", bound=Hashable)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[K]], k: int = 60) -> list[tuple[K, float]]:
    """Fuse best-first ``rankings`` of ids: score(id) = sum over lists of 1 / (k + rank), rank from 1.

    Ties keep the order of first appearance (earlier lists win), so the result is deterministic.
    """
    scores: dict[K, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def stable_fusion(rankings: Sequence[Sequence[K]], depth: int, k: int = 60) -> list[tuple[K, float]]:
    """RRF whose head does not depend on how deep the lists go: the ids in the first ``depth`` ranks of
    any list are fused over those ranks alone, and the deeper ids follow, fused over the whole lists.

    Plain RRF over deeper lists lets ids that both lists rank middling overtake an id one list ranks
    first and the other lacks (a paraphrased needle BM25 misses); asking for more hits should add hits
    at the end, not reorder the best ones.
    """
    head = reciprocal_rank_fusion([r[:depth] for r in rankings], k)
    seen = {key for key, _ in head}
    return head + [(key, score) for key, score in reciprocal_rank_fusion(rankings, k) if key not in seen]
