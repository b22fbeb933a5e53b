"""``/v1/keys`` and ``/v1/workspace(s)``: API keys, budgets and whether credentials found at ingest are
kept, for keys with the ``admin`` scope.

An admin key manages its own workspace. Creating other workspaces is for admins of the default
workspace, the deployment's operators.
"""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy.orm import Session

from corral.core.db import ApiKey, Scope, Workspace
from corral.core.errors import ConflictError, PermissionDeniedError
from corral.core.services import DEFAULT_WORKSPACE, list_workspaces
from corral.core.services.corpora import find_workspace, get_or_create_workspace
from corral.core.services.keys import create_key, list_keys, revoke_key
from corral.core.services.usage import tokens_this_month
from corral.platform.api.auth import AdminCaller
from corral.platform.api.deps import SessionDep
from corral.platform.api.schemas import (
    KeyCreate,
    KeyIssued,
    KeyOut,
    Page,
    WorkspaceCreate,
    WorkspaceCreated,
    WorkspaceOut,
    WorkspaceUpdate,
)

router = APIRouter(tags=["admin"])


def key_out(key: ApiKey) -> KeyOut:
    return KeyOut(id=key.id, name=key.name, prefix=key.prefix, scopes=list(key.scopes),
                  created_at=key.created_at, expires_at=key.expires_at,
                  last_used_at=key.last_used_at, revoked_at=key.revoked_at,
                  requests_per_minute=key.requests_per_minute, tokens_per_minute=key.tokens_per_minute)


def workspace_out(session: Session, ws: Workspace) -> WorkspaceOut:
    return WorkspaceOut(name=ws.name, created_at=ws.created_at,
                        monthly_token_budget=ws.monthly_token_budget,
                        tokens_this_month=tokens_this_month(session, ws.id), keep_secrets=ws.keep_secrets)


@router.get("/keys")
def keys(caller: AdminCaller, session: SessionDep) -> Page[KeyOut]:
    found = [key_out(k) for k in list_keys(session, caller.workspace_id)]
    return Page(items=found, total=len(found), limit=len(found), offset=0)


@router.post("/keys", status_code=status.HTTP_201_CREATED)
def new_key(body: KeyCreate, caller: AdminCaller, session: SessionDep) -> KeyIssued:
    ws = session.get_one(Workspace, caller.workspace_id)
    issued = create_key(session, ws, body.name, list(body.scopes), expires_at=body.expires_at,
                        requests_per_minute=body.requests_per_minute,
                        tokens_per_minute=body.tokens_per_minute)
    session.flush()
    session.refresh(issued.key)
    return KeyIssued(**key_out(issued.key).model_dump(), secret=issued.secret)


@router.delete("/keys/{key_id}")
def revoke(key_id: str, caller: AdminCaller, session: SessionDep) -> KeyOut:
    return key_out(revoke_key(session, key_id[:64], caller.workspace_id))


@router.get("/workspace")
def workspace(caller: AdminCaller, session: SessionDep) -> WorkspaceOut:
    return workspace_out(session, session.get_one(Workspace, caller.workspace_id))


@router.patch("/workspace")
def update_workspace(body: WorkspaceUpdate, caller: AdminCaller, session: SessionDep) -> WorkspaceOut:
    """Change the fields given: the monthly token budget, whether credentials are kept at ingest."""
    ws = session.get_one(Workspace, caller.workspace_id)
    given = body.model_fields_set
    if "monthly_token_budget" in given:
        ws.monthly_token_budget = body.monthly_token_budget
    if "keep_secrets" in given:
        ws.keep_secrets = body.keep_secrets
    return workspace_out(session, ws)


def _operator(caller: AdminCaller) -> None:
    if caller.workspace != DEFAULT_WORKSPACE:
        raise PermissionDeniedError("only admins of the default workspace manage other workspaces")


@router.get("/workspaces")
def workspaces(caller: AdminCaller, session: SessionDep) -> Page[WorkspaceOut]:
    _operator(caller)
    found = [workspace_out(session, ws) for ws in list_workspaces(session)]
    return Page(items=found, total=len(found), limit=len(found), offset=0)


@router.post("/workspaces", status_code=status.HTTP_201_CREATED)
def new_workspace(body: WorkspaceCreate, caller: AdminCaller, session: SessionDep) -> WorkspaceCreated:
    """A new workspace with its first admin key (shown once)."""
    _operator(caller)
    if find_workspace(session, body.name) is not None:
        raise ConflictError(f"workspace {body.name!r} already exists")
    ws = get_or_create_workspace(session, body.name)
    ws.monthly_token_budget = body.monthly_token_budget
    issued = create_key(session, ws, f"{body.name} admin", [Scope.ADMIN])
    session.flush()
    session.refresh(issued.key)
    session.refresh(ws)
    return WorkspaceCreated(**workspace_out(session, ws).model_dump(),
                            admin_key=KeyIssued(**key_out(issued.key).model_dump(), secret=issued.secret))
