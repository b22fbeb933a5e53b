"""A folder (or one file) on this machine, listed by :func:`~corral.ingestion.sources.walk.walk`."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path, PurePosixPath

from corral.core.db import DocumentStatus, SourceKind
from corral.core.errors import InvalidInputError
from corral.ingestion.sources.base import SourceDescription, SourceDocument, SourceItem, SourceProblem
from corral.ingestion.sources.gitcli import GITIGNORED, gitignored, is_ignored
from corral.ingestion.sources.walk import (
    FoundFile,
    Unreadable,
    hidden_file,
    ignored_folder,
    link_problem,
    walk,
)

__all__ = ["MAX_PATH", "FolderSource", "batched", "document_at"]

MAX_PATH = 2048  # the width of Document.path


class FolderSource:
    """Every file under ``root`` (or ``root`` itself), paths starting with the root's own name.

    VCS, cache and dependency folders anywhere, build output at the root, and what ``.gitignore``
    excludes when the folder lies in a git work tree are skipped and reported with the reason
    (:func:`~corral.ingestion.sources.walk.ignored_folder`); symlinks are followed only inside the
    root and reported as problems when they leave it or loop.
    """

    def __init__(self, root: Path) -> None:
        if "\x00" in str(root):
            raise InvalidInputError("the path contains a NUL byte")
        if not root.exists() and not root.is_symlink():
            raise InvalidInputError(f"path does not exist: {root}")
        if not (root.is_dir() or root.is_file()):
            raise InvalidInputError(f"not a regular file or folder: {root}")
        self.root = root.absolute()

    def describe(self) -> SourceDescription:
        return SourceDescription(SourceKind.PATH, str(self.root))

    @cached_property
    def _gitignored(self) -> frozenset[str]:
        return gitignored(self.root) if self.root.is_dir() else frozenset()

    def iter_batches(self, batch_size: int) -> Iterator[list[SourceItem]]:
        return batched((_item(found) for found in walk(self.root, self._gitignored)), batch_size)

    def open_document(self, path: str) -> SourceItem:
        return document_at(self.root, path, folders_ignored=True, gitignored=self._gitignored)


def _item(found: FoundFile | Unreadable) -> SourceItem:
    if isinstance(found, FoundFile):
        try:
            return SourceDocument.from_file(found.path, found.rel)
        except OSError as exc:
            return SourceProblem(found.rel, f"cannot read: {exc.strerror or exc}", DocumentStatus.FAILED)
    return SourceProblem(found.rel, found.reason)


def document_at(root: Path, path: str, prefix: str | None = None, *,
                folders_ignored: bool = False, gitignored: frozenset[str] = frozenset()) -> SourceItem:
    """The document ``path`` (``<prefix>/...``, prefix defaulting to the root's name) under ``root``,
    refusing anything that escapes it; with ``folders_ignored`` (and ``gitignored``), what the walk
    skips is the problem the walk reported.

    Shared by the sources whose documents are files under one root (folder, git checkout, extracted
    archive): a path from a task message is re-checked, never trusted.
    """
    rel = PurePosixPath(path)
    parts = rel.parts
    prefix = root.name if prefix is None else prefix
    if not parts or parts[0] != prefix or ".." in parts or rel.is_absolute() or "\x00" in path:
        return SourceProblem(path, "path is not inside this source", DocumentStatus.FAILED)
    local = root.joinpath(*parts[1:])
    real_root = root.resolve()
    folder = root
    # The walk never enters an ignored or symlinked folder, so neither do we; an ignored folder
    # itself is the item the walk reported.
    for depth, part in enumerate(parts[1:]):
        folder = folder / part
        if depth == len(parts) - 2 and not folder.is_dir():
            break
        ignored = ignored_folder(folder, at_root=depth == 0) if folders_ignored else None
        if ignored is not None:
            return SourceProblem(path, ignored)
        if depth < len(parts) - 2 and folder.is_symlink():
            return SourceProblem(path, "symlinked folder is not followed")
    if is_ignored("/".join(parts[1:]), gitignored):
        return SourceProblem(path, GITIGNORED)
    hidden = hidden_file(parts[-1]) if folders_ignored and len(parts) > 1 else None
    if hidden is not None:
        return SourceProblem(path, hidden)
    if local.is_symlink():
        problem = link_problem(local, real_root, {real_root})
        if problem is not None:
            return SourceProblem(path, problem)
        if local.is_dir():
            return SourceProblem(path, "symlinked folder is not followed")
    if not local.exists():
        return SourceProblem(path, "file no longer exists in the source", DocumentStatus.FAILED)
    if not local.is_file():
        return SourceProblem(path, "not a regular file", DocumentStatus.FAILED)
    try:
        return SourceDocument.from_file(local, path)
    except OSError as exc:
        return SourceProblem(path, f"cannot read: {exc.strerror or exc}", DocumentStatus.FAILED)


def batched(items: Iterator[SourceItem], batch_size: int) -> Iterator[list[SourceItem]]:
    """``items`` in lists of ``batch_size`` (the last may be shorter; none is empty).

    A path longer than ``Document.path`` can hold becomes a problem under a shortened path.
    """
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be at least 1, not {batch_size}")
    batch: list[SourceItem] = []
    for item in items:
        if len(item.path) > MAX_PATH:
            item = SourceProblem(f"{item.path[: MAX_PATH - 20]}…", f"path is longer than {MAX_PATH} "
                                 "characters", DocumentStatus.FAILED)
        batch.append(item)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
