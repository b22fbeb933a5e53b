"""Dense embeddings for chunks and queries (all-MiniLM-L6-v2 by default, from its PyPI package)."""

from corral.ingestion.embedding.dedup import EmbedStats, content_hash, embed_deduplicated
from corral.ingestion.embedding.embedder import SentenceTransformerEmbedder, get_embedder

__all__ = [
    "EmbedStats",
    "SentenceTransformerEmbedder",
    "content_hash",
    "embed_deduplicated",
    "get_embedder",
]
