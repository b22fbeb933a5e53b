"""Workspaces are walled off: a key of workspace A cannot read, change or even detect B's resources.

The routes come from the live app (its OpenAPI document and route table), so a route added later is
checked without touching this file, and one whose resource this file cannot create fails the test,
asking for a factory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from corral.platform.api.app import create_app
from tests.conftest import bearer, clear_caches, issue_key, wait_for_job

BASE = "http://127.0.0.1"
# Routes anyone may call without a key: the probes and the API's own description.
PUBLIC_PATHS = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
                # The dashboard's way in and out, and its scripts and styles: no page behind them. Its
                # pages check the session cookie; tests/platform/web/test_web_access.py walks them all.
                "/signin", "/signout", "/static/{name}"}
# Operations that, given another workspace's corpus name, act on a corpus of that name in the
# caller's own workspace (corpus names are per workspace): they answer 2xx and must leave B's alone.
CREATES_IN_CALLERS_WORKSPACE = {"POST /v1/corpora/{name}/ingest", "POST /v1/corpora/{name}/documents"}
# Fields that change without anyone touching the resource.
VOLATILE = {"last_used_at", "heartbeat_at"}
FINISHED = {"succeeded", "failed", "cancelled"}
B_CORPUS = "bees-of-b-only"


@dataclass
class World:
    """Workspace B's resources, made on first use through the API with B's admin key."""

    client: TestClient
    b: dict[str, str]
    docs: Path
    made: dict[str, str] = field(default_factory=dict)
    # Strings only B's resources carry (ids, names, prefixes): none may appear in A's answers.
    markers: set[str] = field(default_factory=set)

    def get(self, kind: str, make: Callable[[World], str]) -> str:
        if kind not in self.made:
            self.made[kind] = make(self)
        return self.made[kind]


def _corpus(w: World) -> str:
    accepted = w.client.post(f"/v1/corpora/{B_CORPUS}/ingest", json={"path": str(w.docs)}, headers=w.b)
    assert accepted.status_code == 202, accepted.text
    w.made["job"] = accepted.json()["job_id"]
    w.markers |= {B_CORPUS, w.made["job"]}
    job = _wait_job(w.client, w.made["job"], w.b)
    assert job["state"] == "succeeded", job
    return B_CORPUS


def _job(w: World) -> str:
    w.get("corpus", _corpus)
    return w.made["job"]


def _run(w: World) -> str:
    corpus = w.get("corpus", _corpus)
    accepted = w.client.post(f"/v1/corpora/{corpus}/runs", json={"question": "What do bees make?"},
                             headers=w.b)
    assert accepted.status_code == 202, accepted.text
    run_id: str = accepted.json()["run_id"]
    w.markers.add(run_id)
    deadline = time.monotonic() + 120
    while w.client.get(f"/v1/runs/{run_id}", headers=w.b).json()["state"] not in FINISHED:
        assert time.monotonic() < deadline, "B's run did not finish"
        time.sleep(0.2)
    return run_id


def _key(w: World) -> str:
    made = w.client.post("/v1/keys", json={"name": "b's reader", "scopes": ["read"]}, headers=w.b)
    assert made.status_code == 201, made.text
    w.markers.add(made.json()["prefix"])
    return str(made.json()["id"])


def _webhook(w: World) -> str:
    made = w.client.post("/v1/webhooks", headers=w.b, json={
        "url": "http://127.0.0.1:9/hook-of-b-only", "events": ["job.finished", "run.finished"]})
    assert made.status_code == 201, made.text
    w.markers.add("hook-of-b-only")
    return str(made.json()["id"])


def _slack_team(w: World) -> str:
    from corral.core.db import session_scope
    from corral.core.services.slack import bind_team

    with session_scope() as session:  # a team is bound when it first writes, or by the operator
        bind_team(session, "TBEESONLY", "bees-inc")
    w.markers.add("TBEESONLY")
    return "TBEESONLY"


def _slack_channel(w: World) -> str:
    team, corpus = w.get("slack-team", _slack_team), w.get("corpus", _corpus)
    made = w.client.put(f"/v1/slack/channels/{team}/CBEESONLY", json={"corpus": corpus}, headers=w.b)
    assert made.status_code == 200, made.text
    w.markers.add("CBEESONLY")
    return "CBEESONLY"


def _document(w: World) -> str:
    w.get("corpus", _corpus)
    return "bees/honey.md"  # the folder ingested is part of its documents' paths


def _image(w: World) -> str:
    """An image of B's document, stored as ingestion's OCR stores one."""
    from sqlalchemy import select

    from corral.core.db import Corpus, Document, DocumentImage, session_scope

    path = w.get("document", _document)
    with session_scope() as session:
        doc = session.scalars(select(Document).join(Corpus, Corpus.id == Document.corpus_id)
                              .where(Corpus.name == B_CORPUS, Document.path == path)).one()
        session.add(DocumentImage(document_id=doc.id, ref="p1-img1", page=1, mime="image/png", width=1,
                                  height=1, data=b"\x89PNG\r\n\x1a\n-of-b-only"))
    return "p1-img1"


# What a path parameter names, by the path segment before it → how to make one in workspace B.
FACTORIES: dict[str, tuple[str, Callable[[World], str]]] = {
    "corpora/{name}": ("corpus", _corpus),
    "documents/{path}": ("document", _document),
    "images/{ref}": ("image", _image),
    "jobs/{job_id}": ("job", _job),
    "runs/{run_id}": ("run", _run),
    "keys/{key_id}": ("key", _key),
    "webhooks/{webhook_id}": ("webhook", _webhook),
    "channels/{team_id}": ("slack-team", _slack_team),
    "{team_id}/{channel_id}": ("slack-channel", _slack_channel),
}
# Request bodies that pass validation, so the route reaches its lookup: by request schema name, or
# by operation for bodies without one (multipart).
BODIES: dict[str, dict[str, Any]] = {
    "AskRequest": {"json": {"question": "What do bees make?"}},
    "FeedbackRequest": {"json": {"rating": 1, "comment": "from another workspace"}},
    "IngestRequest": {"json": {"path": "<docs>"}},
    "ChannelCorpus": {"json": {"corpus": B_CORPUS}},
    "POST /v1/corpora/{name}/documents": {"files": {"files": ("intruder.md", b"# Intruder\n\nWasps.\n",
                                                              "text/markdown")}},
}


def _wait_job(client: TestClient, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    client.headers.update(headers)
    try:
        return wait_for_job(client, job_id)
    finally:
        client.headers.pop("Authorization", None)


def _is_stream(path: str, op: dict[str, Any]) -> bool:
    declared = any("text/event-stream" in (r.get("content") or {}) for r in op["responses"].values())
    return declared or path.endswith("/events")


def _factory_key(path: str, param: str) -> str:
    parts = path.strip("/").split("/")
    i = parts.index("{" + param + "}")
    return f"{parts[i - 1] if i else ''}/{{{param}}}"


def _body(label: str, op: dict[str, Any], docs: Path) -> dict[str, Any]:
    content = op.get("requestBody", {}).get("content", {})
    if not content:
        return {}
    ref = next((c.get("schema", {}).get("$ref", "") for c in content.values()), "").rsplit("/", 1)[-1]
    found = BODIES.get(ref) or BODIES.get(label)
    assert found is not None, (
        f"{label}: no valid request body for schema {ref or '(inline)'}; add one to BODIES in "
        f"{Path(__file__).name} so the isolation test reaches the route's lookup")
    if found.get("json") == {"path": "<docs>"}:
        return {"json": {"path": str(docs)}}
    return found


def _snapshot(client: TestClient, doc: dict[str, Any], w: World) -> dict[str, Any]:
    """Everything B sees of its workspace: every list, and every resource of B by id."""
    seen: dict[str, Any] = {}
    for path, item in doc["paths"].items():
        op = item.get("get")
        if op is None or path in PUBLIC_PATHS or _is_stream(path, op):
            continue
        url = path
        for param in (p["name"] for p in op.get("parameters", []) if p["in"] == "path"):
            kind, _ = FACTORIES[_factory_key(path, param)]
            if kind not in w.made:
                url = ""
                break
            url = url.replace("{" + param + "}", w.made[kind])
        if url:
            r = client.get(url, headers=w.b)
            json_body = r.headers.get("content-type", "").startswith("application/json")
            seen[url] = (r.status_code, _stable(r.json()) if json_body else r.content.hex())
    return seen


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


@pytest.fixture
def client(corral_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("CORRAL_WEBHOOK_ALLOWED_HOSTS", '["127.0.0.1"]')
    monkeypatch.setenv("CORRAL_INGEST_ALLOWED_ROOTS", json.dumps([str(tmp_path)]))
    clear_caches()
    with TestClient(create_app(), base_url=BASE) as c:
        yield c


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "bees"
    root.mkdir()
    (root / "honey.md").write_text("# Honey\n\nBees make honey from nectar.\n")
    return root


def test_another_workspaces_resources_are_not_found(client: TestClient, docs: Path) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    doc = app.openapi()
    # A is the deployment's operator (an admin of the default workspace): not even it reaches B.
    a = bearer(issue_key("admin", workspace="default", name="operator"))
    w = World(client, bearer(issue_key("admin", workspace="bees-inc", name="b admin")), docs)

    targets: list[tuple[str, str, dict[str, Any]]] = []
    missing: list[str] = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            params = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
            label = f"{method.upper()} {path}"
            for param in params:
                if _factory_key(path, param) not in FACTORIES:
                    missing.append(f"{label}: path parameter {param!r} "
                                   f"({_factory_key(path, param)})")
            if params:
                targets.append((label, path, op))
    assert not missing, ("the isolation test cannot create these resources in another workspace; add "
                         f"a factory to FACTORIES in {Path(__file__).name}:\n" + "\n".join(missing))

    for _label, path, op in targets:  # B's resources, then what B sees of them
        for param in (p["name"] for p in op.get("parameters", []) if p["in"] == "path"):
            w.get(*FACTORIES[_factory_key(path, param)])
    before = _snapshot(client, doc, w)
    shown = json.dumps(before)
    assert all(made in shown for made in w.made.values()), ("B's snapshot misses a resource", w.made)

    # A's lists (every GET without a path parameter) show nothing of B's.
    for path, item in doc["paths"].items():
        op = item.get("get")
        if op is None or "{" in path or path in PUBLIC_PATHS or _is_stream(path, op):
            continue
        seen = client.get(path, headers=a)
        assert seen.status_code < 500, (path, seen.text)
        leaked = sorted(m for m in w.markers if m in seen.text)
        assert not leaked, f"GET {path} with workspace A's key shows B's {leaked}"

    # Routes that create in the caller's workspace go last: they give A a corpus of B's name.
    targets.sort(key=lambda t: t[0] in CREATES_IN_CALLERS_WORKSPACE)
    for label, path, op in targets:
        url = path
        for param in (p["name"] for p in op.get("parameters", []) if p["in"] == "path"):
            url = url.replace("{" + param + "}", w.made[FACTORIES[_factory_key(path, param)][0]])
        method = label.split(" ", 1)[0]
        r = client.request(method, url, headers=a, **_body(label, op, docs))
        if label in CREATES_IN_CALLERS_WORKSPACE:
            assert 200 <= r.status_code < 300, (label, url, r.status_code, r.text)
            job_id = r.json().get("job_id")
            if job_id:  # A's own job: A sees it, B does not
                assert _wait_job(client, job_id, a)["state"] in FINISHED
                assert client.get(f"/v1/jobs/{job_id}", headers=w.b).status_code == 404
            continue
        assert r.status_code == 404, (label, url, r.status_code, r.text)
        assert r.json()["error"]["type"] == "not_found", (label, r.text)

    after = _snapshot(client, doc, w)
    assert after == before, "workspace B's resources changed after workspace A's requests"


def _scopes(dependant: Any) -> set[Any]:
    found: set[Any] = set()
    for dep in getattr(dependant, "dependencies", []):
        scope = getattr(dep.call, "corral_scope", None)
        if scope is not None:
            found.add(scope)
        found |= _scopes(dep)
    return found


def _route_table(app: FastAPI) -> Iterator[tuple[str, set[str], Any]]:
    """(path, methods, dependant) of every route, including those of included routers and mounts."""
    for route in iter_route_contexts(app.router.routes):
        yield route.path, set(route.methods or ()), getattr(route.original_route, "dependant", None)


def test_every_route_but_the_public_ones_requires_a_scope(corral_env: Path) -> None:
    app = create_app()
    unguarded = [f"{sorted(methods)} {path}" for path, methods, dependant in _route_table(app)
                 if path not in PUBLIC_PATHS and (dependant is None or not _scopes(dependant))]
    assert not unguarded, ("these routes do not depend on require(scope) "
                           "(corral.platform.api.auth); add it, or list the path as public:\n"
                           + "\n".join(unguarded))
    public = {path for path, _, _ in _route_table(app)} & PUBLIC_PATHS
    assert "/healthz" in public


def test_the_route_table_sees_included_routers(corral_env: Path) -> None:
    """Guards the guard: the walk above must reach the routes behind include_router."""
    paths = {path for path, _, _ in _route_table(create_app())}
    assert {"/v1/corpora", "/v1/keys", "/v1/jobs/{job_id}"} <= paths
