"""``corral ask`` and ``corral corpora``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from corral.agents.ask import AskResult, Strategy
from corral.core.db import session_scope
from corral.core.services import list_corpora
from corral.platform.composition import answer, prepare

console = Console()


def ask(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    corpus: Annotated[str, typer.Option("--corpus", "-c", help="Corpus to read.")],
    strategy: Annotated[
        Strategy | None, typer.Option(help="Force a reading strategy instead of routing.")
    ] = None,
    agent: Annotated[
        bool, typer.Option("--agent", help="Let the model plan its reading with the corpus tools.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the router's estimates and every step.")
    ] = False,
) -> None:
    """Answer a question from a corpus, with citations and the reading strategy chosen."""
    prepare()
    result = answer(corpus, question, strategy, agent=agent)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_answer(result, verbose=verbose)


SUPPORT_TEXT = {
    "supported": "supported: every source the answer points at holds its claim",
    "partly-supported": "partly supported: some sources it points at do not hold their claim",
    "unsupported": "unsupported: no source it points at holds its claim; check before relying on it",
    "not-found": "not found: the answer says the sources do not hold it",
}


def print_answer(r: AskResult, *, verbose: bool = False) -> None:
    console.print(f"[bold]Q:[/] {r.question}", highlight=False)
    if r.blocked:
        console.print(Text(f"Blocked: {r.blocked}", style="bold red"), highlight=False)
    else:
        console.print(f"[bold]A:[/] {r.answer}", highlight=False)
    console.print(f"[bold]Support:[/] {SUPPORT_TEXT.get(r.support, r.support)}", highlight=False)
    console.print("[bold]Sources:[/]")
    for c in r.citations:
        why = f": {c.note}" if c.note and c.support != "read" else ""
        score = f" (retrieval score {c.score:.3f})" if c.score is not None else ""
        console.print(f"  - {c.display}  [{c.support}{why}]{score}", highlight=False, markup=False)
    for flag in r.flags:
        console.print(f"  [yellow]! {flag}[/]", highlight=False)
    if r.safety:
        console.print("[bold]Safety:[/]")
    for d in r.safety:
        # Sources and details quote corpus text: plain text, never markup.
        console.print(Text(f"  {d.get('kind')}: {d.get('source')} - {d.get('detail')}", style="yellow"),
                      highlight=False)
    escalated = f" (routed to {r.routed_strategy}, escalated)" if r.routed_strategy != r.strategy else ""
    console.print(f"[bold]Strategy:[/] {r.strategy}{escalated} — {r.reason}", highlight=False)
    if verbose:
        estimates = r.decision.get("estimates", {})
        for name, e in estimates.items():
            console.print(f"  [dim]{name:>12}: {e['tokens']:>9,} tokens, {e['calls']} call(s), "
                          f"{'fits' if e['fits'] else 'does not fit'}, cost {e['cost']}[/]", highlight=False)
        for step in r.steps:
            detail = ", ".join(f"{k}={v}" for k, v in step.items() if k not in ("step", "top"))
            # Step details hold tool arguments and lists: printed as plain text, never as markup.
            console.print(Text(f"  step {step['step']}: {detail}", style="dim"), highlight=False)
    console.print(
        f"[dim]{r.model}: {r.prompt_tokens} prompt + {r.completion_tokens} answer tokens "
        f"(estimated {r.estimated_tokens} context) in {r.seconds:.1f}s · run {r.run_id}[/]",
        highlight=False,
    )


def corpora() -> None:
    """List corpora with their document and token counts."""
    prepare()
    with session_scope() as session:
        rows = list_corpora(session)
        table = Table("corpus", "documents", "tokens", header_style="bold")
        for c in rows:
            table.add_row(c.name, str(c.document_count), f"{c.token_count:,}")
    console.print(table if rows else "no corpora yet: `corral ingest PATH --corpus NAME`")
