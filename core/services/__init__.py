"""Plain functions over a SQL session that every outer layer shares (no HTTP, no Celery)."""

from corral.core.services.corpora import (
    DEFAULT_WORKSPACE,
    find_corpus,
    get_corpus,
    get_or_create_corpus,
    get_or_create_workspace,
    list_corpora,
    validate_corpus_name,
)
from corral.core.services.jobs import (
    create_job,
    finish_job,
    get_job,
    heartbeat,
    start_job,
)

__all__ = [
    "DEFAULT_WORKSPACE",
    "create_job",
    "find_corpus",
    "finish_job",
    "get_corpus",
    "get_job",
    "get_or_create_corpus",
    "get_or_create_workspace",
    "heartbeat",
    "list_corpora",
    "start_job",
    "validate_corpus_name",
]
