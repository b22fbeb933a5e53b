"""What to ingest, said once: a folder or file on this machine, an uploaded file, or a git repository.

Every door (CLI, REST API, dashboard, Slack) turns what it was given into a :data:`SourceSpec` with
:func:`source_spec`, and nothing else classifies sources. :func:`check_spec` applies the ingest
policy (:mod:`corral.ingestion.sources.policy`) to it. A job records the spec as plain parameters
(:func:`spec_params`), so that any worker re-opens the same source (:func:`open_spec`). Whether a
local file is a zip archive to extract is decided where the source is opened
(:func:`~corral.ingestion.sources.factory.open_source`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.core.db import SourceKind
from corral.core.errors import InvalidInputError
from corral.ingestion.sources.base import Source
from corral.ingestion.sources.factory import open_source
from corral.ingestion.sources.git import parse_git_uri
from corral.ingestion.sources.policy import check_local_path

__all__ = [
    "GitSpec",
    "PathSpec",
    "SourceSpec",
    "UploadSpec",
    "check_spec",
    "open_spec",
    "source_spec",
    "spec_from_params",
    "spec_params",
]

_MAX_PATH = 4096
_BRANCH = re.compile(r"^[A-Za-z0-9._/+-]{1,200}$")


@dataclass(frozen=True, slots=True)
class PathSpec:
    """A folder or file on this machine (absolute); a ``.zip`` file is extracted safely."""

    path: Path


@dataclass(frozen=True, slots=True)
class UploadSpec:
    """A file received by upload, kept at ``path`` and shown as ``name`` (a ``.zip`` is extracted)."""

    path: Path
    name: str


@dataclass(frozen=True, slots=True)
class GitSpec:
    """A git repository: an http(s)/ssh/scp-like URL, a ``file://`` URL or a local path."""

    url: str
    branch: str | None = None


SourceSpec = PathSpec | UploadSpec | GitSpec


def source_spec(
    *, path: str | None = None, git: str | None = None, branch: str | None = None,
    base: Path | None = None,
) -> SourceSpec:
    """The source named by exactly one of ``path`` and ``git`` (with ``branch`` for git).

    A ``path`` containing ``://`` is a git URL. A relative path (or local repository) is taken
    relative to ``base``; a relative path is refused when there is none (a server has no working
    directory its callers share). Only the syntax is checked here; :func:`check_spec` decides
    whether the source may be read.
    """
    if (path is None) == (git is None):
        raise InvalidInputError("give either a path or a git URL (one of them)")
    if path is not None and "://" in path:
        path, git = None, path
    if git is not None:
        if branch is not None and (not _BRANCH.match(branch) or branch.startswith("-")):
            raise InvalidInputError(f"not a valid branch name: {branch[:200]!r}")
        url = git.strip()
        if not url:
            raise InvalidInputError("the git URL is empty")
        if base is not None and "://" not in url and "\x00" not in url and (base / url).exists():
            url = str((base / url).absolute())  # a local repository, named for any worker
        return GitSpec(url, branch)
    if branch is not None:
        raise InvalidInputError("a branch needs a git URL")
    assert path is not None
    if not path or "\x00" in path or len(path) > _MAX_PATH:
        raise InvalidInputError(f"the path is empty, longer than {_MAX_PATH} characters or contains "
                                "a NUL byte")
    local = Path(path)
    if not local.is_absolute():
        if base is None:
            raise InvalidInputError(f"the path must be absolute: {path[:200]!r}")
        local = base / local
    return PathSpec(local.absolute())


def check_spec(spec: SourceSpec, allowed_roots: Sequence[Path], *, development: bool) -> None:
    """Refuse a source this process must not read (the ingest policy), then one that is not there.

    The policy comes first, so that a refused caller learns nothing about which paths exist.
    """
    if isinstance(spec, GitSpec):
        local = parse_git_uri(spec.url, allowed_roots, development=development).local
        if local is not None and not local.is_dir():
            raise InvalidInputError(f"no such repository folder: {spec.url[:200]}")
        return
    check_local_path(spec.path, allowed_roots, development=development)
    if not spec.path.exists() and not spec.path.is_symlink():
        raise InvalidInputError(f"path does not exist: {str(spec.path)[:200]}")


def spec_params(spec: SourceSpec) -> dict[str, Any]:
    """The job parameters that name ``spec``: ``{"kind", "uri", "options"}``."""
    if isinstance(spec, GitSpec):
        options = {"branch": spec.branch} if spec.branch else {}
        return {"kind": SourceKind.GIT.value, "uri": spec.url, "options": options}
    if isinstance(spec, UploadSpec):
        return {"kind": SourceKind.UPLOAD.value, "uri": str(spec.path), "options": {"name": spec.name}}
    return {"kind": SourceKind.PATH.value, "uri": str(spec.path), "options": {}}


def spec_from_params(params: Mapping[str, Any]) -> SourceSpec:
    """The spec a job's parameters record (see :func:`spec_params`)."""
    kind, uri, options = params.get("kind"), params.get("uri"), params.get("options") or {}
    if not isinstance(uri, str) or not uri or not isinstance(options, dict):
        raise InvalidInputError("the job names no source")
    if kind == SourceKind.GIT.value:
        branch = options.get("branch")
        return GitSpec(uri, branch if isinstance(branch, str) else None)
    if kind == SourceKind.UPLOAD.value:
        name = options.get("name")
        return UploadSpec(Path(uri), name if isinstance(name, str) else Path(uri).name)
    if kind == SourceKind.PATH.value:
        return PathSpec(Path(uri))
    raise InvalidInputError(f"unknown source kind {str(kind)[:40]!r}")


def open_spec(spec: SourceSpec, *, refresh: bool = True) -> Source:
    """The source ``spec`` names. ``refresh=False`` (workers re-opening documents by path) reuses a
    git clone as it was listed instead of fetching again."""
    params = spec_params(spec)
    return open_source(params["kind"], params["uri"], params["options"], refresh=refresh)
