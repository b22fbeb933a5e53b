"""``corral eval``: build tasks with known answers, index them, report evidence recall vs tokens read;
with ``--answers``, also ask the demo's corpora questions with gold answers and score what the chat
model answers (accuracy, citation precision and recall, seconds).

The same functions back ``bench/routing.py`` and ``bench/answers.py`` and the test suite.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from corral.agents.ask import AskOptions
from corral.agents.eval import (
    EvalReport,
    EvalTask,
    code_tasks,
    evaluate,
    needle_tasks,
    prose_tasks,
    save_tasks,
)
from corral.agents.eval.answers import DEMO_TASKS, AnswerScore, score_answer, summarise
from corral.agents.routing import Strategy
from corral.core.config import get_settings
from corral.core.db import get_sessionmaker, session_scope
from corral.core.errors import CorralError, InvalidInputError
from corral.core.services import get_or_create_workspace
from corral.core.services.evals import record_eval
from corral.ingestion.tokens import get_token_counter
from corral.platform.composition import answer, get_chat, get_searcher, ingest_in_process, prepare

console = Console()


@dataclass(frozen=True, slots=True)
class EvalSize:
    documents: int = 40
    paragraphs_per_doc: int = 8
    needles: int = 12
    aggregate_records: int = 12
    code_tasks: int = 12
    code_packages: tuple[str, ...] = ("json", "http")
    novels: int = 0  # the long-document suite: novel-length prose (``agents/eval/prose.py``)
    prose_facts: int = 16


def _stdlib() -> Path:
    return Path(json.__file__).resolve().parent.parent


def run_eval(
    workdir: Path, size: EvalSize, windows: list[int], *, with_model: bool = False, prefix: str = "eval",
    top_k: int | None = None,
) -> dict[str, dict[int, EvalReport]]:
    """Generate, ingest and evaluate the ``docs`` (needle + aggregate), ``code`` and ``prose`` (long
    documents) suites at each window.

    Returns ``{suite: {window: report}}``; the corpora are named ``{prefix}-docs`` / ``-code`` / ``-prose``.
    """
    prepare()
    s = get_settings()
    suites: dict[str, list[EvalTask]] = {}
    dirs = {suite: workdir / suite for suite in ("docs", "code", "prose")}
    docs_dir, code_dir = dirs["docs"], dirs["code"]
    if size.needles or size.aggregate_records:
        suites["docs"] = needle_tasks(docs_dir, documents=size.documents,
                                      paragraphs_per_doc=size.paragraphs_per_doc, needles=size.needles,
                                      aggregate_records=size.aggregate_records)
    if size.code_tasks:
        suites["code"] = code_tasks(code_dir, [_stdlib() / p for p in size.code_packages],
                                    limit=size.code_tasks)
    if size.novels:
        suites["prose"] = prose_tasks(dirs["prose"], novels=size.novels, facts=size.prose_facts)
    counter = get_token_counter()
    model = get_chat() if with_model else None
    # ask's own options, map-reduce's cap on calls included: the evaluation reads what ask would read.
    options = replace(AskOptions.from_settings(s), top_k=top_k or s.retrieve_top_k)
    out: dict[str, dict[int, EvalReport]] = {}
    for suite, tasks in suites.items():
        save_tasks(workdir / f"{suite}-tasks.json", tasks)
        corpus = f"{prefix}-{suite}"
        started = time.perf_counter()
        report = ingest_in_process(corpus, dirs[suite])
        console.print(f"[dim]indexed {corpus}: {report.corpus_documents} documents, "
                      f"{report.corpus_tokens:,} tokens in {time.perf_counter() - started:.0f}s[/]",
                      highlight=False)
        out[suite] = {
            w: evaluate(get_sessionmaker(), corpus, tasks, searcher=get_searcher(), window=w,
                        count_tokens=lambda q: counter.count([q])[0], options=options, model=model)
            for w in windows
        }
    return out


def store_reports(reports: dict[str, dict[int, EvalReport]]) -> str:
    """Record the reports in the database (the default workspace, where the eval corpora live), for the
    dashboard's evaluation plot; the batch id."""
    with session_scope() as session:
        ws = get_or_create_workspace(session)
        return record_eval(session, ws.id, {
            suite: {w: {"corpus_tokens": r.corpus_tokens, "hybrid": r.hybrid, "rows": r.summary()}
                    for w, r in by_window.items()}
            for suite, by_window in reports.items()})


def index_demo_corpora() -> None:
    """The corpora the answer tasks ask about, as ``corral demo`` indexes them (incremental)."""
    for sub in ("json", "http"):
        ingest_in_process("stdlib", _stdlib() / sub)
    readme = Path(__file__).resolve().parents[3] / "README.md"
    if readme.is_file():
        ingest_in_process("docs", readme)


def answer_scores(strategies: list[str], *, limit: int | None = None,
                  on_answer: Callable[[AnswerScore], None] | None = None) -> list[AnswerScore]:
    """Ask every answer task (``limit``: the first N) with each strategy (``routed``: the router's
    choice) through the one ask path and the configured chat model; score each answer. Time to first
    token is the run's seconds less the engine's decode seconds during it (the embedded engine only)."""
    from corral.platform.composition import get_chat_model

    tasks = [t for t in DEMO_TASKS[: limit or None] if t.corpus != "docs" or _has_docs()]
    engine = get_chat_model() if get_settings().chat_backend == "embedded" else None
    out: list[AnswerScore] = []
    for strategy in strategies:
        forced = None if strategy == "routed" else Strategy(strategy)
        for task in tasks:
            totals = getattr(engine, "_totals", None)
            before = totals.get("decode_s", 0.0) if totals else 0.0
            started = time.perf_counter()
            try:
                result = answer(task.corpus, task.question, forced)
            except CorralError as exc:  # a run that fails is a wrong answer, with its reason
                score = AnswerScore(task, False, "error", 0, 0, False if task.gold_paths else None, 0,
                                    time.perf_counter() - started, None, strategy, f"error: {exc}")
            else:
                first = result.seconds - (totals.get("decode_s", 0.0) - before) if totals else None
                score = score_answer(task, result, first)
                score.strategy = strategy
            out.append(score)
            if on_answer is not None:
                on_answer(score)
    return out


def _has_docs() -> bool:
    with session_scope() as session:
        from corral.core.services import list_corpora

        return any(c.name == "docs" for c in list_corpora(session))


def eval_command(
    workdir: Annotated[
        Path | None, typer.Option(help="Where to write the generated corpora (default: a temp folder).")
    ] = None,
    documents: Annotated[int, typer.Option(min=1, max=100_000, help="Documents in the needle corpus.")] = 40,
    needles: Annotated[int, typer.Option(min=0, max=10_000, help="Needle questions.")] = 12,
    code: Annotated[int, typer.Option("--code-tasks", min=0, max=10_000, help="Code questions.")] = 12,
    novels: Annotated[
        int, typer.Option(min=0, max=50, help="Novel-length documents in the long-document suite (0: none).")
    ] = 0,
    code_package: Annotated[
        list[str] | None, typer.Option(help="Standard-library packages for the code corpus (repeatable).")
    ] = None,
    window: Annotated[
        list[int] | None, typer.Option(help="Backend windows to plan with (repeatable).")
    ] = None,
    with_model: Annotated[
        bool, typer.Option(help="Load the chat model so the router's Self-Route escalations count.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summaries as JSON.")] = False,
    answers: Annotated[bool, typer.Option(
        "--answers", help="Also score the chat model's answers to questions with gold answers on the "
        "demo's corpora (indexes them into the data dir; slow on a CPU)")] = False,
    answer_strategy: Annotated[list[str] | None, typer.Option(
        help="Strategies for --answers: routed, stuff, retrieve, scoped-stuff, map-reduce (repeatable)")
    ] = None,
) -> None:
    """Evidence recall against tokens read, per reading strategy and for the router; with --answers,
    answer accuracy too."""
    strategies = answer_strategy or ["routed"]
    bad = [s for s in strategies if s != "routed" and s not in {x.value for x in Strategy}]
    if bad:
        raise InvalidInputError(f"unknown strategies for --answers: {', '.join(bad)}")
    windows = window or [8192, 32_768]
    if any(w < 512 for w in windows):
        raise InvalidInputError("a window must be at least 512 tokens")
    packages = tuple(code_package or ("json", "http"))
    unknown = [p for p in packages if not (_stdlib() / p).is_dir()]
    if unknown:
        raise InvalidInputError(f"not standard-library packages: {', '.join(unknown)}")
    size = EvalSize(documents=documents, needles=needles, code_tasks=code, code_packages=packages,
                    novels=novels)
    with tempfile.TemporaryDirectory(prefix="corral-eval-") as tmp:
        reports = run_eval(workdir or Path(tmp), size, windows, with_model=with_model)
    store_reports(reports)
    if answers:
        prepare()
        index_demo_corpora()
        scores = answer_scores(strategies, on_answer=lambda s: console.print(
            f"  {'right' if s.correct else 'wrong'} {s.seconds:5.1f}s {s.support:>16}  {s.task.question}",
            highlight=False, markup=False))
        by = {st: summarise([s for s in scores if s.strategy == st]) for st in strategies}
        if as_json:
            typer.echo(json.dumps({"answers": by}, indent=1))
        else:
            for st, row in by.items():
                console.print(f"[bold]answers ({st})[/] " + ", ".join(f"{k} {v}" for k, v in row.items()),
                              highlight=False)
    if as_json:
        typer.echo(json.dumps({suite: {str(w): r.summary() for w, r in by_w.items()}
                               for suite, by_w in reports.items()}, indent=1))
        return
    for suite, by_window in reports.items():
        for w, r in by_window.items():
            console.print(f"\n[bold]{suite}[/] corpus {r.corpus_tokens:,} tokens, window {w:,} "
                          f"({'hybrid' if r.hybrid else 'dense-only'} retrieval)", highlight=False)
            console.print(r.markdown(), highlight=False, markup=False)
