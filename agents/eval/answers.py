"""Answer accuracy: questions with gold answers over the demo's corpora, and how an answer is scored.

Evidence recall says whether the gold passage was in what the model read; these tasks say whether the
answer a person reads is right. Four kinds:
- ``needle``: a fact; the answer must contain one of the gold strings;
- ``location``: where something is; the gold file must be named in the answer or be a source the
  answer cites (support ``cited``), and the gold symbol named in the answer;
- ``aggregation``: a list; the answer must name at least ``min_hits`` of the gold items;
- ``unanswerable``: the corpus does not say; the answer must say so (its support is ``not-found``).

Citation precision is the share of the sources an answer points at that hold its claim (``cited``
against ``unsupported``); citation recall whether a gold file is among the sources it cites.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Literal

from corral.agents.ask.cite import answer_support
from corral.agents.ask.record import AskResult

__all__ = ["DEMO_TASKS", "AnswerScore", "AnswerTask", "score_answer", "summarise"]

Kind = Literal["needle", "location", "aggregation", "unanswerable"]


@dataclass(frozen=True, slots=True)
class AnswerTask:
    kind: Kind
    corpus: str
    question: str
    expect: tuple[str, ...] = ()  # gold strings (needle: any; aggregation: min_hits of them)
    gold_paths: tuple[str, ...] = ()  # where the evidence is
    symbol: str | None = None  # location: the function or class to name
    min_hits: int = 1


def _t(kind: Kind, corpus: str, question: str, expect: tuple[str, ...] = (), gold: tuple[str, ...] = (),
       symbol: str | None = None, min_hits: int = 1) -> AnswerTask:
    return AnswerTask(kind, corpus, question, expect, gold, symbol, min_hits)


# The corpora of `corral demo`: the standard library's json and http packages ("stdlib") and the
# project's README ("docs"). Gold answers were read off CPython 3.11's sources.
DEMO_TASKS: tuple[AnswerTask, ...] = (
    _t("needle", "stdlib", "What exception does json.loads raise when the document is not valid JSON?",
       ("JSONDecodeError",), ("json/decoder.py", "json/__init__.py")),
    _t("needle", "stdlib", "What is the default protocol_version of BaseHTTPRequestHandler?",
       ("HTTP/1.0",), ("http/server.py",)),
    _t("needle", "stdlib", "What is the default port of an HTTPS connection in http.client?",
       ("443",), ("http/client.py",)),
    _t("needle", "stdlib", "What is the numeric status code of HTTPStatus.IM_A_TEAPOT?",
       ("418",), ("http/__init__.py",)),
    _t("location", "stdlib", "How do I pretty-print JSON with indentation?",
       ("indent",), ("json/__init__.py", "json/encoder.py"), symbol="dump"),
    _t("location", "stdlib", "Which class stores cookies received from HTTP servers?",
       ("CookieJar",), ("http/cookiejar.py",), symbol="CookieJar"),
    _t("location", "stdlib", "How does the HTTP server send an error response to the client?",
       ("send_error",), ("http/server.py",), symbol="send_error"),
    _t("location", "stdlib", "Which function decodes a JSON string literal with its escape sequences?",
       ("scanstring",), ("json/decoder.py", "json/scanner.py"), symbol="scanstring"),
    _t("aggregation", "stdlib", "Which HTTP methods does SimpleHTTPRequestHandler answer?",
       ("GET", "HEAD"), ("http/server.py",), min_hits=2),
    _t("aggregation", "stdlib", "Which classes does the json package export for encoding and decoding?",
       ("JSONEncoder", "JSONDecoder", "JSONDecodeError"), ("json/__init__.py",), min_hits=2),
    _t("unanswerable", "stdlib", "What is the default size of the json module's database connection pool?"),
    _t("unanswerable", "stdlib", "Which TLS version does the json package require for its encoder?"),
    _t("needle", "docs", "Which command runs the tests?", ("make test",), ("README.md",)),
    _t("needle", "docs", "On which port does corral serve listen by default?", ("8321",), ("README.md",)),
    _t("unanswerable", "docs", "Which cloud provider hosts Corral's managed service?"),
)


@dataclass(slots=True)
class AnswerScore:
    task: AnswerTask
    correct: bool
    support: str
    cited: int  # sources pointed at that hold their claim
    unsupported: int  # sources pointed at that do not
    gold_cited: bool | None  # a gold file among the cited sources (None: the task has no gold file)
    prompt_tokens: int
    seconds: float
    first_token_s: float | None
    strategy: str
    answer: str = field(repr=False, default="")


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _has(answer: str, item: str) -> bool:
    return _norm(item) in _norm(answer)


def score_answer(task: AnswerTask, result: AskResult, first_token_s: float | None = None) -> AnswerScore:
    """Score one answer to ``task`` (see the module's docstring)."""
    text = result.answer
    support = answer_support(text, result.citations)
    cited_paths = [c.path for c in result.citations if c.support == "cited"]
    if task.kind == "unanswerable":
        correct = support == "not-found"
    elif task.kind == "aggregation":
        correct = sum(_has(text, e) for e in task.expect) >= task.min_hits
    elif task.kind == "location":
        named = any(_has(text, g) or _has(text, g.rsplit("/", 1)[-1]) for g in task.gold_paths)
        in_sources = any(p.endswith(g) for p in cited_paths for g in task.gold_paths)
        symbol = task.symbol is None or _has(text, task.symbol)
        correct = (named or in_sources) and symbol and support != "not-found"
    else:
        correct = any(_has(text, e) for e in task.expect) and support != "not-found"
    gold = (any(p.endswith(g) for p in cited_paths for g in task.gold_paths) if task.gold_paths else None)
    return AnswerScore(
        task, correct, support, len(cited_paths),
        sum(c.support == "unsupported" for c in result.citations), gold, result.prompt_tokens,
        result.seconds, first_token_s, result.strategy, text,
    )


def summarise(scores: Sequence[AnswerScore]) -> dict[str, float | int | None]:
    """Accuracy, citation precision (over answers that point at a source), citation recall (over tasks
    with gold files), median prompt tokens, time to first token and seconds."""
    if not scores:
        return {"answers": 0}
    pointing = [s for s in scores if s.cited + s.unsupported]
    golds = [s for s in scores if s.gold_cited is not None]
    ttft = [s.first_token_s for s in scores if s.first_token_s is not None]
    return {
        "answers": len(scores),
        "accuracy": sum(s.correct for s in scores) / len(scores),
        "citation_precision": (sum(s.cited / (s.cited + s.unsupported) for s in pointing) / len(pointing)
                               if pointing else None),
        "answers_citing": len(pointing) / len(scores),
        "citation_recall": sum(bool(s.gold_cited) for s in golds) / len(golds) if golds else None,
        "p50_prompt_tokens": int(median(s.prompt_tokens for s in scores)),
        "p50_first_token_s": median(ttft) if ttft else None,
        "p50_seconds": median(s.seconds for s in scores),
        "p90_seconds": sorted(s.seconds for s in scores)[max(0, -(-9 * len(scores) // 10) - 1)],
    }
