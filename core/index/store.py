"""The vector-store interface the pipeline writes to and the agents read from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

MetadataValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    id: str
    text: str
    embedding: Sequence[float]
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk found by similarity; ``score`` is cosine similarity in [-1, 1], higher is closer."""

    chunk_id: str
    score: float
    text: str
    metadata: Mapping[str, MetadataValue]


class VectorStore(Protocol):
    """One collection per corpus, addressed by the corpus id. Upserts are idempotent by chunk id."""

    def upsert(self, corpus_id: int, chunks: Sequence[IndexedChunk]) -> None: ...

    def delete(self, corpus_id: int, chunk_ids: Sequence[str]) -> None: ...

    def get_embeddings(self, corpus_id: int, chunk_ids: Sequence[str]) -> dict[str, list[float]]:
        """The stored vectors of those of ``chunk_ids`` that exist (for reuse by content hash)."""
        ...

    def query(self, corpus_id: int, embedding: Sequence[float], k: int) -> list[Hit]: ...

    def count(self, corpus_id: int) -> int: ...

    def drop(self, corpus_id: int) -> None: ...
