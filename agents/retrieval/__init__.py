"""Reading the corpus: hybrid search (dense + BM25, fused), order-preserving passages, whole documents."""

from corral.agents.retrieval.fusion import reciprocal_rank_fusion, stable_fusion
from corral.agents.retrieval.hybrid import HybridSearcher, KeywordSearch, Ranked, Searcher, find_keyword_index
from corral.agents.retrieval.passages import (
    HEADER_TOKENS,
    Box,
    Passage,
    corpus_parts,
    image_kind,
    image_of,
    order_preserving,
    ranked_parts,
    render,
    scoped_doc_tokens,
    scoped_documents,
    source_name,
    whole_corpus,
)
from corral.agents.retrieval.query import content_terms, keyword_query

__all__ = [
    "HEADER_TOKENS",
    "Box",
    "HybridSearcher",
    "KeywordSearch",
    "Passage",
    "Ranked",
    "Searcher",
    "content_terms",
    "corpus_parts",
    "find_keyword_index",
    "image_kind",
    "image_of",
    "keyword_query",
    "order_preserving",
    "ranked_parts",
    "reciprocal_rank_fusion",
    "render",
    "scoped_doc_tokens",
    "scoped_documents",
    "source_name",
    "stable_fusion",
    "whole_corpus",
]
