"""``corral demo``: index a real codebase (and documents), ask questions, print what happened."""

from __future__ import annotations

import json
import time
from pathlib import Path
from statistics import median
from typing import Annotated

import typer
from rich.console import Console
from rich.rule import Rule

from corral.platform.cli.commands.ask_cmd import print_answer
from corral.platform.composition import answer, get_chat_model, ingest_in_process, prepare

console = Console()

CODE_QUESTIONS = [
    "How do I pretty-print JSON with indentation?",
    "Which class stores cookies received from HTTP servers?",
    "How does the HTTP server send an error response to the client?",
]
DOCS_QUESTIONS = ["Which command runs the tests?"]


def _stdlib_dir() -> Path:
    return Path(json.__file__).resolve().parent.parent


def demo(
    docs: Annotated[
        list[Path] | None, typer.Option(help="Documents to index as a second corpus.")
    ] = None,
) -> None:
    """Index the standard library's json and http packages, ask questions, show the answers."""
    prepare()
    lib = _stdlib_dir()
    console.print(Rule("[bold]1. Ingest a real codebase: the standard library's json and http"))
    for sub in ("json", "http"):
        r = ingest_in_process("stdlib", lib / sub)
        console.print(
            f"  {lib / sub}: {r.indexed} indexed, {r.unchanged} unchanged, {r.chunks} chunks, "
            f"{r.tokens:,} new tokens in {r.seconds:.1f}s (corpus: {r.corpus_documents} "
            f"documents, {r.corpus_tokens:,} tokens)",
            highlight=False,
        )
    corpora = [("stdlib", CODE_QUESTIONS)]
    if docs:
        console.print(Rule("[bold]   …and documents"))
        for path in docs:
            r = ingest_in_process("docs", path.absolute())
            console.print(f"  {path}: {r.indexed} indexed, {r.unchanged} unchanged, "
                          f"{r.corpus_tokens:,} tokens in the corpus", highlight=False)
        corpora.append(("docs", DOCS_QUESTIONS))

    console.print(Rule("[bold]2. Load the chat model"))
    started = time.perf_counter()
    model = get_chat_model()
    console.print(f"  {model.name}, {model.context_window}-token window, loaded in "
                  f"{time.perf_counter() - started:.1f}s", highlight=False)

    console.print(Rule("[bold]3. Ask"))
    seconds: list[float] = []
    for corpus, questions in corpora:
        for question in questions:
            console.print(f"[dim]corpus: {corpus}[/]")
            result = answer(corpus, question)
            print_answer(result)
            seconds.append(result.seconds)
            console.print(f"[bold]Answered in {result.seconds:.1f}s[/] ({result.support})", highlight=False)
            console.print()
    console.print(f"{len(seconds)} answers from {model.name}: median {median(seconds):.1f}s, slowest "
                  f"{max(seconds):.1f}s (CORRAL_CHAT_MODEL picks another model; see README, Chat models)",
                  highlight=False)
