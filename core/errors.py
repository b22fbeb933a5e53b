"""Corral's exception tree.

Every layer raises these (or subclasses) and each boundary translates them: the CLI into a message
and an exit code, the REST API into a status code and a JSON body. Third-party exceptions are caught
where they happen and re-raised as one of these with the original chained as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "CorralError",
    "IngestError",
    "InvalidInputError",
    "ModelError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "UnauthenticatedError",
]


class CorralError(Exception):
    """Base of every error Corral raises on purpose; ``str(err)`` is fit to show a user."""


class ConfigurationError(CorralError):
    """Settings are missing, contradictory or unsafe for the environment."""


class InvalidInputError(CorralError):
    """The caller gave something we cannot work with (bad path, empty question, bad name)."""


class NotFoundError(CorralError):
    """A named thing (corpus, job, run) does not exist."""


class PermissionDeniedError(CorralError):
    """The request is understood but not allowed (e.g. a path outside the allowed ingest roots,
    or a key without the scope the action needs)."""


class UnauthenticatedError(CorralError):
    """No credentials, or credentials that are unknown, revoked or expired."""


class RateLimitedError(CorralError):
    """Too many requests or tokens for a key's limit or a workspace's budget; retry after
    ``retry_after`` seconds (``None`` when waiting will not help; for a spent monthly budget, the
    time until it renews on the first of next month)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLargeError(CorralError):
    """A request body or upload is larger than the configured limit."""


class ConflictError(CorralError):
    """The request contradicts the current state (e.g. a corpus that is still indexing); ``job_id``
    names the job in the way, when there is one."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class IngestError(CorralError):
    """A document or source could not be ingested; the message says which and why."""


class ModelError(CorralError):
    """A model could not be loaded or failed while generating or embedding."""


class ServiceUnavailableError(CorralError):
    """A backing service (database, broker, vector store) could not be reached."""
