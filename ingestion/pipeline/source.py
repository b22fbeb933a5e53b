"""Which :class:`~corral.ingestion.sources.Source` a job reads, from the job's parameters.

A job stores plain parameters, never objects — ``{"corpus", "kind", "uri", "options"}`` (older jobs:
``{"corpus", "path"}``) — so that any worker can re-open the same source and get the same documents
back by path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corral.core.db import SourceKind
from corral.core.errors import InvalidInputError
from corral.ingestion.sources import Source, open_source

__all__ = ["open_job_source", "source_params"]


def source_params(kind: SourceKind | str, uri: str, options: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The job parameters naming a source (a local path is made absolute)."""
    try:
        kind = SourceKind(kind)
    except ValueError:
        raise InvalidInputError(f"unknown source kind {str(kind)[:40]!r}") from None
    if kind in (SourceKind.PATH, SourceKind.UPLOAD):
        uri = str(Path(uri).absolute())
    params: dict[str, Any] = {"kind": kind.value, "uri": uri, "options": dict(options or {})}
    if kind is SourceKind.PATH:
        params["path"] = uri  # what the report and older readers show
    return params


def open_job_source(params: Mapping[str, Any], *, refresh: bool = True) -> Source:
    """The source a job's ``params`` name. ``refresh=False`` (workers re-opening documents) reuses
    a git clone as listed instead of fetching again."""
    kind = params.get("kind", SourceKind.PATH.value)
    uri = params.get("uri", params.get("path"))
    options = params.get("options") or {}
    if not isinstance(uri, str) or not uri or not isinstance(options, dict):
        raise InvalidInputError("the job names no source")
    return open_source(kind, uri, options, refresh=refresh)
