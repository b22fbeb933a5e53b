"""Long prose documents — novels larger than the whole context budget — read the way a reader would:
in order, as far as the budget goes, never skipped."""

from __future__ import annotations

from pathlib import Path

from corral.agents.retrieval import HEADER_TOKENS, whole_corpus
from tests.agents.prose import (
    COMBINING_COMPANY,
    DECOMPOSED_NAME,
    FULL_WIDTH_NAME,
    LIGATURE_PLACE,
    long_prose,
    short_prose,
)
from tests.agents.scripted import Corpora, count_words


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
