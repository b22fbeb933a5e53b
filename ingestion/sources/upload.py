"""Several files received in one upload: a folder of them, each read as an
:class:`~corral.ingestion.sources.archive.ArchiveSource` (a plain file is one document named as
uploaded; a ``.zip`` is extracted safely into documents ``<stem>/<entry>``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from corral.core.db import DocumentStatus, SourceKind
from corral.core.errors import InvalidInputError
from corral.ingestion.sources.archive import ArchiveLimits, ArchiveSource
from corral.ingestion.sources.base import SourceDescription, SourceItem, SourceProblem
from corral.ingestion.sources.folder import batched

__all__ = ["UploadFolderSource", "upload_prefix"]

_MAX_URI = 2048


def upload_prefix(name: str) -> str:
    """The first component of the documents an uploaded file gives: its name, or a zip's stem."""
    return (name[: -len(".zip")] or "archive") if name.lower().endswith(".zip") else name


class UploadFolderSource:
    """Every file directly in ``folder`` (as the upload route staged them: flat, safe names)."""

    def __init__(self, folder: Path, *, cache_dir: Path, limits: ArchiveLimits, name: str) -> None:
        if not folder.is_dir():
            raise InvalidInputError("the uploaded files are gone (was the upload folder cleaned?)")
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
        if not files:
            raise InvalidInputError("the upload holds no files")
        self.name = name
        self._members = {upload_prefix(p.name): ArchiveSource(p, cache_dir=cache_dir, limits=limits,
                                                              name=p.name) for p in files}
        if len(self._members) != len(files):
            raise InvalidInputError("two uploaded files give documents the same names (like a.zip "
                                    "and a.ZIP): upload them separately")

    def describe(self) -> SourceDescription:
        # The same set of file names uploaded again is the same source: its gone documents go.
        names = ", ".join(sorted(self._members))
        if len(names) > _MAX_URI:
            names = f"upload of {len(self._members)} files {hashlib.sha256(names.encode()).hexdigest()[:16]}"
        return SourceDescription(SourceKind.UPLOAD, names, None, {"files": len(self._members)})

    def iter_batches(self, batch_size: int) -> Iterator[list[SourceItem]]:
        return batched(self._items(), batch_size)

    def _items(self) -> Iterator[SourceItem]:
        for prefix in sorted(self._members):
            for batch in self._members[prefix].iter_batches(1000):
                yield from batch

    def open_document(self, path: str) -> SourceItem:
        member = self._members.get(path.split("/", 1)[0])
        if member is None:
            return SourceProblem(path, "path is not inside this source", DocumentStatus.FAILED)
        return member.open_document(path)
