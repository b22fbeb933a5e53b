"""The index store: dense vectors in Chroma (embedded on disk or a Chroma server)."""

from corral.core.index.chroma import ChromaStore, get_vector_store
from corral.core.index.store import Hit, IndexedChunk, VectorStore

__all__ = ["ChromaStore", "Hit", "IndexedChunk", "VectorStore", "get_vector_store"]
