"""Scoring answers against gold: each task kind, right and wrong, and the summary's rates."""

from __future__ import annotations

from corral.agents.ask.record import AskResult
from corral.agents.citations import Citation
from corral.agents.eval.answers import DEMO_TASKS, AnswerTask, score_answer, summarise


def result(answer: str, *cited: str, unsupported: str | None = None) -> AskResult:
    cites = [Citation(p, 1, 5, 0.5, True, True, support="cited") for p in cited]
    if unsupported:
        cites.append(Citation(unsupported, 1, 5, 0.1, True, True, "lacks it", support="unsupported"))
    cites.append(Citation("other/read.py", 1, 9, 0.2, False, True, support="read"))
    return AskResult("r", "stdlib", "q", answer, "retrieve", "why", "m", 100, 1200, 40, 12.5, cites)


NEEDLE = AnswerTask("needle", "stdlib", "What does json.loads raise?", ("JSONDecodeError",),
                    ("json/decoder.py",))
WHERE = AnswerTask("location", "stdlib", "Where is the error sent?", ("send_error",), ("http/server.py",),
                   symbol="send_error")
LIST = AnswerTask("aggregation", "stdlib", "Which methods?", ("GET", "HEAD"), ("http/server.py",), min_hits=2)
NONE = AnswerTask("unanswerable", "stdlib", "What is the pool size?")


def test_each_kind_is_scored_on_what_the_reader_gets() -> None:
    assert score_answer(NEEDLE, result("It raises JSONDecodeError [1].", "json/decoder.py")).correct
    assert not score_answer(NEEDLE, result("It raises json.safe_error [1].", "json/decoder.py")).correct
    # Location: the file named or cited, and the symbol named.
    cited_server = result("BaseHTTPRequestHandler.send_error does it [1].", "http/server.py")
    assert score_answer(WHERE, cited_server).correct
    assert score_answer(WHERE, result("See send_error in server.py.")).correct
    assert not score_answer(WHERE, result("It calls send_error [1].", "http/client.py")).correct
    assert score_answer(LIST, result("GET and HEAD.")).correct
    assert not score_answer(LIST, result("Only GET.")).correct
    assert score_answer(NONE, result("The sources do not say.")).correct
    assert not score_answer(NONE, result("The pool holds 10 connections [1].", "json/decoder.py")).correct


def test_citation_precision_and_recall_are_counted_from_the_labels() -> None:
    good = score_answer(NEEDLE, result("It raises JSONDecodeError [1].", "json/decoder.py",
                                       unsupported="json/encoder.py"))
    assert (good.cited, good.unsupported, good.gold_cited) == (1, 1, True)
    silent = score_answer(NEEDLE, result("It raises JSONDecodeError."))
    assert (silent.cited, silent.unsupported, silent.gold_cited) == (0, 0, False)
    assert silent.support == "unsupported"
    s = summarise([good, silent])
    assert s["accuracy"] == 1.0 and s["citation_precision"] == 0.5 and s["answers_citing"] == 0.5
    assert s["citation_recall"] == 0.5 and s["p50_seconds"] == 12.5 and s["p50_prompt_tokens"] == 1200
    assert summarise([]) == {"answers": 0}


def test_the_demo_tasks_cover_every_kind_on_both_corpora() -> None:
    kinds = {(t.corpus, t.kind) for t in DEMO_TASKS}
    assert {k for _, k in kinds} == {"needle", "location", "aggregation", "unanswerable"}
    assert {c for c, _ in kinds} == {"stdlib", "docs"}
    assert all(t.expect or t.kind == "unanswerable" for t in DEMO_TASKS)
