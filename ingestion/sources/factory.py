"""Building a source from what a ``Source`` row (or a job's arguments) records."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corral.core.config import get_settings
from corral.core.db import SourceKind
from corral.core.errors import InvalidInputError
from corral.ingestion.sources.archive import ArchiveLimits, ArchiveSource
from corral.ingestion.sources.base import Source
from corral.ingestion.sources.folder import FolderSource
from corral.ingestion.sources.git import GitSource
from corral.ingestion.sources.upload import UploadFolderSource

__all__ = ["open_source"]

_OPTIONS: dict[SourceKind, frozenset[str]] = {
    SourceKind.PATH: frozenset(),
    SourceKind.GIT: frozenset({"branch"}),
    SourceKind.UPLOAD: frozenset({"name", "archive"}),
}


def open_source(
    kind: SourceKind | str,
    uri: str,
    options: Mapping[str, Any] | None = None,
    *,
    refresh: bool = True,
    credential: str | None = None,
) -> Source:
    """The source of ``kind`` at ``uri``, configured from the settings.

    * ``path``: a folder or file on this machine; a ``.zip`` file is an archive, extracted safely
      (the ingest policy was checked before the job was recorded: ``spec.check_spec``).
    * ``git``: a local repository or a clone URL (see :mod:`corral.ingestion.sources.git`);
      option ``branch``. ``refresh=False`` reuses an existing clone without fetching: workers
      re-opening documents by path see the commit the job listed. ``credential`` (``user[:password]``,
      kept apart from the uri) is sent to the host as HTTP Basic authentication.
    * ``upload``: an uploaded file or ``.zip`` at ``uri``, or a folder of them (several files
      uploaded at once); option ``name``, the name it was uploaded under (defaults to the file's
      own name).

    Raises :class:`InvalidInputError` for an unknown kind, unknown options or a refused uri.
    """
    try:
        source_kind = SourceKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in SourceKind)
        raise InvalidInputError(f"unknown source kind {kind!r}; expected one of {known}") from None
    opts = dict(options or {})
    unknown = sorted(set(opts) - _OPTIONS[source_kind])
    if unknown:
        raise InvalidInputError(f"unknown option(s) for a {source_kind.value} source: {', '.join(unknown)}")
    settings = get_settings()
    limits = ArchiveLimits(
        max_file_bytes=settings.max_file_bytes, max_total_bytes=settings.archive_max_total_bytes,
        max_files=settings.archive_max_files, max_ratio=settings.archive_max_ratio,
    )
    if source_kind is SourceKind.PATH:
        local = Path(uri)
        if local.is_file() and local.suffix.lower() == ".zip":
            return ArchiveSource(local, cache_dir=settings.cache_dir, limits=limits, name=local.name)
        return FolderSource(local)
    if source_kind is SourceKind.GIT:
        branch = opts.get("branch")
        if branch is not None and not isinstance(branch, str):
            raise InvalidInputError("option 'branch' must be a string")
        return GitSource(
            uri, cache_dir=settings.cache_dir, allowed_roots=settings.ingest_allowed_roots,
            development=settings.environment == "development", branch=branch,
            timeout_s=settings.git_timeout_s, refresh=refresh, credential=credential,
            allowed_hosts=settings.git_allowed_hosts,
        )
    name = opts.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidInputError("option 'name' must be a string")
    if Path(uri).is_dir():
        return UploadFolderSource(Path(uri), cache_dir=settings.cache_dir, limits=limits,
                                  name=name or Path(uri).name)
    return ArchiveSource(Path(uri), cache_dir=settings.cache_dir, limits=limits, name=name)
