"""Dense embeddings for chunks and queries (all-MiniLM-L6-v2 by default, from its PyPI package)."""

from corral.ingestion.embedding.embedder import SentenceTransformerEmbedder, get_embedder

__all__ = ["SentenceTransformerEmbedder", "get_embedder"]
