"""Hybrid retrieval: RRF fusion, dense-only degradation, order-preserving passages, expansion."""

from __future__ import annotations

from corral.agents.retrieval import (
    corpus_parts,
    keyword_query,
    order_preserving,
    reciprocal_rank_fusion,
    scoped_documents,
    stable_fusion,
    whole_corpus,
)
from tests.agents.scripted import Corpora, WordSearcher


def test_rrf_rewards_agreement_and_is_deterministic() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]])
    assert [k for k, _ in fused] == ["a", "c", "b", "d"]
    assert reciprocal_rank_fusion([[], []]) == []
    assert [k for k, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]  # ties: first seen


def test_deeper_lists_add_hits_after_the_fused_head_and_never_reorder_it() -> None:
    dense = ["needle", "d1", "d2", "d3", "x", "y"]
    keyword = ["k1", "k2", "k3", "k4", "x", "y"]  # BM25 misses the paraphrased needle
    # Plain RRF over the deeper lists lets "x" and "y" (middling in both) overtake the needle.
    assert [k for k, _ in reciprocal_rank_fusion([dense, keyword])][:2] == ["x", "y"]
    head = [k for k, _ in stable_fusion([dense[:4], keyword[:4]], depth=4)]
    fused = [k for k, _ in stable_fusion([dense, keyword], depth=4)]
    assert fused[: len(head)] == head and head[0] == "needle" and fused[len(head):] == ["x", "y"]


def files() -> dict[str, str]:
    para = "Filler about the weather and the sea, repeated to make the file long enough.\n\n"
    big = para * 12 + "The harbour master's cat is called Biscuit.\n\n" + para * 12
    return {"c/a_big.txt": big, "c/b_small.txt": "Biscuit likes sardines.\n", "c/c_other.txt": para * 3}


def test_passages_come_in_document_order_and_small_files_are_read_whole(corpora: Corpora) -> None:
    cid = corpora.add("c", files(), max_chars=300)
    with corpora.sessions() as s:
        ranked = WordSearcher().search(s, cid, "Which cat is called Biscuit, and what does it eat?", 4)
        assert ranked and any("Biscuit" in r.chunk.text for r in ranked)
        plain = order_preserving(ranked, 10_000)
        assert [p.path for p in plain] == sorted(p.path for p in plain)  # path order, not score order
        assert [p.number for p in plain] == list(range(1, len(plain) + 1))
        widened = order_preserving(ranked, 10_000, expand_limit=64)
        small = [p for p in widened if p.path == "c/b_small.txt"]
        assert all(p.text == "Biscuit likes sardines.\n" for p in small)  # whole file: cheap
        assert order_preserving(ranked, 10) == []  # nothing fits a tiny budget
        # The budget is filled best-first: a later, smaller hit takes the room a bigger one left.
        assert sum(p.tokens for p in order_preserving(ranked, 200)) <= 200 - 12
        scoped = scoped_documents(ranked, 100_000)
        assert {p.path for p in scoped} == {r.chunk.document.path for r in ranked}
        # Scoped-stuff reads the best hit's document whole and spends what is left on other hits.
        best = ranked[0].chunk.document
        filled = scoped_documents(ranked, best.token_count + 200, top_k=1, fill=10_000)
        whole = [p for p in filled if p.path == best.path]
        assert len(whole) == 1 and whole[0].text == "".join(c.text for c in best.chunks)
        others = [p for p in filled if p.path != best.path]
        assert others and sum(p.tokens for p in filled) <= best.token_count + 200
        assert [p.path for p in filled] == sorted(p.path for p in filled)
        assert scoped_documents(ranked, best.token_count + 200, top_k=1) == whole  # no fill asked
        every = whole_corpus(s, cid)
        assert [p.path for p in every] == ["c/a_big.txt", "c/b_small.txt", "c/c_other.txt"]
        parts = corpus_parts(s, cid, 200)
        assert len(parts) > 2 and "".join(p.text for part in parts for p in part) == \
            "".join(p.text for p in every)  # the parts partition the corpus, in order
        numbers = [p.number for part in parts for p in part]
        assert numbers == list(range(1, len(numbers) + 1))


def test_the_keyword_query_keeps_content_words_and_splits_identifiers() -> None:
    assert keyword_query("Which function is responsible for parsing the HTTPResponse headers?") == \
        "function responsible parsing httpresponse http response headers"
    assert keyword_query("where is getAllHeaders or parse_header?") == \
        "getallheaders get headers parse header"
    assert keyword_query("Is it?") == "Is it?"  # nothing but function words: asked as it is
