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
    ItemState,
    StaleJobs,
    create_job,
    finish_job,
    get_job,
    heartbeat,
    item_counts,
    list_items,
    list_jobs,
    reap_stale_jobs,
    request_cancel,
    start_job,
)

__all__ = [
    "DEFAULT_WORKSPACE",
    "ItemState",
    "StaleJobs",
    "create_job",
    "find_corpus",
    "finish_job",
    "get_corpus",
    "get_job",
    "get_or_create_corpus",
    "get_or_create_workspace",
    "heartbeat",
    "item_counts",
    "list_corpora",
    "list_items",
    "list_jobs",
    "reap_stale_jobs",
    "request_cancel",
    "start_job",
    "validate_corpus_name",
]
