"""The index store: dense vectors in Chroma (embedded on disk or a Chroma server) and a keyword index
in the SQL database, both addressed by the same chunk ids."""

from corral.core.index.chroma import ChromaStore, get_vector_store
from corral.core.index.keyword import KeywordIndex, SqlKeywordIndex, get_keyword_index
from corral.core.index.store import Hit, IndexedChunk, VectorStore

__all__ = [
    "ChromaStore",
    "Hit",
    "IndexedChunk",
    "KeywordIndex",
    "SqlKeywordIndex",
    "VectorStore",
    "get_keyword_index",
    "get_vector_store",
]
