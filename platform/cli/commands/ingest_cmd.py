"""``corral ingest PATH --corpus NAME`` (or ``--git URL``): index, with progress bars and a report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from corral.core.config import Mode, get_settings
from corral.core.db import JobState, session_scope
from corral.core.errors import InvalidInputError
from corral.core.services import get_job
from corral.ingestion.ingest import job_report, submit_ingest
from corral.ingestion.pipeline import IngestProgress
from corral.ingestion.sources import SourceSpec, source_spec
from corral.platform.cli import exit_codes
from corral.platform.composition import prepare

console = Console()


def ingest(
    path: Annotated[str | None, typer.Argument(
        help="A folder or file to index; a .zip is extracted safely.")] = None,
    corpus: Annotated[str, typer.Option("--corpus", "-c", help="Corpus to add the files to.")] = "",
    git: Annotated[str | None, typer.Option(
        "--git", help="A git repository to index instead: a local path or an http(s)/ssh URL.")] = None,
    branch: Annotated[str | None, typer.Option(help="With --git: the branch to index.")] = None,
    wait: Annotated[bool, typer.Option(help="Server mode: wait for the job to finish.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Index a folder, file, zip archive or git repository into a corpus.

    Unchanged files are not re-embedded; files gone since the last run are removed.
    """
    if not corpus:
        raise InvalidInputError("--corpus is required")
    spec = source_spec(path=path, git=git, branch=branch, base=Path.cwd())
    prepare()
    if get_settings().mode is Mode.SERVER:
        report = _ingest_via_worker(corpus, spec, wait, as_json)
        if report is None:
            return
    else:
        report = _ingest_here(corpus, spec, quiet=as_json)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_report(report)
    raise typer.Exit(_exit_code(report))


def _ingest_here(corpus: str, spec: SourceSpec, quiet: bool) -> dict[str, Any]:
    with Progress(
        TextColumn("[bold]indexing[/]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("documents, {task.fields[chunks]:,} chunks, {task.fields[failed]} failed"),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.description}"),
        console=console, transient=True, disable=quiet,
    ) as bar:
        task = bar.add_task("listing…", total=None, chunks=0, failed=0)

        def progress(p: IngestProgress) -> None:
            bar.update(task, completed=p.done, total=p.total, chunks=p.chunks, failed=p.failed,
                       description=p.current[-50:])

        job_id = submit_ingest(corpus, spec, here=True, progress=progress)
    return job_report(job_id).to_dict()


def _ingest_via_worker(corpus: str, spec: SourceSpec, wait: bool, quiet: bool
                       ) -> dict[str, Any] | None:
    job_id = submit_ingest(corpus, spec)
    if not wait:
        typer.echo(job_id)
        return None
    if not quiet:
        console.print(f"queued job [bold]{job_id}[/]; waiting for a worker… "
                      f"(`corral jobs show {job_id}`)")
    with Progress(
        TextColumn("[bold]indexing[/]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("documents, {task.fields[failed]} failed"), TimeElapsedColumn(),
        TextColumn("{task.description}"), console=console, transient=True, disable=quiet,
    ) as bar:
        task = bar.add_task("queued", total=None, failed=0)
        while True:
            with session_scope() as session:
                job = get_job(session, job_id)
                state, result, error = job.state, job.result, job.error
                bar.update(task, completed=job.done, total=job.total or None, failed=job.failed,
                           description=job.phase or state.value)
            if state.finished:
                break
            time.sleep(0.5)
    if state is not JobState.SUCCEEDED or result is None:
        console.print(f"[bold red]job {job_id} {state.value}:[/] {error}")
        raise typer.Exit(exit_codes.ERROR)
    return result


def _exit_code(report: dict[str, Any]) -> int:
    if report["indexed"] + report["unchanged"] == 0:
        return exit_codes.NOTHING_INDEXED
    if report["failed"]:
        return exit_codes.PARTIAL
    return exit_codes.OK


def _print_report(r: dict[str, Any]) -> None:
    console.print(
        f"[bold]{r['corpus']}[/]: {r['indexed']} indexed, {r['unchanged']} unchanged, "
        f"{r['skipped']} skipped, {r['failed']} failed, {r['removed']} removed — "
        f"{r['chunks']} chunks ({r['embedded']} embedded), {r['tokens']:,} new tokens in "
        f"{r['seconds']:.1f}s; "
        f"corpus now {r['corpus_documents']} documents, {r['corpus_tokens']:,} tokens",
        highlight=False,
    )
    if r["problems"]:
        table = Table("status", "file", "reason", show_header=True, header_style="bold")
        for p in r["problems"][:50]:
            style = "red" if p["status"] == "failed" else "yellow"
            table.add_row(f"[{style}]{p['status']}[/]", p["path"], p["reason"] or "")
        console.print(table)
        if len(r["problems"]) > 50:
            console.print(f"… and {len(r['problems']) - 50} more (use --json for all)")
