"""The routing policy and the question classifier: pure functions on measured numbers."""

from __future__ import annotations

import pytest

from corral.agents.routing import (
    QuestionType,
    RouterInputs,
    Strategy,
    choose_strategy,
    classify_question,
    context_budget,
    lexical_overlap,
)


def inputs(**kw: object) -> RouterInputs:
    base: dict[str, object] = dict(corpus_tokens=3000, document_count=4, budget=7800, window=8192,
                                   retrieve_tokens=900, scoped_tokens=1500, overlap=0.8, top_score=0.6)
    base.update(kw)
    return RouterInputs(**base)  # type: ignore[arg-type]


def test_budget_reserves_question_answer_and_overhead() -> None:
    assert context_budget(8192, 20, 256, 96) == 7820
    assert context_budget(100, 80, 50, 10) == 0


@pytest.mark.parametrize(("question", "kind"), [
    ("What is the launch code for project Falcon?", QuestionType.NEEDLE),
    ("How many warehouses store lanterns?", QuestionType.GLOBAL),
    ("List all the functions that open sockets", QuestionType.GLOBAL),
    ("Summarize the main themes of the handbook", QuestionType.GLOBAL),
    ("Compare the retry policy of the client and the server", QuestionType.MULTI_HOP),
    ("Which function calls parse_header and what does it return?", QuestionType.MULTI_HOP),
    ("", QuestionType.NEEDLE),
])
def test_questions_are_classified_by_their_wording(question: str, kind: QuestionType) -> None:
    assert classify_question(question).type is kind


def test_another_language_is_noticed_and_terms_drop_stop_words() -> None:
    s = classify_question("¿Cuándo salen los paquetes del almacén?")
    assert not s.english and s.type is QuestionType.NEEDLE
    e = classify_question("When do the parcels leave the warehouse?")
    assert e.english and e.terms == ("parcels", "leave", "warehouse")


def test_lexical_overlap_counts_question_terms_seen_in_the_text() -> None:
    assert lexical_overlap(["parcels", "tuesday"], ["Parcels leave on Tuesday."]) == 1.0
    assert lexical_overlap(["parcels", "monday"], ["Parcels leave on Tuesday."]) == 0.5
    assert lexical_overlap([], ["anything"]) == 0.0


def test_small_corpus_with_weak_retrieval_is_stuffed_and_the_numbers_are_in_the_reason() -> None:
    d = choose_strategy(inputs(retrieve_tokens=2500))
    assert d.strategy is Strategy.STUFF
    assert d.estimated_tokens == 3000 + 4 * 12
    assert "3000 tokens in 4 documents" in d.reason and "8192-token window" in d.reason
    assert "82%" in d.reason  # 2500 of 3048 tokens


def test_corpus_that_fits_reads_the_hit_documents_whole_when_they_are_cheap() -> None:
    d = choose_strategy(inputs(corpus_tokens=7000, document_count=10, retrieve_tokens=900,
                               scoped_tokens=1500))
    assert d.strategy is Strategy.SCOPED_STUFF and d.fallback == (Strategy.STUFF,)
    # The hit documents (1500 tokens) whole, then other hits' passages up to a quarter of 7120 tokens.
    assert "confident" in d.reason and "passages" in d.reason and d.estimated_tokens == 1780


def test_corpus_that_fits_is_retrieved_when_only_passages_are_cheap() -> None:
    d = choose_strategy(inputs(corpus_tokens=7000, document_count=10, retrieve_tokens=900,
                               scoped_tokens=5000))
    assert d.strategy is Strategy.RETRIEVE and d.fallback == (Strategy.STUFF,)
    assert "reads 13% of it" in d.reason and d.estimated_tokens == 900


def test_bm25_and_dense_agreeing_makes_a_low_similarity_confident() -> None:
    weak = inputs(corpus_tokens=7000, top_score=0.1, scoped_tokens=5000)
    assert choose_strategy(weak).strategy is Strategy.STUFF
    agreed = inputs(corpus_tokens=7000, top_score=0.1, scoped_tokens=5000, agreement=True)
    d = choose_strategy(agreed)
    assert d.strategy is Strategy.RETRIEVE and "agree" in d.reason


def test_weak_retrieval_still_reads_little_first_and_escalates_to_stuff() -> None:
    # Self-Route: the cheap read goes first; the model's "cannot answer" escalates to the whole corpus.
    for weak in (inputs(corpus_tokens=7000, overlap=0.0), inputs(corpus_tokens=7000, top_score=0.05)):
        d = choose_strategy(weak)
        assert d.strategy is Strategy.SCOPED_STUFF and d.fallback == (Strategy.STUFF,)
        assert "not confident" in d.reason and d.scope_cap == int(0.25 * 7048)


def test_hit_documents_are_read_best_first_up_to_a_quarter_of_the_corpus() -> None:
    d = choose_strategy(inputs(corpus_tokens=20_000, budget=30_000, scoped_tokens=9000,
                               scoped_doc_tokens=(3000, 4000, 2000)))
    assert d.strategy is Strategy.SCOPED_STUFF and d.scope_cap == 5012  # a quarter of 20,048
    # 3000 + 2000 whole (the 4000-token document does not fit the cap), then 12 tokens of passages.
    assert d.estimated_tokens == 5012


def test_cached_prefix_makes_stuffing_cheaper_than_retrieving() -> None:
    d = choose_strategy(inputs(corpus_tokens=7000, prefix_cached=True, cost_per_1k_input=1.0,
                               cost_per_1k_cached_input=0.1))
    assert d.strategy is Strategy.STUFF and "cached" in d.reason
    assert d.estimates["stuff"]["cost"] < d.estimates["retrieve"]["cost"]


def test_corpus_over_budget_is_retrieved_with_an_escalation_chain() -> None:
    d = choose_strategy(inputs(corpus_tokens=65_000, document_count=10, retrieve_tokens=1900,
                               scoped_tokens=20_000))
    assert d.strategy is Strategy.RETRIEVE
    assert d.fallback == (Strategy.MAP_REDUCE,)  # the hit documents do not fit the budget
    assert "exceeds" in d.reason and d.estimated_tokens == 1900
    assert not d.estimates["stuff"]["fits"]
    # The hit documents fit but are over a quarter of the corpus: retrieve, escalate to them.
    fits = choose_strategy(inputs(corpus_tokens=20_000, retrieve_tokens=1900, scoped_tokens=7000))
    assert fits.strategy is Strategy.RETRIEVE
    assert fits.fallback == (Strategy.SCOPED_STUFF, Strategy.MAP_REDUCE)


def test_past_the_window_cheap_hit_documents_are_read_whole() -> None:
    d = choose_strategy(inputs(corpus_tokens=200_000, budget=120_000, window=131_072, scoped_tokens=30_000))
    assert d.strategy is Strategy.SCOPED_STUFF and d.fallback == (Strategy.MAP_REDUCE,)


def test_past_the_window_hit_documents_are_read_whole_only_when_all_of_them_fit() -> None:
    # The best hit's document fits, the others do not: reading it whole would drop the other hits.
    d = choose_strategy(inputs(corpus_tokens=150_000, budget=7800, scoped_tokens=30_000,
                               scoped_doc_tokens=(2000, 12_000, 16_000), retrieve_tokens=7500))
    assert d.strategy is Strategy.RETRIEVE and d.estimated_tokens == 7500


def test_header_cost_tips_a_borderline_corpus_over_the_budget() -> None:
    assert not inputs(corpus_tokens=7790, document_count=5).fits


def test_global_questions_read_everything_or_map_reduce() -> None:
    small = choose_strategy(inputs(question_type=QuestionType.GLOBAL))
    assert small.strategy is Strategy.STUFF and "global" in small.reason
    big = choose_strategy(inputs(corpus_tokens=40_000, question_type=QuestionType.GLOBAL))
    assert big.strategy is Strategy.MAP_REDUCE and "6 window-sized parts" in big.reason
    assert big.estimates["map-reduce"]["calls"] == 7


def test_multi_hop_reads_whole_documents() -> None:
    d = choose_strategy(inputs(corpus_tokens=65_000, question_type=QuestionType.MULTI_HOP,
                               scoped_tokens=5000))
    assert d.strategy is Strategy.SCOPED_STUFF and d.fallback == (Strategy.MAP_REDUCE,)
    d2 = choose_strategy(inputs(corpus_tokens=7000, question_type=QuestionType.MULTI_HOP,
                                scoped_tokens=2000))
    assert d2.strategy is Strategy.SCOPED_STUFF


def test_unanswerable_questions_read_the_least() -> None:
    assert choose_strategy(inputs(question_type=QuestionType.UNANSWERABLE)).strategy is Strategy.RETRIEVE


def test_request_may_force_any_strategy_and_the_record_says_so() -> None:
    for s in Strategy:
        d = choose_strategy(inputs(corpus_tokens=99_999, forced=s))
        assert d.strategy is s and "forced" in d.reason and d.fallback == ()
    rec = choose_strategy(inputs(forced=Strategy.STUFF, corpus_tokens=99_999)).to_record()
    assert rec["inputs"]["forced"] == "stuff" and "left out" in rec["reasons"][-1]
    assert set(rec["estimates"]) == {"stuff", "retrieve", "scoped-stuff", "map-reduce"}
