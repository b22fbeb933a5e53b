"""The reading-strategy router: a question classifier and a transparent, unit-tested policy."""

from corral.agents.routing.classify import QuestionSignals, QuestionType, classify_question, lexical_overlap
from corral.agents.routing.policy import (
    Decision,
    RouterInputs,
    Strategy,
    choose_strategy,
    context_budget,
)

__all__ = [
    "Decision",
    "QuestionSignals",
    "QuestionType",
    "RouterInputs",
    "Strategy",
    "choose_strategy",
    "classify_question",
    "context_budget",
    "lexical_overlap",
]
