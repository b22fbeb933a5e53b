"""Where documents come from: folders, git repositories, uploaded files and archives.

Each source lists its documents in batches (:meth:`Source.iter_batches`) and re-opens one by path
(:meth:`Source.open_document`); :func:`open_source` builds one from a ``Source`` row's kind and uri.
What to ingest is a :data:`SourceSpec`, classified once by :func:`source_spec`.
"""

from corral.ingestion.sources.archive import ArchiveLimits, ArchiveSource
from corral.ingestion.sources.base import (
    DocumentTooLargeError,
    Source,
    SourceDescription,
    SourceDocument,
    SourceItem,
    SourceProblem,
)
from corral.ingestion.sources.factory import open_source
from corral.ingestion.sources.folder import FolderSource
from corral.ingestion.sources.git import GitSource, parse_git_uri
from corral.ingestion.sources.spec import (
    GitSpec,
    PathSpec,
    SourceSpec,
    UploadSpec,
    check_spec,
    open_spec,
    source_spec,
    spec_from_params,
    spec_params,
)

__all__ = [
    "ArchiveLimits",
    "ArchiveSource",
    "DocumentTooLargeError",
    "FolderSource",
    "GitSource",
    "GitSpec",
    "PathSpec",
    "Source",
    "SourceDescription",
    "SourceDocument",
    "SourceItem",
    "SourceProblem",
    "SourceSpec",
    "UploadSpec",
    "check_spec",
    "open_source",
    "open_spec",
    "parse_git_uri",
    "source_spec",
    "spec_from_params",
    "spec_params",
]
