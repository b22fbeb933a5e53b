"""The ingest policy: which local paths may be read, whoever asks (CLI, API, dashboard, Slack).

Checked once when a job is submitted (:func:`~corral.ingestion.sources.spec.check_spec`), and by git
sources for a local repository or ``file://`` URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from corral.core.errors import InvalidInputError, PermissionDeniedError

__all__ = ["check_local_path"]


def check_local_path(path: Path, allowed_roots: Sequence[Path], *, development: bool) -> Path:
    """``path`` resolved, if it lies under one of ``allowed_roots``; else a clear refusal.

    With no roots configured, local paths are allowed only in development: a server that reads any
    path it is sent (or clones any ``file://`` URL) hands its own files to every caller.
    """
    if "\x00" in str(path):
        raise InvalidInputError("the path contains a NUL byte")
    resolved = path.expanduser().resolve()
    roots = [r.expanduser().resolve() for r in allowed_roots]
    if roots:
        if not any(resolved.is_relative_to(r) for r in roots):
            raise PermissionDeniedError(
                f"{str(path)[:200]!r} is outside the allowed ingest roots "
                f"({', '.join(map(str, roots))}; CORRAL_INGEST_ALLOWED_ROOTS)"
            )
    elif not development:
        raise PermissionDeniedError("reading local paths is disabled: set CORRAL_INGEST_ALLOWED_ROOTS")
    return resolved
