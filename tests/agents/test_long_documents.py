"""Long prose documents — novels larger than the whole context budget — read the way a reader would:
in order, as far as the budget goes, never skipped."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from corral.agents.ask import AskOptions, ask
from corral.agents.ask.generate import PROMPT_OVERHEAD
from corral.agents.eval import evaluate
from corral.agents.retrieval import HEADER_TOKENS, whole_corpus
from corral.agents.routing import QuestionType, RouterInputs, Strategy, choose_strategy
from tests.agents.prose import (
    COMBINING_COMPANY,
    DECOMPOSED_NAME,
    FULL_WIDTH_NAME,
    LIGATURE_PLACE,
    long_prose,
    short_prose,
)
from tests.agents.scripted import Corpora, WordSearcher, count_words, scripted


def test_the_prose_corpus_is_novel_length_deterministic_and_plants_its_facts(tmp_path: Path) -> None:
    a = long_prose(tmp_path / "a")
    b = long_prose(tmp_path / "b")
    assert [n.text for n in a.novels] == [n.text for n in b.novels] and a.tasks == b.tasks
    assert [p.name for p in a.paths] == ["novel-1.md", "novel-2.md", "novel-3.md"]
    words = [len(n.text.split()) for n in a.novels]
    assert words[0] > 20_000 and words[-1] > 55_000  # ~30k to ~80k tokens each
    longest = max(len(line) for n in a.novels for line in n.text.split("\n"))
    assert longest > 4_000  # paragraphs are single long lines
    for task in a.tasks:
        for path, sentence in task.evidence:
            assert sentence in (a.folder / path).read_text(encoding="utf-8")
    text = "".join(n.text for n in a.novels)
    for name in (COMBINING_COMPANY, DECOMPOSED_NAME, FULL_WIDTH_NAME, LIGATURE_PLACE):
        assert name in text
    assert a.sentence(COMBINING_COMPANY).startswith("Can B\u0305 Corp.")
    assert {t.kind for t in a.tasks} == {"needle", "aggregate"}
    assert len({t.question for t in a.tasks}) == len(a.tasks)  # no question asked twice


def test_stuffing_reads_a_document_larger_than_the_budget_in_order_up_to_the_budget(
        corpora: Corpora, tmp_path: Path) -> None:
    prose = short_prose(tmp_path / "novels")
    cid = corpora.add("novels", prose.files, max_chars=1200)
    first, second, _ = prose.novels
    first_tokens = count_words(first.text)
    with corpora.sessions() as s:
        # Every novel is larger than the budget: the first is read from its start as far as it goes.
        budget = 2_000
        read = whole_corpus(s, cid, budget)
        assert [p.path for p in read] == ["novels/novel-1.md"]
        head = read[0]
        assert head.start_line == 1 and head.text and first.text.startswith(head.text)
        assert budget - 400 <= head.tokens + HEADER_TOKENS <= budget  # filled to within a chunk
        assert head.end_line < first.text.count("\n")  # a head, not the whole novel

        # The first novel fits whole: it is read whole, and the second from its start.
        budget = first_tokens + HEADER_TOKENS + 1_000
        read = whole_corpus(s, cid, budget)
        assert [p.path for p in read] == ["novels/novel-1.md", "novels/novel-2.md"]
        assert read[0].text == first.text and second.text.startswith(read[1].text)
        assert sum(p.tokens + HEADER_TOKENS for p in read) <= budget
        assert [p.number for p in read] == [1, 2]

        # Without a budget everything is read whole, in path order.
        assert [p.text for p in whole_corpus(s, cid)] == [n.text for n in prose.novels]


LEDGER_QUESTION = ("How many granaries are recorded in the ledger entries, and how many sacks of rye do they "
                   "hold in total?")


def test_a_map_reduce_over_its_cap_of_calls_maps_what_retrieval_points_at_and_says_so() -> None:
    # 200k tokens in 7,800-token parts is 26 parts; ask stops after 16 map calls.
    big = RouterInputs(corpus_tokens=200_000, document_count=3, budget=7_800, window=8_192,
                       question_type=QuestionType.GLOBAL, max_map_calls=16)
    d = choose_strategy(big)
    assert d.strategy is Strategy.MAP_REDUCE and d.map_scoped
    assert "would take 26 parts, over its cap of 16 calls" in d.reason and "retrieval" in d.reason
    assert d.estimates["map-reduce"]["calls"] == 17 and d.estimates["map-reduce"]["scoped"]
    assert d.estimated_tokens == 16 * 7_800 and d.to_record()["map_scoped"] is True
    # A needle past the window falls back to map-reduce the same way.
    needle = choose_strategy(replace(big, question_type=QuestionType.NEEDLE, scoped_tokens=90_000,
                                     retrieve_tokens=7_000))
    assert needle.fallback[-1] is Strategy.MAP_REDUCE and needle.map_scoped
    # Within the cap, map-reduce reads the whole corpus, in path order.
    small = choose_strategy(replace(big, corpus_tokens=60_000))
    assert small.strategy is Strategy.MAP_REDUCE and not small.map_scoped
    assert "8 window-sized parts" in small.reason


def test_a_global_question_over_novels_maps_the_hits_within_the_cap(corpora: Corpora, tmp_path: Path) -> None:
    prose = short_prose(tmp_path / "novels")
    corpora.add("novels", prose.files, max_chars=1200)
    ledger = prose.task("prose-ledger")
    chat = scripted("Six granaries [1].", window=2048)
    r = ask(corpora.sessions, "novels", LEDGER_QUESTION, chat=chat, searcher=WordSearcher(),
            options=AskOptions(max_new_tokens=32, max_map_calls=3))
    assert r.routed_strategy == "map-reduce" and r.decision["map_scoped"]
    maps = [s for s in r.steps if s["step"] == "generate" and s["strategy"] == "map"]
    assert 1 <= len(maps) <= 3  # never past the cap
    sent = " ".join(" ".join(m.text.split()) for messages, _ in chat.seen for m in messages)
    found = [text for _, text in ledger.evidence if text in sent]
    # The ledger entries lie all over the three novels; the first three parts in path order hold only
    # those near the start of novel 1. The hits hold every one.
    assert len(found) == len(ledger.evidence)
    assert any("retrieval points at" in f for f in r.flags)


def test_the_evaluation_scores_what_ask_sends_under_the_same_cap(corpora: Corpora, tmp_path: Path) -> None:
    prose = short_prose(tmp_path / "novels")
    corpora.add("novels", prose.files, max_chars=1200)
    options = AskOptions(top_k=4, expand_limit=0, max_new_tokens=32, max_map_calls=3)
    report = evaluate(corpora.sessions, "novels", prose.tasks, searcher=WordSearcher(), window=2048,
                      count_tokens=count_words, options=options)
    rows = {(str(r["kind"]), str(r["strategy"])): r for r in report.summary()}
    budget = 2048 - 32 - PROMPT_OVERHEAD
    # Map-reduce reads at most 3 parts of the budget, however large the corpus ...
    mapped = [o for o in report.outcomes if o.strategy == "map-reduce"]
    assert mapped and all(o.tokens <= 3 * budget for o in mapped)
    assert report.corpus_tokens > 3 * budget
    # ... and those are the retrieval hits, so the scattered ledger entries are all found.
    assert rows[("aggregate", "map-reduce")]["recall"] == 1.0
    assert rows[("aggregate", "router")]["chosen"] == {"map-reduce": 1}
    # Every strategy is scored on what was sent: never more than fits the window beside the answer.
    assert all(o.tokens <= 3 * budget for o in report.outcomes)
    assert rows[("needle", "stuff")]["recall"] < 1.0  # stuffing reads the first novel's head only
