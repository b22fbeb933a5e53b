"""``/v1/webhooks``: URLs told about finished jobs and runs, for keys with the ``admin`` scope.

The signing secret is shown once, when the webhook is created; see
:mod:`corral.platform.webhooks.delivery` for the headers and how to verify them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, Field

from corral.core.config import get_settings
from corral.core.db import Webhook, WebhookDelivery
from corral.core.services.webhooks import (
    EVENTS,
    count_deliveries,
    count_webhooks,
    create_webhook,
    delete_webhook,
    get_webhook,
    list_deliveries,
    list_webhooks,
)
from corral.platform.api.auth import AdminCaller
from corral.platform.api.deps import SessionDep
from corral.platform.api.schemas import Page, Timestamp

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
WebhookId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class WebhookCreate(BaseModel):
    url: str = Field(min_length=1, max_length=2048, description="http(s) URL the events are POSTed to")
    events: list[str] = Field(min_length=1, max_length=len(EVENTS),
                              description=f"Events to send: {', '.join(EVENTS)}")


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    active: bool
    created_at: Timestamp


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret; shown only now")


class AttemptOut(BaseModel):
    at: Timestamp
    status_code: int | None = Field(description="The receiver's status code; null when none came")
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: int
    event: str
    state: str = Field(description="pending | delivered | failed")
    attempts: list[AttemptOut]
    next_attempt_at: Timestamp | None
    delivered_at: Timestamp | None
    created_at: Timestamp
    payload: dict[str, Any]


def webhook_out(hook: Webhook) -> WebhookOut:
    return WebhookOut(id=hook.id, url=hook.url, events=list(hook.events), active=hook.active,
                      created_at=hook.created_at)


def delivery_out(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(id=d.id, event=d.event, state=d.state,
                       attempts=[AttemptOut.model_validate(a) for a in d.attempts or []],
                       next_attempt_at=d.next_attempt_at, delivered_at=d.delivered_at,
                       created_at=d.created_at, payload=d.payload)


@router.post("", status_code=status.HTTP_201_CREATED)
def new_webhook(body: WebhookCreate, caller: AdminCaller, session: SessionDep) -> WebhookCreated:
    hook = create_webhook(session, caller.workspace_id, body.url, body.events,
                          allowed_hosts=get_settings().webhook_allowed_hosts)
    session.refresh(hook)
    return WebhookCreated(**webhook_out(hook).model_dump(), secret=hook.secret)


@router.get("")
def webhooks(caller: AdminCaller, session: SessionDep, limit: Limit = 100,
             offset: Offset = 0) -> Page[WebhookOut]:
    found = list_webhooks(session, caller.workspace_id, limit=limit, offset=offset)
    return Page(items=[webhook_out(h) for h in found], total=count_webhooks(session, caller.workspace_id),
                limit=limit, offset=offset)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def remove_webhook(webhook_id: WebhookId, caller: AdminCaller, session: SessionDep) -> Response:
    delete_webhook(session, webhook_id, caller.workspace_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)  # no body, so no content type


@router.get("/{webhook_id}/deliveries")
def deliveries(webhook_id: WebhookId, caller: AdminCaller, session: SessionDep, limit: Limit = 100,
               offset: Offset = 0) -> Page[DeliveryOut]:
    hook = get_webhook(session, webhook_id, caller.workspace_id)
    found = list_deliveries(session, hook.id, limit=limit, offset=offset)
    return Page(items=[delivery_out(d) for d in found], total=count_deliveries(session, hook.id),
                limit=limit, offset=offset)
