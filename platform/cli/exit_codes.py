"""Exit codes of ``corral``: what happened, readable by scripts."""

from __future__ import annotations

from corral.core.errors import (
    ConflictError,
    CorralError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)

OK = 0
ERROR = 1  # a service, model or configuration problem
BAD_INPUT = 2  # the command was given something unusable (missing path, unknown corpus, …)
PARTIAL = 3  # ingest: some files failed; everything else was indexed
NOTHING_INDEXED = 4  # ingest: no file could be indexed

HELP = (
    "Exit codes: 0 done; 1 service/model/configuration error; 2 bad input (missing path, unknown "
    "corpus, empty question); 3 some files failed, the rest indexed; 4 nothing could be indexed."
)


def for_error(exc: CorralError) -> int:
    if isinstance(exc, InvalidInputError | NotFoundError | PermissionDeniedError | ConflictError):
        return BAD_INPUT
    return ERROR
