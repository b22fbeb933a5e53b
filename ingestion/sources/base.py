"""What every source hands the pipeline: documents to read, and problems found while listing.

A source (a folder, a git repository, an uploaded file or archive) is listed in batches; each item is
either a :class:`SourceDocument` that the parser may open, or a :class:`SourceProblem` that is
recorded against its path with the reason and never read. Listing is cheap (names and sizes); bytes
are read only by the parser, through :meth:`SourceDocument.read_bytes`, which refuses anything over
the limit without reading it.

Sources are re-openable by path (:meth:`Source.open_document`), so a job can fan out batches of
*paths* to workers and each worker gets the same document back, never a pickled object.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from corral.core.db import DocumentStatus, SourceKind
from corral.core.errors import IngestError

__all__ = [
    "DocumentTooLargeError",
    "Source",
    "SourceDescription",
    "SourceDocument",
    "SourceItem",
    "SourceProblem",
]


class DocumentTooLargeError(IngestError):
    """A document is over the byte limit; raised before any of its bytes are read."""

    def __init__(self, path: str, size_bytes: int, max_bytes: int) -> None:
        self.path, self.size_bytes, self.max_bytes = path, size_bytes, max_bytes
        super().__init__(
            f"file is {_mb(size_bytes)}, over the {_mb(max_bytes)} limit (CORRAL_MAX_FILE_BYTES)"
        )


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """One file of a source, not yet read.

    ``path`` is the relative POSIX path shown in citations and stored as ``Document.path`` (unique
    per corpus). ``local_path`` is where the bytes are on this machine: every source materialises
    its documents as plain files (a git checkout, a safe extraction of an archive).
    """

    path: str
    local_path: Path
    size_bytes: int
    mtime: float | None = None

    def open(self) -> BinaryIO:
        """The file opened for binary reading. Raises ``OSError`` like :func:`open`."""
        return self.local_path.open("rb")

    def read_bytes(self, max_bytes: int) -> bytes:
        """All the bytes, or :class:`DocumentTooLargeError` without reading more than ``max_bytes + 1``.

        The size is checked twice: from the listing (nothing is read) and while reading (the file
        may have grown since), so a huge or growing file never lands in memory.
        """
        if self.size_bytes > max_bytes:
            raise DocumentTooLargeError(self.path, self.size_bytes, max_bytes)
        with self.open() as fh:
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise DocumentTooLargeError(self.path, max(len(data), self.size_bytes), max_bytes)
        return data

    @classmethod
    def from_file(cls, local_path: Path, path: str) -> SourceDocument:
        """A document for an existing file (a symlink reports its target's size: sources only hand
        over links that stay inside their root)."""
        st = local_path.stat()
        return cls(path=path, local_path=local_path, size_bytes=st.st_size, mtime=st.st_mtime)


@dataclass(frozen=True, slots=True)
class SourceProblem:
    """A path found while listing that will not be read, and why (a symlink escaping the root, a
    ``../`` entry in an archive, a zip bomb...). ``status`` is how the document is recorded:
    ``skipped`` for things we decline on purpose, ``failed`` for hostile or broken input."""

    path: str
    reason: str
    status: DocumentStatus = DocumentStatus.SKIPPED


SourceItem = SourceDocument | SourceProblem


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """What the ``Source`` row records: kind, canonical uri, the commit (git) and options."""

    kind: SourceKind
    uri: str
    commit: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Source(Protocol):
    """A place documents come from. Implementations: folder, git, archive (see :func:`open_source`).

    Construction validates the uri (and may clone or extract); it raises
    :class:`~corral.core.errors.InvalidInputError` or ``PermissionDeniedError`` for a uri that
    must not be used, and ``IngestError`` when the source as a whole cannot be read.
    """

    def describe(self) -> SourceDescription:
        """Kind, uri, commit and options for the ``Source`` row."""
        ...

    def iter_batches(self, batch_size: int) -> Iterator[list[SourceItem]]:
        """Every item of the source in a stable order (the same on every run over the same
        content), ``batch_size`` at a time; the last batch may be shorter. Paths are unique across
        the whole listing."""
        ...

    def open_document(self, path: str) -> SourceItem:
        """The item with this ``path`` from a listing, re-created (for workers given paths only).

        A path that is not (or no longer) in the source gives a :class:`SourceProblem`.
        """
        ...
