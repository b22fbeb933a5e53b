"""The router's first cut: stuff what fits, retrieve what does not, and say why in numbers."""

from __future__ import annotations

from corral.agents.ask import Strategy, choose_strategy
from corral.agents.ask.router import context_budget


def test_budget_reserves_question_answer_and_overhead() -> None:
    assert context_budget(8192, 20, 256, 96) == 7820
    assert context_budget(100, 80, 50, 10) == 0


def test_small_corpus_is_stuffed_with_its_numbers_in_the_reason() -> None:
    d = choose_strategy(3000, 4, budget=7800, window=8192, retrieve_estimate=900)
    assert d.strategy is Strategy.STUFF
    assert d.estimated_tokens == 3000 + 4 * 12
    assert "3000 tokens in 4 documents" in d.reason and "8192-token window" in d.reason


def test_corpus_over_budget_is_retrieved() -> None:
    d = choose_strategy(65_000, 10, budget=7800, window=8192, retrieve_estimate=1900)
    assert d.strategy is Strategy.RETRIEVE
    assert d.estimated_tokens == 1900
    assert "exceeds" in d.reason


def test_header_cost_tips_a_borderline_corpus_to_retrieval() -> None:
    assert choose_strategy(7790, 5, budget=7800, window=8192, retrieve_estimate=10).strategy \
        is Strategy.RETRIEVE


def test_request_may_force_either_strategy() -> None:
    assert choose_strategy(10, 1, 7800, 8192, 10, forced=Strategy.RETRIEVE).strategy is Strategy.RETRIEVE
    forced = choose_strategy(99_999, 1, 7800, 8192, 10, forced=Strategy.STUFF)
    assert forced.strategy is Strategy.STUFF and "forced" in forced.reason
