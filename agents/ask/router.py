"""The reading-strategy router (first cut): stuff the whole corpus when it fits, else retrieve.

Plain code on measured numbers, so every decision can be explained and unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Strategy(StrEnum):
    STUFF = "stuff"
    RETRIEVE = "retrieve"


@dataclass(frozen=True, slots=True)
class Decision:
    strategy: Strategy
    reason: str
    budget: int  # tokens available for the corpus text in the prompt
    estimated_tokens: int  # tokens the chosen context is expected to take


def context_budget(window: int, question_tokens: int, max_new_tokens: int, overhead: int) -> int:
    """Tokens left for corpus text once the question, the instructions and the answer are reserved."""
    return max(window - question_tokens - max_new_tokens - overhead, 0)


def choose_strategy(
    corpus_tokens: int,
    document_count: int,
    budget: int,
    window: int,
    retrieve_estimate: int,
    forced: Strategy | None = None,
) -> Decision:
    """Decide how to read a corpus of ``corpus_tokens`` tokens when ``budget`` tokens are free.

    ``document_count`` adds the per-document header cost to the stuffing estimate, so a corpus that
    only fits without headers is not stuffed.
    """
    stuff_estimate = corpus_tokens + 12 * document_count
    if forced is Strategy.STUFF:
        return Decision(Strategy.STUFF, f"forced by the request ({stuff_estimate} tokens of corpus, "
                        f"budget {budget})", budget, stuff_estimate)
    if forced is Strategy.RETRIEVE:
        return Decision(Strategy.RETRIEVE, "forced by the request", budget,
                        min(retrieve_estimate, budget))
    if stuff_estimate <= budget:
        return Decision(
            Strategy.STUFF,
            f"the whole corpus ({corpus_tokens} tokens in {document_count} documents) fits the "
            f"{budget}-token context budget of a {window}-token window: read it all, in order",
            budget,
            stuff_estimate,
        )
    return Decision(
        Strategy.RETRIEVE,
        f"the corpus ({corpus_tokens} tokens in {document_count} documents) exceeds the "
        f"{budget}-token context budget of a {window}-token window: retrieve the most relevant "
        "passages and read them in document order",
        budget,
        min(retrieve_estimate, budget),
    )
