"""Reading the corpus: hybrid search (dense + BM25, fused), order-preserving passages, whole documents."""

from corral.agents.retrieval.fusion import reciprocal_rank_fusion, stable_fusion
from corral.agents.retrieval.hybrid import HybridSearcher, KeywordSearch, Ranked, Searcher, find_keyword_index
from corral.agents.retrieval.passages import (
    HEADER_TOKENS,
    Passage,
    corpus_parts,
    order_preserving,
    ranked_parts,
    render,
    scoped_doc_tokens,
    scoped_documents,
    whole_corpus,
)
from corral.agents.retrieval.query import content_terms, keyword_query

__all__ = [
    "HEADER_TOKENS",
    "HybridSearcher",
    "KeywordSearch",
    "Passage",
    "Ranked",
    "Searcher",
    "content_terms",
    "corpus_parts",
    "find_keyword_index",
    "keyword_query",
    "order_preserving",
    "ranked_parts",
    "reciprocal_rank_fusion",
    "render",
    "scoped_doc_tokens",
    "scoped_documents",
    "stable_fusion",
    "whole_corpus",
]
