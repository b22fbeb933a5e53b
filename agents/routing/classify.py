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
from corral.core.index.keyword import TERM, fold

__all__ = ["QuestionSignals", "QuestionType", "classify_question", "content_terms", "lexical_overlap"]


class QuestionType(StrEnum):
    NEEDLE = "needle"
    MULTI_HOP = "multi-hop"
    GLOBAL = "global"
    UNANSWERABLE = "unanswerable"


# Words for the units a corpus is made of: counting or listing *them* is a question about the corpus.
_UNITS = (r"(?:files?|documents?|docs|modules?|packages?|classes|functions|methods|chapters?|sections?"
          r"|pages?|novels?|books?|stories|tests|sources?|records?|entries|times|occurrences|mentions)")
_CORPUS = (r"(?:corpus|collection|codebase|code base|repository|repo|project|library|documents|files"
           r"|sources|texts|novels|books|whole|entire)")
# Cues that make a question global wherever they stand: the question itself asks for a total, a list or
# a summary of the corpus (or of every unit of it).
_STRONG = re.compile(
    r"\b(in total|altogether|how many times|main (?:themes?|topics?|points?|ideas?)"
    r"|(?:across|throughout|in|over) (?:all|every|each)(?: of)?(?: the)? " + _UNITS +
    r"|(?:every|each) (?:single )?" + _UNITS +
    r"|summari[sz]e (?:the|this|these|all|everything)|summary of (?:the|this|these|all)(?: \w+)? " + _CORPUS +
    r"|what (?:is|are) (?:the|this|these) " + _CORPUS + r" about)",
    re.IGNORECASE,
)
# Imperatives that open a question: "List all…", "Count the…", "Summarise…", "Give me an overview…".
_COMMAND = re.compile(r"^\W*(?:(?:please|now|can you|could you|would you)\W+)?"
                      r"(?:list|count|enumerate|summari[sz]e|tally|name all|name every"
                      r"|(?:give|write|make)(?: me| us)? (?:a|an)(?: \w+)? (?:summary|overview))\b",
                      re.IGNORECASE)
# Cues that make a question global only when it is not asking for one thing: "How many files import
# json?" is a count over the corpus, but in "Which function returns the number of bytes read?" the cue
# describes the one function wanted.
_WEAK = re.compile(
    r"\b(how many|(?:total )?number of|list (?:all|every|the)|all (?:the )?\w+ (?:that|which|where|in|with)"
    r"|every|each of|summari[sz]e|which (?:files|documents|modules|functions|classes|sections) "
    r"|across (?:all|the) |enumerate)",
    re.IGNORECASE,
)
# A question that opens by asking for one thing (which function, where, who, when, a yes/no question)
# is a lookup, whatever the words describing that thing say.
_LOOKUP_HEAD = re.compile(
    r"^\W*(?:(?:so|and|ok|okay|please|tell me|can you tell me|do you know)\W+)?"
    r"(?:(?:which|what)(?: \w+){0,2} (?:function|method|class|module|file|line|variable|constant|parameter"
    r"|argument|field|attribute|setting|option|key|name|type|exception|error|command|value|word|date"
    r"|year|day|time|place|town|city|person|character|street|ingredient|company|colou?r)\b(?!s)"
    r"|where|who|whom|whose|when|why|does|do|did|is|was|were|can|could|should|will|would|has|have|had)\b",
    re.IGNORECASE,
)
_AUX_WORDS = "does do did is are was were has have had will would can could should must"
_AUX = frozenset(_AUX_WORDS.split())
_TARGET_WORDS = 5  # how far after "how many" the counted noun and its verb are looked for
_WORDS = re.compile(r"[\w'-]+")
_COUNT_SCOPE = re.compile(r"^\W*(?:are there|exist|in (?:the|this|all|every|each) " + _CORPUS +
                          r"|across|throughout|altogether|in total|appear|occur"
                          r"|are (?:mentioned|named|listed))",
                          re.IGNORECASE)
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
    if cue := _global_cue(" ".join(question.split())):
        return QuestionSignals(QuestionType.GLOBAL, terms, english, cue)
    if m := _MULTI_HOP.search(question):
        return QuestionSignals(QuestionType.MULTI_HOP, terms, english, m.group(0).strip())
    return QuestionSignals(QuestionType.NEEDLE, terms, english, None)


def _global_cue(question: str) -> str | None:
    """The words that make ``question`` global (count, list, summarise over the corpus), or None."""
    if m := _STRONG.search(question) or _COMMAND.search(question):
        return m.group(0).strip(" ,.?!")
    if _LOOKUP_HEAD.search(question):
        return None
    m = _WEAK.search(question)
    if m is None:
        return None
    cue = m.group(0).strip()
    if cue.lower().startswith(("how many", "number of", "total number of")):
        return cue if _counts_the_corpus(question[m.start():]) else None
    return cue


def _counts_the_corpus(clause: str) -> bool:
    """``clause`` ("how many X …", "the number of X …") counts units of the corpus — X is a corpus unit,
    the rest says where to count ("are there", "in the codebase"), or X is the subject of a verb
    ("how many warehouses store lanterns"; for "number of", a relative clause: "the number of depots
    that store lanterns") — rather than a property of one thing, which an auxiliary and a subject
    follow ("how many arguments does f take", "how many whales did the keeper log")."""
    if clause.lower().startswith("total"):
        return True  # "the total number of crates": summed over the corpus
    after = clause.split(None, 2)[2] if len(clause.split(None, 2)) > 2 else ""  # past "how many"/"number of"
    words = list(_WORDS.finditer(after))
    for w in words[:_TARGET_WORDS]:
        word = w.group(0).lower()
        if re.fullmatch(_UNITS, word):
            return True
        if word in _AUX:
            return bool(_COUNT_SCOPE.match(after[w.start():]) or _COUNT_SCOPE.match(after[w.end():]))
        if word in ("past", "before", "after", "ago", "old", "long", "later", "earlier"):
            return False  # "how many minutes past seven": a time or an age, one fact
        if word in ("that", "which", "who", "whose", "where"):
            return True  # "the number of depots that store lanterns"
    # "how many warehouses store lanterns": X is the subject of a verb, counted wherever it occurs;
    # "the number of retries used by urlopen" names a setting.
    return bool(words) and clause.lower().startswith("how many")


def lexical_overlap(terms: Iterable[str], texts: Iterable[str]) -> float:
    """Share of the question's content ``terms`` that occur as words in any of ``texts`` (0..1)."""
    wanted = set(terms)
    if not wanted:
        return 0.0
    seen: set[str] = set()
    for text in texts:
        seen.update(m.group(0).lower() for m in TERM.finditer(fold(text)))  # read as the terms were
        if wanted <= seen:
            return 1.0
    return len(wanted & seen) / len(wanted)
