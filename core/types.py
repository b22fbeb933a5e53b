"""Small shared types that cross layers without dragging their implementations along."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

__all__ = ["Embedder"]


@runtime_checkable
class Embedder(Protocol):
    """Turns text into vectors. Same shape as LangChain's ``Embeddings``, so either fits.

    Ingestion provides the implementation; agents receive one injected by the platform.
    """

    @property
    def model_name(self) -> str: ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...
