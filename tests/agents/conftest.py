"""Fixtures of the agents tests: ``corpora``, a throwaway SQLite database written with the scripted
tokenizer's counts (``scripted.Corpora``). The agents tests need no model, embedder, vector store or
environment; the end-to-end runs through the platform are in ``tests/platform``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agents.scripted import Corpora


def read_tree(root: Path) -> dict[str, str]:
    return {f"{root.name}/{p.relative_to(root).as_posix()}": p.read_text(encoding="utf-8")
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".txt", ".py", ".md")}


@pytest.fixture
def corpora(tmp_path: Path) -> Corpora:
    return Corpora(tmp_path)
