"""The evaluation harness on a small generated corpus: evidence recall vs tokens, per strategy."""

from __future__ import annotations

import json
from pathlib import Path

from corral.agents.ask import AskOptions
from corral.agents.eval import code_tasks, evaluate, evidence_recall, load_tasks, needle_tasks, save_tasks
from corral.agents.retrieval import Passage
from corral.agents.routing import Strategy
from tests.agents.conftest import read_tree
from tests.agents.scripted import Corpora, WordSearcher, count_words


def test_evidence_recall_needs_the_whole_text_in_a_passage_of_that_document() -> None:
    ps = [Passage(1, "c/doc1.txt", 1, 2, "alpha beta\ngamma delta", 5)]
    assert evidence_recall([("doc1.txt", "beta gamma")], ps) == 1.0  # whitespace-normalised
    assert evidence_recall([("doc2.txt", "beta gamma")], ps) == 0.0  # right text, wrong file
    assert evidence_recall([("doc1.txt", "alpha"), ("doc1.txt", "omega")], ps) == 0.5
    assert evidence_recall([], ps) == 1.0


def test_generated_tasks_are_reproducible_and_round_trip(tmp_path: Path) -> None:
    a = needle_tasks(tmp_path / "a", documents=6, paragraphs_per_doc=3, needles=3, aggregate_records=3)
    b = needle_tasks(tmp_path / "b", documents=6, paragraphs_per_doc=3, needles=3, aggregate_records=3)
    assert a == b and [t.kind for t in a] == ["needle"] * 3 + ["aggregate"]
    for t in a:
        for path, text in t.evidence:
            assert text in (tmp_path / "a" / path).read_text()
    save_tasks(tmp_path / "t.json", a)
    assert load_tasks(tmp_path / "t.json") == a
    code = code_tasks(tmp_path / "code", [Path(json.__file__).parent], limit=3)
    assert len(code) == 3 and all(t.question.startswith("Which function") for t in code)
    stripped = (tmp_path / "code" / code[0].evidence[0][0]).read_text()
    assert '"""' not in stripped and code[0].evidence[0][1] in stripped


def test_harness_measures_every_strategy_and_the_router(corpora: Corpora, tmp_path: Path) -> None:
    tasks = needle_tasks(tmp_path / "hay", documents=10, paragraphs_per_doc=4, needles=4, aggregate_records=5)
    corpora.add("hay", read_tree(tmp_path / "hay"))
    options = AskOptions(top_k=4, expand_limit=0, max_new_tokens=64)

    def run(window: int) -> dict[tuple[str, str], dict[str, object]]:
        report = evaluate(corpora.sessions, "hay", tasks, searcher=WordSearcher(), window=window,
                          count_tokens=count_words, options=options)
        assert "| needle | router |" in report.markdown()
        return {(str(r["kind"]), str(r["strategy"])): r for r in report.summary()}

    past = run(2048)  # the corpus is several times this window
    assert past[("needle", "stuff")]["recall"] < 1.0  # stuffing what fits misses needles
    assert past[("aggregate", "map-reduce")]["recall"] == 1.0  # map-reduce reads every part
    assert past[("aggregate", "router")]["chosen"] == {"map-reduce": 1}
    assert past[("needle", "retrieve")]["tokens"] < past[("needle", "map-reduce")]["tokens"]  # type: ignore[operator]

    within = run(32_768)  # now it all fits
    assert within[("needle", "stuff")]["recall"] == 1.0 and within[("aggregate", "router")]["recall"] == 1.0
    assert set(within[("needle", "router")]["chosen"]) <= {s.value for s in Strategy}  # type: ignore[arg-type]
