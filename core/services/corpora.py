"""Workspaces and corpora by name."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from corral.core.db import Corpus, Workspace
from corral.core.errors import InvalidInputError, NotFoundError

DEFAULT_WORKSPACE = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_corpus_name(name: str) -> str:
    """Return ``name`` if it is 1-64 characters of letters, digits, ``.``, ``_``, ``-``."""
    if not _NAME.fullmatch(name or ""):
        raise InvalidInputError(
            f"invalid corpus name {name[:80]!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def get_or_create_workspace(session: Session, name: str = DEFAULT_WORKSPACE) -> Workspace:
    ws = session.scalar(select(Workspace).where(Workspace.name == name))
    if ws is None:
        ws = Workspace(name=name)
        session.add(ws)
        try:
            with session.begin_nested():
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
    validate_corpus_name(name)
    corpus = find_corpus(session, name, workspace)
    if corpus is None:
        ws = get_or_create_workspace(session, workspace)
        corpus = Corpus(workspace_id=ws.id, name=name, token_count=0, document_count=0)
        session.add(corpus)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:
            corpus = get_corpus(session, name, workspace)
    return corpus


def list_corpora(session: Session, workspace: str = DEFAULT_WORKSPACE) -> list[Corpus]:
    return list(
        session.scalars(
            select(Corpus).join(Workspace).where(Workspace.name == workspace).order_by(Corpus.name)
        )
    )
