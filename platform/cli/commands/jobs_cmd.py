"""``corral jobs list|show ID|cancel ID|watchdog``: background jobs, from the database."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table

from corral.core.config import Mode, get_settings
from corral.core.db import Corpus, Job, JobState, session_scope
from corral.core.errors import InvalidInputError
from corral.core.services import get_job, item_counts, list_items, list_jobs
from corral.platform.composition import prepare
from corral.platform.jobs import cancel_job, watchdog_once

console = Console()


def job_summary(job: Job, corpus: str | None) -> dict[str, Any]:
    return {
        "id": job.id, "kind": job.kind.value, "state": job.state.value, "corpus": corpus,
        "phase": job.phase, "done": job.done, "total": job.total, "failed": job.failed,
        "skipped": job.skipped, "attempts": job.attempts, "cancel_requested": job.cancel_requested,
        "error": job.error,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "heartbeat_at": job.heartbeat_at.isoformat() if job.heartbeat_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def _corpus_names(session: Any) -> dict[int, str]:
    return {c.id: c.name for c in session.query(Corpus).all()}


def _state(raw: str | None) -> JobState | None:
    if raw is None:
        return None
    try:
        return JobState(raw)
    except ValueError:
        raise InvalidInputError(
            f"unknown state {raw[:40]!r}; expected one of {', '.join(s.value for s in JobState)}"
        ) from None


def list_cmd(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List recent jobs, newest first."""
    prepare()
    with session_scope() as session:
        names = _corpus_names(session)
        rows = [job_summary(j, names.get(j.corpus_id or -1))
                for j in list_jobs(session, state=_state(state), limit=limit)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    # Ids in full, never elided: they are what `corral jobs show` takes.
    table = Table(Column("id", no_wrap=True, min_width=32), Column("state", min_width=9),
                  "corpus", "done", "failed", "phase", Column("created", min_width=16))
    for r in rows:
        table.add_row(r["id"], r["state"], r["corpus"] or "", f"{r['done']}/{r['total']}",
                      str(r["failed"]), r["phase"] or "",
                      (r["created_at"] or "")[:16].replace("T", " "))
    console.print(table)


def show_cmd(
    job_id: Annotated[str, typer.Argument(help="The job id.")],
    state: Annotated[str | None, typer.Option(help="Only documents in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A job's state, counts and per-document items."""
    prepare()
    with session_scope() as session:
        job = get_job(session, job_id)
        summary = job_summary(job, _corpus_names(session).get(job.corpus_id or -1))
        summary["items_by_state"] = item_counts(session, job.id)
        summary["items"] = [
            {"path": i.path, "state": i.state, "attempts": i.attempts, "error": i.error}
            for i in list_items(session, job.id, state=state, limit=limit, offset=offset)
        ]
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console.print(
        f"[bold]{summary['id']}[/] {summary['kind']} [bold]{summary['state']}[/] "
        f"corpus={summary['corpus']} {summary['done']}/{summary['total']} documents, "
        f"{summary['failed']} failed, {summary['skipped']} skipped, attempts={summary['attempts']}",
        highlight=False,
    )
    if summary["error"]:
        console.print(f"[red]error:[/] {summary['error']}", highlight=False)
    console.print(", ".join(f"{k}: {v}" for k, v in sorted(summary["items_by_state"].items())))
    table = Table("state", "path", "attempts", "error")
    for i in summary["items"]:
        table.add_row(i["state"], i["path"], str(i["attempts"]), i["error"] or "")
    console.print(table)


def cancel_cmd(job_id: Annotated[str, typer.Argument(help="The job id.")]) -> None:
    """Cancel a job: a queued one at once, a running one after its current batch."""
    prepare()
    job = cancel_job(job_id)
    console.print(f"job {job.id}: {job.state.value}"
                  + (" (cancel requested)" if not job.state.finished else ""), highlight=False)


def watchdog_cmd() -> None:
    """Requeue jobs whose heartbeat stopped (or fail them after too many attempts), once; in server
    mode fail runs whose agent worker stopped and resend queued runs whose message may be lost."""
    prepare()
    stale = watchdog_once()
    console.print(f"requeued {len(stale.requeue)}, failed {len(stale.failed)}", highlight=False)
    for job_id in stale.requeue:
        console.print(f"  requeued {job_id}")
    for job_id in stale.failed:
        console.print(f"  failed {job_id}")
    if get_settings().mode is Mode.SERVER:  # embedded runs are failed by the server's restart
        from corral.platform.runs.watchdog import run_runs_watchdog

        runs = run_runs_watchdog()
        console.print(f"runs: failed {len(runs.failed)}, resent {len(runs.resend)}", highlight=False)
        for run_id in runs.failed:
            console.print(f"  failed run {run_id}")
        for run_id in runs.resend:
            console.print(f"  resent run {run_id}")
