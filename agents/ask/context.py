"""Building the text the model reads: whole documents (stuff) or retrieved passages (retrieve).

Either way passages come in document order (path, then position), which is what order-preserving
RAG found to beat relevance order, and each carries a number the answer can cite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from corral.core.db import Chunk, Document, DocumentStatus
from corral.core.index import Hit, VectorStore
from corral.core.types import Embedder


@dataclass(slots=True)
class Passage:
    number: int
    path: str
    start_line: int
    end_line: int
    text: str
    tokens: int
    score: float | None = None

    @property
    def label(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"


def whole_corpus(session: Session, corpus_id: int) -> list[Passage]:
    """Every indexed document, whole, in path order."""
    docs = session.scalars(
        select(Document)
        .where(Document.corpus_id == corpus_id, Document.status == DocumentStatus.INDEXED)
        .order_by(Document.path)
        .options(selectinload(Document.chunks))
    )
    return [
        Passage(n, d.path, 1, max(d.line_count, 1), "".join(c.text for c in d.chunks), d.token_count)
        for n, d in enumerate(docs, start=1)
    ]


def search(
    session: Session, store: VectorStore, embedder: Embedder, corpus_id: int, question: str, k: int
) -> list[tuple[Chunk, float]]:
    """The ``k`` chunks closest to ``question``, best first, with their SQL rows."""
    hits: list[Hit] = store.query(corpus_id, embedder.embed_query(question), k)
    rows = {
        c.id: c
        for c in session.scalars(
            select(Chunk)
            .where(Chunk.id.in_([h.chunk_id for h in hits]))
            .options(selectinload(Chunk.document))
        )
    }
    # A hit without a row is a chunk whose document changed since; skip it rather than cite it.
    return [(rows[h.chunk_id], h.score) for h in hits if h.chunk_id in rows]


def retrieved_passages(ranked: Sequence[tuple[Chunk, float]], budget: int) -> list[Passage]:
    """Take chunks best-first while they fit ``budget``, then merge neighbours in document order."""
    chosen: list[tuple[Chunk, float]] = []
    used = 0
    for chunk, score in ranked:
        cost = chunk.token_count + 12  # the passage header
        if used + cost > budget:
            continue
        chosen.append((chunk, score))
        used += cost
    chosen.sort(key=lambda cs: (cs[0].document.path, cs[0].ordinal))
    passages: list[Passage] = []
    last: tuple[str, int] | None = None
    for chunk, score in chosen:
        path = chunk.document.path
        if last == (path, chunk.ordinal - 1):  # adjacent slice of the same document: extend
            p = passages[-1]
            p.text += chunk.text
            p.end_line = chunk.end_line
            p.tokens += chunk.token_count
            p.score = max(p.score or score, score)
        else:
            passages.append(Passage(len(passages) + 1, path, chunk.start_line, chunk.end_line,
                                    chunk.text, chunk.token_count, score))
        last = (path, chunk.ordinal)
    return passages


def render(passages: Sequence[Passage]) -> str:
    return "\n\n".join(f"[{p.number}] {p.label}\n{p.text.strip(chr(10))}" for p in passages)
