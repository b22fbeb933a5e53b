"""Long prose documents for tests: novel-length text with planted facts, written from a seed.

The generator is ``corral.agents.eval.prose`` (``corral eval`` measures the same corpus); this module
gives tests what they need around it::

    corpus = long_prose(tmp_path)            # three novels, ~32k, ~53k and ~84k tokens (SmolLM2 tokenizer)
    corpus = short_prose(tmp_path)           # the same shape at a few thousand words, for quick tests
    corpus.paths                             # the files written, in path order
    corpus.files                             # {"<folder>/novel-1.md": text, …}, as ``read_tree`` gives them
    corpus.tasks / corpus.task("prose-001")  # EvalTasks: evidence (path, planted sentence), answer
    corpus.sentence("B\u0305 Corp.")           # the planted sentence that names it

Paragraphs are single lines (one in five several thousand characters long); names carry a combining
overline (``B̅ Corp.``), a decomposed diaeresis, full-width letters and a ligature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corral.agents.eval import EvalTask
from corral.agents.eval.prose import (
    COMBINING_COMPANY,
    DECOMPOSED_NAME,
    FULL_WIDTH_NAME,
    LIGATURE_PLACE,
    NOVEL_WORDS,
    Novel,
    write_novels,
)

__all__ = ["COMBINING_COMPANY", "DECOMPOSED_NAME", "FULL_WIDTH_NAME", "LIGATURE_PLACE", "ProseCorpus",
           "long_prose", "short_prose"]

SHORT_WORDS = (3_000, 4_500, 6_000)


@dataclass(frozen=True, slots=True)
class ProseCorpus:
    folder: Path
    novels: list[Novel]
    tasks: list[EvalTask]

    @property
    def paths(self) -> list[Path]:
        return [self.folder / n.path for n in self.novels]

    @property
    def files(self) -> dict[str, str]:
        """``{"<folder name>/<path>": text}``: the keys ``read_tree`` gives, for ``Corpora.add``."""
        return {f"{self.folder.name}/{n.path}": n.text for n in self.novels}

    def task(self, task_id: str) -> EvalTask:
        return next(t for t in self.tasks if t.id == task_id)

    def sentence(self, words: str) -> str:
        """The planted evidence sentence containing ``words``."""
        return next(text for t in self.tasks for _, text in t.evidence if words in text)


def long_prose(folder: Path, *, novels: int = 3, words: tuple[int, ...] = NOVEL_WORDS, facts: int = 16,
               ledger_entries: int = 9, seed: int = 0) -> ProseCorpus:
    """Write novel-length documents under ``folder`` (created) and return them with their tasks."""
    written, tasks = write_novels(folder, novels=novels, words=words, facts=facts,
                                  ledger_entries=ledger_entries, seed=seed)
    return ProseCorpus(folder, written, tasks)


def short_prose(folder: Path, *, novels: int = 3, facts: int = 8, seed: int = 0) -> ProseCorpus:
    """The same kind of corpus at a few thousand words per document."""
    return long_prose(folder, novels=novels, words=SHORT_WORDS, facts=facts, ledger_entries=6, seed=seed)
