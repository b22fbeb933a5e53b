"""Finding the files under a path: sorted, never following symlinks out of the root or in loops."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Folders that are never content: VCS metadata, caches, virtual environments, dependencies.
IGNORED_DIRS = frozenset({
    ".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox",
    ".nox", ".venv", "venv", "node_modules", ".idea", ".vscode", ".eggs", "dist", "build",
    ".corral", ".cache",
})


@dataclass(frozen=True, slots=True)
class FoundFile:
    path: Path  # absolute
    rel: str  # POSIX path shown in citations: the root's own name, then the path under it


@dataclass(frozen=True, slots=True)
class Unreadable:
    rel: str
    reason: str


def walk(root: Path) -> Iterator[FoundFile | Unreadable]:
    """Files under ``root`` (or ``root`` itself) in sorted order.

    Symlinks are followed only when they resolve inside ``root``; links that leave the root or
    loop back are reported as :class:`Unreadable` with the reason, never read.
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
            if name in IGNORED_DIRS or (name.startswith(".") and name not in (".github",)):
                continue
            sub = current / name
            if sub.is_symlink():
                problem = link_problem(sub, real_root, seen_dirs)
                rel = sub.relative_to(base).as_posix()
                yield Unreadable(rel, problem or "symlinked folder is not followed")
                continue
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            path = current / name
            rel = path.relative_to(base).as_posix()
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
