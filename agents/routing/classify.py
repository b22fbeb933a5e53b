"""What kind of question is this? Plain regular expressions over the question, no model.

The router needs only a coarse answer: a *needle* (one fact somewhere), *multi-hop* (facts that must be
joined), *global* (count / list / summarise across the corpus: single-shot retrieval cannot answer it).
*Unanswerable* is never read off the question; it is what the model (Self-Route) or the evaluation
labels say, and the router accepts it as an input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from corral.agents.retrieval.query import content_terms

__all__ = ["QuestionSignals", "QuestionType", "classify_question", "content_terms", "lexical_overlap"]


class QuestionType(StrEnum):
    NEEDLE = "needle"
    MULTI_HOP = "multi-hop"
    GLOBAL = "global"
    UNANSWERABLE = "unanswerable"


_GLOBAL = re.compile(
    r"\b(how many|how often|count|number of|list (all|every|the)|all (the )?\w+ (that|which|where|in|with)"
    r"|every|each of|in total|overall|summari[sz]e|summary|main (themes?|topics?|points?)"
    r"|which (files|documents|modules|functions|classes|sections) |across (all|the) |enumerate)",
    re.IGNORECASE,
)
_MULTI_HOP = re.compile(
    r"\b(compare|comparison|difference between|differ|both|relationship between|relate to|and then"
    r"|after (which|that)|whose|(which|that|function|method) calls|called by|callers? of|depends? on|in turn"
    r"|and what does (it|that|this))\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_HINT_WORDS = "the is are what how which where when who does do of in to"
_ENGLISH_HINTS = frozenset(_HINT_WORDS.split())


@dataclass(frozen=True, slots=True)
class QuestionSignals:
    """The classifier's verdict and the facts behind it (stored on the Run with the decision)."""

    type: QuestionType
    terms: tuple[str, ...]  # content words, lowercased, in order, without stop words
    english: bool  # False: lexical signals are weak, the corpus is probably in another language
    matched: str | None  # the cue that decided the type, for the reasons


def classify_question(question: str) -> QuestionSignals:
    """Classify ``question`` by its wording; total for any input (an empty string is a needle)."""
    words = [m.group(0).lower() for m in _WORD.finditer(question)]
    letters = [c for c in question if c.isalpha()]
    ascii_share = sum(c.isascii() for c in letters) / len(letters) if letters else 1.0
    english = ascii_share > 0.9 and (not words or any(w in _ENGLISH_HINTS for w in words))
    terms = tuple(dict.fromkeys(content_terms(question)))
    if m := _GLOBAL.search(question):
        return QuestionSignals(QuestionType.GLOBAL, terms, english, m.group(0).strip())
    if m := _MULTI_HOP.search(question):
        return QuestionSignals(QuestionType.MULTI_HOP, terms, english, m.group(0).strip())
    return QuestionSignals(QuestionType.NEEDLE, terms, english, None)


def lexical_overlap(terms: Iterable[str], texts: Iterable[str]) -> float:
    """Share of the question's content ``terms`` that occur as words in any of ``texts`` (0..1)."""
    wanted = set(terms)
    if not wanted:
        return 0.0
    seen: set[str] = set()
    for text in texts:
        seen.update(m.group(0).lower() for m in _WORD.finditer(text))
        if wanted <= seen:
            return 1.0
    return len(wanted & seen) / len(wanted)
