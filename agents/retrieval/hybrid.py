"""Hybrid search: dense (the vector store) and lexical (the BM25 keyword index), fused by RRF.

The dense list embeds the question as asked; the lexical list gets its content words (``keyword_query``).
Asking for more hits (retrieve filling a large budget) appends hits: the fused head is ordered by the
first ``fuse_depth`` ranks of each list only (``stable_fusion``).

The keyword index is optional: ``find_keyword_index`` returns None where it cannot open, and search is
then dense only; each result says which lists it came from. What the agents need of any searcher is
``Searcher``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from corral.agents.retrieval.fusion import stable_fusion
from corral.agents.retrieval.query import keyword_query
from corral.core.db import Chunk
from corral.core.index import Hit, VectorStore, get_keyword_index
from corral.core.types import Embedder

__all__ = ["HybridSearcher", "KeywordSearch", "Ranked", "Searcher", "find_keyword_index"]

log = logging.getLogger(__name__)


class KeywordSearch(Protocol):
    """The BM25 keyword index contract (``corral.core.index``): best-first hits for a query."""

    def search(self, corpus_id: int, query: str, k: int) -> list[Hit]: ...


@dataclass(frozen=True, slots=True)
class Ranked:
    """A chunk found by search, best first; ``dense`` is its cosine similarity when dense found it."""

    chunk: Chunk
    score: float  # fused (RRF) score, or the cosine similarity when only dense search ran
    dense: float | None
    keyword_rank: int | None  # 1-based rank in the BM25 list, None when BM25 did not return it
    dense_rank: int | None = None  # 1-based rank in the dense list


class Searcher(Protocol):
    """Search over one corpus as the router and the tools use it: ``k`` chunk rows, best first."""

    @property
    def hybrid(self) -> bool:
        """Whether a keyword list is fused with the dense one (the router then weighs their agreement)."""
        ...

    def search(self, session: Session, corpus_id: int, question: str, k: int) -> list[Ranked]: ...


def find_keyword_index() -> KeywordSearch | None:
    """The configured keyword index, or None where it cannot open (dense-only search)."""
    try:
        index: KeywordSearch = get_keyword_index()
    except Exception as exc:  # a broken keyword index must not stop dense search
        log.warning("keyword index unavailable, searching dense only: %s", exc)
        return None
    return index


class HybridSearcher:
    """Dense + BM25 search over one corpus, returning SQL chunk rows in fused order."""

    def __init__(self, store: VectorStore, embedder: Embedder, keyword: KeywordSearch | None = None,
                 *, pool: int = 4, fuse_depth: int = 32) -> None:
        self._store = store
        self._embedder = embedder
        self._keyword = keyword
        self._pool = pool  # each list fetches pool * k, so fusion has candidates from both
        self._fuse_depth = fuse_depth  # the ranks of each list that order the fused head

    @property
    def hybrid(self) -> bool:
        return self._keyword is not None

    def search(self, session: Session, corpus_id: int, question: str, k: int) -> list[Ranked]:
        """The ``k`` best chunks for ``question``; chunks whose rows are gone (re-indexed) are skipped."""
        if k <= 0 or not question.strip():
            return []
        want = k * self._pool if self._keyword is not None else k
        dense_hits = self._store.query(corpus_id, self._embedder.embed_query(question), want)
        dense = {h.chunk_id: h.score for h in dense_hits}
        dense_ranks = {h.chunk_id: r for r, h in enumerate(dense_hits, start=1)}
        lists: list[list[str]] = [[h.chunk_id for h in dense_hits]]
        keyword_ranks: dict[str, int] = {}
        if self._keyword is not None:
            try:
                kw_hits = self._keyword.search(corpus_id, keyword_query(question), want)
            except Exception as exc:  # degrade to dense, say so in the log
                log.warning("keyword search failed, using dense only: %s", exc)
                kw_hits = []
            keyword_ranks = {h.chunk_id: r for r, h in enumerate(kw_hits, start=1)}
            lists.append([h.chunk_id for h in kw_hits])
        fused = (stable_fusion(lists, self._fuse_depth) if self._keyword is not None
                 else [(h.chunk_id, h.score) for h in dense_hits])
        rows = _rows(session, [cid for cid, _ in fused])
        out = [Ranked(rows[cid], score, dense.get(cid), keyword_ranks.get(cid), dense_ranks.get(cid))
               for cid, score in fused if cid in rows]
        return out[:k]


def _rows(session: Session, ids: Sequence[str]) -> dict[str, Chunk]:
    if not ids:
        return {}
    return {
        c.id: c
        for c in session.scalars(
            select(Chunk).where(Chunk.id.in_(list(ids))).options(selectinload(Chunk.document))
        )
    }
