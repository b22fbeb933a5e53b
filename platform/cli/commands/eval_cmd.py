"""``corral eval``: build tasks with known answers, index them, report evidence recall vs tokens read.

The same function backs ``bench/routing.py`` (bigger corpora) and the test suite (a small one).
"""

from __future__ import annotations

import json
import tempfile
import time
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
from corral.core.config import get_settings
from corral.core.db import get_sessionmaker, session_scope
from corral.core.errors import InvalidInputError
from corral.core.services import get_or_create_workspace
from corral.core.services.evals import record_eval
from corral.ingestion.tokens import get_token_counter
from corral.platform.composition import get_chat, get_searcher, ingest_in_process, prepare

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
) -> None:
    """Evidence recall against tokens read, per reading strategy and for the router."""
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
    if as_json:
        typer.echo(json.dumps({suite: {str(w): r.summary() for w, r in by_w.items()}
                               for suite, by_w in reports.items()}, indent=1))
        return
    for suite, by_window in reports.items():
        for w, r in by_window.items():
            console.print(f"\n[bold]{suite}[/] corpus {r.corpus_tokens:,} tokens, window {w:,} "
                          f"({'hybrid' if r.hybrid else 'dense-only'} retrieval)", highlight=False)
            console.print(r.markdown(), highlight=False, markup=False)
