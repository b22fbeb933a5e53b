"""The routing policy: which reading strategy answers this question at the lowest cost, and why.

Plain code on measured numbers, so every decision can be explained, stored and unit-tested:

* ``stuff``: the whole corpus (or scope) in document order as one stable, cache-friendly prefix.
* ``retrieve``: hybrid passages re-sorted into document order (OP-RAG), expanded to their units.
* ``scoped-stuff``: retrieval chooses the documents; they are read whole (LongRAG's larger units).
* ``map-reduce``: the corpus in window-sized parts, each read once, partial answers combined — at most
  ``max_map_calls`` parts: past that, the parts hold what retrieval points at, best first (the decision
  says so), never just the first parts in path order.

Every automatic choice of ``retrieve`` or ``scoped-stuff`` carries a Self-Route fallback chain: when the
model says the context cannot answer, the caller escalates to the next strategy in ``fallback``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from corral.agents.retrieval.passages import HEADER_TOKENS
from corral.agents.routing.classify import QuestionType

__all__ = ["Decision", "RouterInputs", "Strategy", "choose_strategy", "context_budget"]

# Retrieval is chosen over stuffing a corpus that fits only when it reads at most this share of the
# corpus: reading more than that saves too little over reading it all to risk missing what retrieval
# did not find (``bench/routing.py`` measures the trade).
RETRIEVE_SHARE = 0.25
# Below these, retrieval found nothing that looks like the question: read more instead.
MIN_OVERLAP = 0.2
MIN_TOP_SCORE = 0.25


class Strategy(StrEnum):
    STUFF = "stuff"
    RETRIEVE = "retrieve"
    SCOPED_STUFF = "scoped-stuff"
    MAP_REDUCE = "map-reduce"


@dataclass(frozen=True, slots=True)
class RouterInputs:
    """Everything the policy looks at; all measured before any model call.

    ``retrieve_tokens`` / ``scoped_tokens`` are the tokens the retrieve / scoped-stuff contexts would
    take (already capped at ``budget``); ``overlap`` is the share of question terms found in the
    retrieved text; ``top_score`` the best dense similarity (None when dense search was not run).
    """

    corpus_tokens: int
    document_count: int
    budget: int  # tokens free for corpus text in one prompt
    window: int
    question_type: QuestionType = QuestionType.NEEDLE
    retrieve_tokens: int = 0
    scoped_tokens: int = 0
    scoped_doc_tokens: tuple[int, ...] = ()  # the hit documents' tokens, best hit first
    overlap: float = 1.0
    top_score: float | None = None
    agreement: bool | None = None  # the best hit was ranked by both dense and BM25 (None: dense only)
    english: bool = True
    prefix_cached: bool = False
    prefix_cached_tokens: int | None = None  # measured in the backend's prefix cache (None: not asked)
    cost_per_1k_input: float = 0.0
    cost_per_1k_cached_input: float = 0.0
    cost_per_1k_output: float = 0.0
    max_new_tokens: int = 256
    per_call_overhead: int = 128  # instructions + question + chat template, per model call
    max_map_calls: int = 32
    forced: Strategy | None = None
    reading_note: str | None = None  # why the budget is below what the window holds (a reading budget)

    @property
    def stuff_tokens(self) -> int:
        return self.corpus_tokens + HEADER_TOKENS * self.document_count

    @property
    def fits(self) -> bool:
        return self.stuff_tokens <= self.budget

    def whole_within(self, cap: int) -> int:
        """Tokens of the hit documents scoped-stuff reads whole, best-first while they fit ``cap``; 0
        when the best hit's own document does not fit (reading the others would miss it)."""
        docs = self.scoped_doc_tokens or (self.scoped_tokens,)
        if not docs or docs[0] > cap:
            return 0
        used = 0
        for t in docs:
            if used + t <= cap:
                used += t
        return used

    def scoped_within(self, cap: int) -> int:
        """Tokens scoped-stuff reads under ``cap``: the hit documents it reads whole, then what is left
        filled with other documents' passages (as much as retrieve reads, at most); 0 as above."""
        whole = self.whole_within(cap)
        return whole + min(cap - whole, self.retrieve_tokens) if whole else 0

    @property
    def map_calls(self) -> int:
        return max(1, -(-self.stuff_tokens // max(self.budget, 1)))

    @property
    def map_covers(self) -> bool:
        """Map-reduce reads the whole corpus within its cap on calls."""
        return self.map_calls <= self.max_map_calls


@dataclass(frozen=True, slots=True)
class Decision:
    strategy: Strategy
    reason: str
    budget: int
    estimated_tokens: int  # tokens of corpus text the chosen strategy reads (all calls together)
    fallback: tuple[Strategy, ...] = ()
    reasons: tuple[str, ...] = ()
    scope_cap: int | None = None  # scoped-stuff reads hit documents up to this many tokens
    map_scoped: bool = False  # map-reduce maps the retrieval hits, the corpus being over its cap of parts
    estimates: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """JSON for ``Run.decision``: the inputs, every strategy's estimate, the choice and why."""
        return {
            "strategy": self.strategy.value,
            "reasons": list(self.reasons),
            "fallback": [s.value for s in self.fallback],
            "budget": self.budget,
            "estimated_tokens": self.estimated_tokens,
            "scope_cap": self.scope_cap,
            "map_scoped": self.map_scoped,
            "estimates": self.estimates,
            "inputs": self.inputs,
        }


def context_budget(window: int, question_tokens: int, max_new_tokens: int, overhead: int) -> int:
    """Tokens left for corpus text once the question, the instructions and the answer are reserved."""
    return max(window - question_tokens - max_new_tokens - overhead, 0)


def _estimates(x: RouterInputs) -> dict[str, dict[str, Any]]:
    """Tokens read, model calls and cost per strategy; cost counts a cached stuffed prefix as cached."""

    def cost(uncached: int, cached: int, calls: int) -> float:
        prompt = uncached + calls * x.per_call_overhead
        total = (prompt * x.cost_per_1k_input + cached * x.cost_per_1k_cached_input
                 + calls * x.max_new_tokens * x.cost_per_1k_output)
        return round(total / 1000, 6)

    stuff = x.stuff_tokens
    # A measured count prices exactly what the cache holds; a declared "cached" prices all of it.
    cached = (min(x.prefix_cached_tokens, stuff) if x.prefix_cached_tokens is not None
              else stuff if x.prefix_cached else 0)
    return {
        Strategy.STUFF.value: {
            "tokens": stuff, "calls": 1, "fits": x.fits,
            "cost": cost(stuff - cached, cached, 1),
        },
        Strategy.RETRIEVE.value: {"tokens": x.retrieve_tokens, "calls": 1, "fits": True,
                                  "cost": cost(x.retrieve_tokens, 0, 1)},
        Strategy.SCOPED_STUFF.value: {"tokens": x.scoped_tokens, "calls": 1,
                                      "fits": x.scoped_tokens <= x.budget,
                                      "cost": cost(x.scoped_tokens, 0, 1)},
        Strategy.MAP_REDUCE.value: _map_estimate(x, cost),
    }


def _map_estimate(x: RouterInputs, cost: Callable[[int, int, int], float]) -> dict[str, Any]:
    """Map-reduce's reading: the whole corpus when its parts are within the cap, else the retrieval
    hits filling the cap's parts (``scoped``)."""
    if x.map_covers:
        return {"tokens": x.stuff_tokens, "calls": x.map_calls + 1, "fits": True,
                "cost": cost(x.stuff_tokens, 0, x.map_calls + 1)}
    tokens = x.max_map_calls * x.budget
    return {"tokens": tokens, "calls": x.max_map_calls + 1, "fits": True, "scoped": True,
            "parts_for_corpus": x.map_calls, "cost": cost(tokens, 0, x.max_map_calls + 1)}


def _inputs(x: RouterInputs) -> dict[str, Any]:
    data = asdict(x)
    data["question_type"] = x.question_type.value
    data["forced"] = x.forced.value if x.forced else None
    return data


def choose_strategy(x: RouterInputs) -> Decision:
    """Pick a strategy for ``x``; the reasons name the numbers that decided it.

    Order of the rules: a forced strategy; global questions (whole corpus or map-reduce); corpora that
    fit (stuff unless retrieval is confident and reads <= 25% of the corpus, or the prefix is cached);
    corpora past the window (retrieve or scoped-stuff, escalating to map-reduce).
    """
    est = _estimates(x)
    size = (f"the corpus ({x.corpus_tokens} tokens in {x.document_count} documents) "
            f"{'fits' if x.fits else 'exceeds'} the {x.budget}-token context budget of a "
            f"{x.window}-token window" + (f", {x.reading_note}" if x.reading_note else ""))
    # A needle diluted in a long chunk has a low cosine; BM25 and dense agreeing on it is evidence too.
    confident = x.overlap >= MIN_OVERLAP and (
        x.top_score is None or x.top_score >= MIN_TOP_SCORE or bool(x.agreement))
    signal = (f"retrieval overlap {x.overlap:.2f} of question terms"
              + (f", top similarity {x.top_score:.2f}" if x.top_score is not None else "")
              + (", dense and BM25 agree on the best hit" if x.agreement else ""))
    reasons: list[str] = []

    def decide(strategy: Strategy, *why: str, fallback: tuple[Strategy, ...] = (),
               cap: int | None = None) -> Decision:
        reasons.extend(why)
        scoped = Strategy.MAP_REDUCE in (strategy, *fallback) and not x.map_covers
        if scoped:  # never the first parts in path order: the cap would read only those
            reasons.append(f"map-reduce over the whole corpus would take {x.map_calls} parts, over its cap "
                           f"of {x.max_map_calls} calls: it maps what retrieval points at instead, best "
                           f"first, in at most {x.max_map_calls} parts")
        tokens = x.scoped_within(cap) if cap is not None else int(est[strategy.value]["tokens"])
        return Decision(strategy, "; ".join(reasons), x.budget, tokens, fallback, tuple(reasons),
                        scope_cap=cap, map_scoped=scoped, estimates=est, inputs=_inputs(x))

    over_window = (Strategy.SCOPED_STUFF, Strategy.MAP_REDUCE) if x.scoped_tokens <= x.budget \
        else (Strategy.MAP_REDUCE,)
    if x.forced is not None:
        reasons.append(f"forced by the request ({size})")
        if x.forced is Strategy.STUFF and not x.fits:
            reasons.append("reading the corpus in order up to the budget; the rest is left out")
        return decide(x.forced)

    if x.question_type is QuestionType.GLOBAL:
        reasons.append("a global question (count, list, summarise) needs every document")
        if x.fits:
            return decide(Strategy.STUFF, f"{size}: read it all, in order")
        if x.map_covers:
            return decide(Strategy.MAP_REDUCE,
                          f"{size}: read it in {x.map_calls} window-sized parts and combine the answers")
        return decide(Strategy.MAP_REDUCE, f"{size}: read it in window-sized parts and combine the answers")

    if x.question_type is QuestionType.UNANSWERABLE:
        # LaRA: retrieval hallucinates less than full context on questions the corpus cannot answer.
        return decide(Strategy.RETRIEVE, "the question is marked unanswerable: read the least and say so")

    if x.fits:
        if x.prefix_cached and est[Strategy.STUFF.value]["cost"] <= est[Strategy.RETRIEVE.value]["cost"]:
            held = (f" ({x.prefix_cached_tokens} tokens held by the backend's prefix cache)"
                    if x.prefix_cached_tokens is not None else "")
            return decide(Strategy.STUFF, f"{size} and its prefix is cached{held}, so reading it all "
                          "costs no more than retrieving")
        share = x.retrieve_tokens / max(x.stuff_tokens, 1)
        scoped_share = x.scoped_tokens / max(x.stuff_tokens, 1)
        if x.question_type is QuestionType.MULTI_HOP:
            if x.scoped_tokens <= x.budget and scoped_share <= 0.5:
                return decide(Strategy.SCOPED_STUFF,
                              f"a multi-hop question: read whole the documents retrieval points at "
                              f"({x.scoped_tokens} of {x.stuff_tokens} tokens)",
                              fallback=(Strategy.STUFF,))
            return decide(Strategy.STUFF, f"a multi-hop question and {size}: read it all, in order")
        # Self-Route: read little first — whole hit documents (LongRAG) up to a quarter of the corpus —
        # and escalate to everything only when the model says that cannot answer.
        cap = int(RETRIEVE_SHARE * x.stuff_tokens)
        scoped = x.scoped_within(cap)
        if scoped > 0:
            trust = (f"retrieval is confident ({signal})" if confident
                     else f"retrieval is not confident ({signal}); the model's verdict decides")
            return decide(Strategy.SCOPED_STUFF,
                          f"{size}; {trust}: read the documents it points at whole, best first, and "
                          f"other hits' passages, up to {RETRIEVE_SHARE:.0%} of it ({scoped} tokens)",
                          fallback=(Strategy.STUFF,), cap=cap)
        if confident and share <= RETRIEVE_SHARE:
            return decide(Strategy.RETRIEVE,
                          f"{size}, but retrieval is confident ({signal}) and reads {share:.0%} of it",
                          fallback=(Strategy.STUFF,))
        why = (f"retrieval is not confident ({signal})" if not confident
               else f"retrieval would read {share:.0%} of it")
        return decide(Strategy.STUFF, f"{size} and {why}: read it all, in order")

    if x.question_type is QuestionType.MULTI_HOP and x.scoped_tokens <= x.budget:
        return decide(Strategy.SCOPED_STUFF,
                      f"{size}; a multi-hop question: read whole the documents retrieval points at "
                      f"({x.scoped_tokens} tokens)", fallback=(Strategy.MAP_REDUCE,))
    # Past the window the fallback is costly (map-reduce): read hit documents whole only when the
    # budget allows it without squeezing out the passages retrieve would read — all of the hit
    # documents fit, or those that fit leave room for every passage — else every hit as a passage.
    cap = min(x.budget, int(RETRIEVE_SHARE * x.stuff_tokens))
    whole = x.whole_within(cap)
    if whole and (x.scoped_tokens <= cap or whole + x.retrieve_tokens <= cap):
        return decide(Strategy.SCOPED_STUFF,
                      f"{size}: the budget allows reading the documents retrieval points at whole "
                      f"({whole} tokens) and other hits' passages, up to {cap} tokens ({signal})",
                      fallback=(Strategy.MAP_REDUCE,), cap=cap)
    lang = "" if x.english else "; the question is not in English, so lexical signals count for less"
    return decide(Strategy.RETRIEVE,
                  f"{size}: retrieve passages and read them in document order ({signal}){lang}",
                  fallback=over_window)
