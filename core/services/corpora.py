"""Workspaces and corpora by name."""

from __future__ import annotations

import re

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral.core.db import Corpus, Workspace
from corral.core.errors import InvalidInputError, NotFoundError

DEFAULT_WORKSPACE = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _valid_name(kind: str, name: str) -> str:
    if not _NAME.fullmatch(name or ""):
        raise InvalidInputError(
            f"invalid {kind} name {name[:80]!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_corpus_name(name: str) -> str:
    """Return ``name`` if it is 1-64 characters of letters, digits, ``.``, ``_``, ``-``."""
    return _valid_name("corpus", name)


def validate_workspace_name(name: str) -> str:
    """Return ``name`` if it is a valid workspace name (same rule as corpus names)."""
    return _valid_name("workspace", name)


def find_workspace(session: Session, name: str) -> Workspace | None:
    return session.scalar(select(Workspace).where(Workspace.name == name))


def get_workspace(session: Session, name: str) -> Workspace:
    ws = find_workspace(session, name)
    if ws is None:
        raise NotFoundError(f"no workspace named {name[:80]!r}")
    return ws


def list_workspaces(session: Session) -> list[Workspace]:
    return list(session.scalars(select(Workspace).order_by(Workspace.name)))


def get_or_create_workspace(session: Session, name: str = DEFAULT_WORKSPACE) -> Workspace:
    """The workspace ``name``, created if new. Safe against a concurrent creation: the insert runs
    in a savepoint, and losing the race reads the winner's row."""
    ws = find_workspace(session, name)
    if ws is None:
        validate_workspace_name(name)
        try:
            with session.begin_nested():
                ws = Workspace(name=name)
                session.add(ws)
                session.flush()
        except IntegrityError:  # created concurrently by another process
            ws = session.scalars(select(Workspace).where(Workspace.name == name)).one()
    return ws


def find_corpus(session: Session, name: str, workspace: str = DEFAULT_WORKSPACE) -> Corpus | None:
    return session.scalar(
        select(Corpus).join(Workspace).where(Workspace.name == workspace, Corpus.name == name)
    )


def get_corpus(session: Session, name: str, workspace: str = DEFAULT_WORKSPACE) -> Corpus:
    corpus = find_corpus(session, name, workspace)
    if corpus is None:
        known = [c.name for c in list_corpora(session, workspace)]
        hint = f"; known corpora: {', '.join(known)}" if known else "; none exist yet"
        raise NotFoundError(f"no corpus named {name[:80]!r}{hint} (create one with `corral ingest`)")
    return corpus


def get_or_create_corpus(session: Session, name: str, workspace: str = DEFAULT_WORKSPACE) -> Corpus:
    return ensure_corpus(session, name, workspace)[0]


def ensure_corpus(
    session: Session, name: str, workspace: str = DEFAULT_WORKSPACE
) -> tuple[Corpus, bool]:
    """The corpus ``name`` of ``workspace``, created if new, and whether this call created it."""
    validate_corpus_name(name)
    corpus = find_corpus(session, name, workspace)
    if corpus is not None:
        return corpus, False
    ws = get_or_create_workspace(session, workspace)
    try:  # the insert in a savepoint: losing a concurrent creation reads the winner's row
        with session.begin_nested():
            corpus = Corpus(workspace_id=ws.id, name=name, token_count=0, document_count=0)
            session.add(corpus)
            session.flush()
    except IntegrityError:
        return get_corpus(session, name, workspace), False
    return corpus, True


def lock_corpus(session: Session, corpus_id: int) -> bool:
    """Hold the corpus row until the transaction ends, so that whoever checks what runs on it and
    then adds work does both alone; ``False`` when the corpus no longer exists.

    PostgreSQL: ``SELECT ... FOR UPDATE``. SQLite has no row locks and its driver opens the
    transaction at the first write, so a no-op ``UPDATE`` takes the database's one write lock
    (writers are serialised; the reads that follow see every committed job).
    """
    if session.get_bind().dialect.name == "sqlite":
        done = session.execute(update(Corpus).where(Corpus.id == corpus_id)
                               .values(document_count=Corpus.document_count))
        return bool(getattr(done, "rowcount", 0))
    return session.scalar(select(Corpus.id).where(Corpus.id == corpus_id).with_for_update()) is not None


def list_corpora(session: Session, workspace: str = DEFAULT_WORKSPACE) -> list[Corpus]:
    return list(
        session.scalars(
            select(Corpus).join(Workspace).where(Workspace.name == workspace).order_by(Corpus.name)
        )
    )
