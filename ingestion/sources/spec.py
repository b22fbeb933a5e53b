"""What to ingest, said once: a folder or file on this machine, an uploaded file, or a git repository.

Every door (CLI, REST API, dashboard, Slack) turns what it was given into a :data:`SourceSpec` with
:func:`source_spec`, and nothing else classifies sources. :func:`check_spec` applies the ingest
policy (:mod:`corral.ingestion.sources.policy`) to it. A job records the spec as plain parameters
(:func:`spec_params`), so that any worker re-opens the same source (:func:`open_spec`). Whether a
local file is a zip archive to extract is decided where the source is opened
(:func:`~corral.ingestion.sources.factory.open_source`).

A git URL's credential (``https://user:token@host/...``) is split off by :func:`source_spec` and
never stored in clear: the job parameters hold the bare URL and the credential sealed with the
deployment's secret key (:mod:`corral.ingestion.sources.credentials`).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.core.config import get_settings
from corral.core.db import SourceKind
from corral.core.errors import InvalidInputError, PermissionDeniedError
from corral.ingestion.sources.base import Source
from corral.ingestion.sources.credentials import seal, split_credential, unseal
from corral.ingestion.sources.factory import open_source
from corral.ingestion.sources.git import _redact, parse_git_uri
from corral.ingestion.sources.gitnet import check_remote, remote_host
from corral.ingestion.sources.policy import check_local_path

__all__ = [
    "GitSpec",
    "PathSpec",
    "SourceSpec",
    "UploadSpec",
    "check_spec",
    "discard_upload",
    "is_server_path",
    "open_spec",
    "source_spec",
    "spec_from_params",
    "spec_params",
]

_MAX_PATH = 4096
_MAX_NAME_BYTES = 255  # one path component (NAME_MAX)
_MAX_RECORDED = 2048  # the width of Source.uri
_BRANCH = re.compile(r"^[A-Za-z0-9._/+-]{1,200}$")


@dataclass(frozen=True, slots=True)
class PathSpec:
    """A folder or file on this machine (absolute); a ``.zip`` file is extracted safely."""

    path: Path


@dataclass(frozen=True, slots=True)
class UploadSpec:
    """Files received by upload, staged at ``path`` under the data dir's ``uploads/`` and shown as
    ``name``: one file (a ``.zip`` is extracted), or a folder of uploaded files and archives."""

    path: Path
    name: str


@dataclass(frozen=True, slots=True)
class GitSpec:
    """A git repository: an http(s)/ssh/scp-like URL, a ``file://`` URL or a local path; the URL
    carries no credential, ``credential`` (``user[:password]``) does, and is never shown."""

    url: str
    branch: str | None = None
    credential: str | None = field(default=None, repr=False)


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
        if base is not None and "://" not in url and "\x00" not in url and len(url) <= _MAX_PATH \
                and _fits(url) and (base / url).exists():
            url = str((base / url).absolute())  # a local repository, named for any worker
        url, credential = split_credential(url)
        return GitSpec(url, branch, credential)
    if branch is not None:
        raise InvalidInputError("a branch needs a git URL")
    assert path is not None
    if not path or "\x00" in path or len(path) > _MAX_PATH:
        raise InvalidInputError(f"the path is empty, longer than {_MAX_PATH} characters or contains "
                                "a NUL byte")
    if not _fits(path) or len(path) > _MAX_RECORDED:
        raise InvalidInputError(f"the path is too long: a name in it is over {_MAX_NAME_BYTES} "
                                f"bytes, or the whole over {_MAX_RECORDED} characters")
    local = Path(path)
    if not local.is_absolute():
        if base is None:
            raise InvalidInputError(f"the path must be absolute: {path[:200]!r}")
        local = base / local
    return PathSpec(local.absolute())


def upload_root() -> Path:
    """Where uploads are staged for their jobs: ``<data dir>/uploads`` (server-mode workers must
    mount the same data dir volume as the API to read them)."""
    return get_settings().data_dir / "uploads"


def discard_upload(params: Mapping[str, Any]) -> None:
    """Remove the staged files of a finished upload job (nobody reads them again); anything that
    is not an upload under :func:`upload_root` is left alone."""
    uri = params.get("uri")
    if params.get("kind") != SourceKind.UPLOAD.value or not isinstance(uri, str):
        return
    root = upload_root().resolve()
    try:
        rel = Path(uri).resolve().relative_to(root)
    except (ValueError, OSError):
        return
    if len(rel.parts) >= 2:  # <id>/files[/name]
        shutil.rmtree(root / rel.parts[0], ignore_errors=True)


def _fits(path: str) -> bool:
    """Whether the system can name ``path``: no component over NAME_MAX, the whole under PATH_MAX."""
    raw = os.fsencode(path)
    return len(raw) < _MAX_PATH and all(len(part) <= _MAX_NAME_BYTES for part in raw.split(b"/"))


def is_server_path(spec: SourceSpec) -> bool:
    """Whether ``spec`` reads the server's own disk: a path, or a local git repository (``file://``
    or a path). Over the API only admin keys may name one, and only under the allowed roots."""
    if isinstance(spec, PathSpec):
        return True
    if not isinstance(spec, GitSpec):
        return False
    if remote_host(spec.url) is None:
        return True
    try:  # "host:path" names a local folder when one of that name exists (as git reads it)
        return "://" not in spec.url and Path(spec.url).exists()
    except (OSError, ValueError):
        return True


def check_spec(
    spec: SourceSpec, allowed_roots: Sequence[Path], *, development: bool,
    git_allowed_hosts: Sequence[str] = (), upload_root: Path | None = None,
) -> None:
    """Refuse a source this process must not read (the ingest policy), then one that is not there.

    The policy comes first, so that a refused caller learns nothing about which paths exist. A
    remote git host must have public addresses (or be in ``git_allowed_hosts``): see
    :mod:`corral.ingestion.sources.gitnet`. An upload must lie under ``upload_root``, where the
    upload route stages it.
    """
    if isinstance(spec, GitSpec):
        target = parse_git_uri(spec.url, allowed_roots, development=development)
        if target.remote is not None:
            check_remote(target.remote, _redact(spec.url), git_allowed_hosts, must_resolve=False)
        local = target.local
        if local is not None and not _is_dir(local):
            raise InvalidInputError(f"no such repository folder: {spec.url[:200]}")
        return
    if isinstance(spec, UploadSpec):
        if upload_root is None or not spec.path.resolve().is_relative_to(upload_root.resolve()):
            raise PermissionDeniedError("an upload is read only from the upload folder")
    else:
        check_local_path(spec.path, allowed_roots, development=development)
    try:
        missing = not spec.path.exists() and not spec.path.is_symlink()
    except OSError as exc:
        raise InvalidInputError(_os_problem(exc, spec.path)) from None
    if missing:
        raise InvalidInputError(f"path does not exist: {str(spec.path)[:200]}")


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError as exc:
        raise InvalidInputError(_os_problem(exc, path)) from None


def _os_problem(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return f"the path is too long for this system: {str(path)[:200]}…"
    return f"cannot read {str(path)[:200]}: {exc.strerror or exc}"


def spec_params(spec: SourceSpec) -> dict[str, Any]:
    """The job parameters that name ``spec``: ``{"kind", "uri", "options"}``, and ``credential``
    (sealed) for a git URL that came with one."""
    if isinstance(spec, GitSpec):
        options = {"branch": spec.branch} if spec.branch else {}
        params = {"kind": SourceKind.GIT.value, "uri": spec.url, "options": options}
        if spec.credential is not None:
            params["credential"] = seal(spec.credential)  # never in clear in the job row
        return params
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
        sealed = params.get("credential")
        return GitSpec(uri, branch if isinstance(branch, str) else None,
                       unseal(sealed) if isinstance(sealed, str) else None)
    if kind == SourceKind.UPLOAD.value:
        name = options.get("name")
        return UploadSpec(Path(uri), name if isinstance(name, str) else Path(uri).name)
    if kind == SourceKind.PATH.value:
        return PathSpec(Path(uri))
    raise InvalidInputError(f"unknown source kind {str(kind)[:40]!r}")


def open_spec(spec: SourceSpec, *, refresh: bool = True) -> Source:
    """The source ``spec`` names. ``refresh=False`` (workers re-opening documents by path) reuses a
    git clone as it was listed instead of fetching again."""
    params = spec_params(GitSpec(spec.url, spec.branch) if isinstance(spec, GitSpec) else spec)
    credential = spec.credential if isinstance(spec, GitSpec) else None
    return open_source(params["kind"], params["uri"], params["options"], refresh=refresh,
                       credential=credential)
