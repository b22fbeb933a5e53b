"""What the pipeline's steps need, bundled once per process and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from corral.core.index import KeywordIndex, VectorStore
from corral.core.types import Embedder
from corral.ingestion.tokens import TokenCounter

__all__ = ["IngestServices"]


@dataclass(frozen=True, slots=True)
class IngestServices:
    session_factory: sessionmaker[Session]
    embedder: Embedder
    store: VectorStore
    keyword: KeywordIndex
    token_counter: TokenCounter
    max_file_bytes: int
    chunk_chars: int
    batch_size: int = 32
    # How often, at most, a batch asks between documents whether its job was cancelled.
    checkpoint_seconds: float = 1.0
