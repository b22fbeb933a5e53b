"""Finding the files under a path: sorted, never following symlinks out of the root or in loops."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from corral.ingestion.sources.gitcli import GITIGNORED, is_ignored

# Folders skipped wherever they are: tools own these names, no package shares them. Hidden folders
# (a leading dot) are skipped too, except those below.
_ANYWHERE = {
    "__pycache__": "bytecode cache is not indexed",
    "node_modules": "installed dependencies are not indexed",
    ".git": "version-control metadata is not indexed",
    ".hg": "version-control metadata is not indexed",
    ".svn": "version-control metadata is not indexed",
    ".venv": "virtual environment is not indexed",
}
_HIDDEN_READ = frozenset({".github"})
# Hidden files are skipped too: they are where local settings and secrets live (.env, .npmrc,
# .pypirc, .netrc, .htpasswd). Read are only those that describe the project and, by convention,
# are committed and hold no secret: ignore rules, editor and CI settings, the example environment.
_HIDDEN_FILES_READ = frozenset({
    ".gitignore", ".gitattributes", ".editorconfig", ".dockerignore", ".env.example",
    ".env.sample", ".env.template", ".pre-commit-config.yaml", ".gitlab-ci.yml",
})
HIDDEN_FILE = "hidden file is not indexed (it may hold local settings or secrets, like .env)"
# Folders skipped only directly under the source root, where these names are build output and
# environments by convention; deeper down they are as likely packages (pip's ``operations/build``,
# the standard library's ``venv``) and are read. A virtual environment is known anywhere by the
# ``pyvenv.cfg`` it holds.
_AT_ROOT = {"build": "build output", "dist": "build output", "venv": "virtual environment"}


def hidden_file(name: str) -> str | None:
    """Why the file ``name`` (its last path component) is not read, or ``None`` when it is."""
    if name.startswith(".") and name not in _HIDDEN_FILES_READ:
        return HIDDEN_FILE
    return None


def ignored_folder(folder: Path, *, at_root: bool) -> str | None:
    """Why ``folder`` is not read (``at_root``: directly under the source root), or ``None`` when
    it is. The reason is what the report shows against the folder's path."""
    name = folder.name
    if name in _ANYWHERE:
        return _ANYWHERE[name]
    if name.startswith(".") and name not in _HIDDEN_READ:
        return "hidden folder is not indexed"
    if at_root and name in _AT_ROOT:
        return f"{_AT_ROOT[name]} at the source root is not indexed (a deeper {name}/ is read)"
    if (folder / "pyvenv.cfg").is_file():  # a virtual environment, whatever its name or depth
        return "virtual environment is not indexed"
    return None


@dataclass(frozen=True, slots=True)
class FoundFile:
    path: Path  # absolute
    rel: str  # POSIX path shown in citations: the root's own name, then the path under it


@dataclass(frozen=True, slots=True)
class Unreadable:
    rel: str
    reason: str


def walk(root: Path, gitignored: frozenset[str] = frozenset()) -> Iterator[FoundFile | Unreadable]:
    """Files under ``root`` (or ``root`` itself) in sorted order, less what ``gitignored`` (paths
    relative to ``root``, see :func:`~corral.ingestion.sources.gitcli.gitignored`) excludes.

    Symlinks are followed only when they resolve inside ``root``; links that leave the root or
    loop back are reported as :class:`Unreadable` with the reason, never read. So is every folder
    skipped by :func:`ignored_folder` and every hidden file (:func:`hidden_file`) — except ``root``
    itself, named on purpose: nothing is left out without a word.
    """
    root = root.absolute()
    real_root = root.resolve()
    base = root.parent
    if root.is_file():
        yield FoundFile(root, root.name)
        return
    seen_dirs = {real_root}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        current = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            sub = current / name
            rel = sub.relative_to(base).as_posix()
            ignored = ignored_folder(sub, at_root=current == root)
            if ignored is None and is_ignored(sub.relative_to(root).as_posix(), gitignored):
                ignored = GITIGNORED
            if ignored is not None:
                yield Unreadable(rel, ignored)
                continue
            if sub.is_symlink():
                problem = link_problem(sub, real_root, seen_dirs)
                yield Unreadable(rel, problem or "symlinked folder is not followed")
                continue
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            path = current / name
            rel = path.relative_to(base).as_posix()
            if is_ignored(path.relative_to(root).as_posix(), gitignored):
                yield Unreadable(rel, GITIGNORED)
                continue
            hidden = hidden_file(name)
            if hidden is not None:
                yield Unreadable(rel, hidden)
                continue
            if path.is_symlink():
                problem = link_problem(path, real_root, seen_dirs)
                if problem:
                    yield Unreadable(rel, problem)
                    continue
            yield FoundFile(path, rel)


def link_problem(link: Path, real_root: Path, seen_dirs: set[Path]) -> str | None:
    """Why the symlink ``link`` must not be followed, or ``None`` when its target is fine."""
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):
        return "broken or looping symlink"
    if not target.is_relative_to(real_root):
        return "symlink points outside the ingested folder"
    if target.is_dir() and target in seen_dirs:
        return "symlink loop"
    return None
