"""Chroma-backed :class:`VectorStore`: ``PersistentClient`` in embedded mode, ``HttpClient`` otherwise.

We always hand Chroma our own vectors and never let it embed: its default embedding function
downloads a model on first use, which Corral must never do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache, wraps
from typing import Any, TypeVar

import httpx

from corral.core.config import get_settings
from corral.core.errors import ServiceUnavailableError
from corral.core.index.store import Hit, IndexedChunk, VectorStore

__all__ = ["ChromaStore", "get_vector_store"]

_UPSERT_BATCH = 1000


F = TypeVar("F", bound=Callable[..., Any])


def _unreachable_is_unavailable(method: F) -> F:
    """A Chroma server that cannot be reached (stopped, restarting) is a ServiceUnavailableError —
    transient, so a batch task retries it with backoff — not a bug that fails the batch's
    documents for good. Chroma's client says so with httpx errors, or a ValueError of its own."""

    @wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (httpx.TransportError, ConnectionError) as exc:
            raise ServiceUnavailableError(f"the Chroma server is unreachable: {exc!r}") from exc
        except ValueError as exc:
            if "could not connect" in str(exc).lower():
                raise ServiceUnavailableError(f"the Chroma server is unreachable: {exc}") from exc
            raise

    return call  # type: ignore[return-value]


def _collection_name(corpus_id: int) -> str:
    return f"corral-corpus-{corpus_id}"


class ChromaStore:
    def __init__(self, client: Any) -> None:
        self._client = client

    def _collection(self, corpus_id: int) -> Any:
        return self._client.get_or_create_collection(
            _collection_name(corpus_id),
            embedding_function=None,
            metadata={"hnsw:space": "cosine"},
        )

    @_unreachable_is_unavailable
    def upsert(self, corpus_id: int, chunks: Sequence[IndexedChunk]) -> None:
        if not chunks:
            return
        collection = self._collection(corpus_id)
        for start in range(0, len(chunks), _UPSERT_BATCH):
            batch = chunks[start : start + _UPSERT_BATCH]
            collection.upsert(
                ids=[c.id for c in batch],
                embeddings=[list(c.embedding) for c in batch],
                documents=[c.text for c in batch],
                metadatas=[dict(c.metadata) or None for c in batch],
            )

    @_unreachable_is_unavailable
    def delete(self, corpus_id: int, chunk_ids: Sequence[str]) -> None:
        if chunk_ids:
            self._collection(corpus_id).delete(ids=list(chunk_ids))

    @_unreachable_is_unavailable
    def get_embeddings(self, corpus_id: int, chunk_ids: Sequence[str]) -> dict[str, list[float]]:
        if not chunk_ids:
            return {}
        collection = self._collection(corpus_id)
        found: dict[str, list[float]] = {}
        ids = list(dict.fromkeys(chunk_ids))
        for start in range(0, len(ids), _UPSERT_BATCH):
            res = collection.get(ids=ids[start : start + _UPSERT_BATCH], include=["embeddings"])
            for cid, vector in zip(res["ids"], res["embeddings"], strict=True):
                found[cid] = [float(x) for x in vector]
        return found

    @_unreachable_is_unavailable
    def query(self, corpus_id: int, embedding: Sequence[float], k: int) -> list[Hit]:
        collection = self._collection(corpus_id)
        n = min(k, collection.count())
        if n == 0:
            return []
        res = collection.query(
            query_embeddings=[list(embedding)],
            n_results=n,
            include=["documents", "metadatas", "distances"],
        )
        return [
            Hit(chunk_id=cid, score=1.0 - float(dist), text=doc or "", metadata=meta or {})
            for cid, dist, doc, meta in zip(
                res["ids"][0], res["distances"][0], res["documents"][0], res["metadatas"][0],
                strict=True,
            )
        ]

    @_unreachable_is_unavailable
    def count(self, corpus_id: int) -> int:
        return int(self._collection(corpus_id).count())

    @_unreachable_is_unavailable
    def drop(self, corpus_id: int) -> None:
        try:
            self._client.delete_collection(_collection_name(corpus_id))
        except Exception as exc:  # Chroma raises a bare error type for a missing collection
            if "does not exist" not in str(exc):
                raise


@lru_cache(maxsize=4)
def _client(host: str | None, port: int, path: str) -> Any:
    # chromadb takes a second or more to import: only a process that opens the store pays for it.
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    try:
        if host:
            return chromadb.HttpClient(host=host, port=port, settings=settings)
        return chromadb.PersistentClient(path=path, settings=settings)
    except Exception as exc:
        where = f"{host}:{port}" if host else path
        raise ServiceUnavailableError(f"cannot open the Chroma store at {where}: {exc}") from exc


def get_vector_store() -> VectorStore:
    """The configured vector store (a Chroma server when ``CORRAL_CHROMA_HOST`` is set)."""
    s = get_settings()
    return ChromaStore(_client(s.chroma_host, s.chroma_port, str(s.chroma_path)))
