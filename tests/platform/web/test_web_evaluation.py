"""The Evaluation page: the workspace's latest `corral eval`, plotted as evidence recall against tokens
read per strategy; nothing of another workspace's; a designed empty state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from corral.core.db import session_scope
from corral.core.errors import InvalidInputError
from corral.core.services import get_or_create_workspace
from corral.core.services.evals import latest_eval, record_eval
from corral.platform.api.app import create_app
from corral.platform.web.routes.evaluation import plot
from tests.conftest import clear_caches, issue_key
from tests.platform.web.test_web_access import BASE, sign_in

ROWS: list[dict[str, Any]] = [
    {"kind": "needle", "strategy": "stuff", "tasks": 4, "recall": 1.0, "tokens": 9000},
    {"kind": "needle", "strategy": "retrieve", "tasks": 4, "recall": 0.75, "tokens": 1200},
    {"kind": "needle", "strategy": "router", "tasks": 4, "recall": 1.0, "tokens": 1500,
     "chosen": {"retrieve": 3, "stuff": 1}},
]


def store(workspace: str, rows: list[dict[str, Any]], window: int = 8192) -> str:
    with session_scope() as db:
        ws = get_or_create_workspace(db, workspace)
        measured = {"corpus_tokens": 9000, "hybrid": True, "rows": rows}
        return record_eval(db, ws.id, {"docs": {window: measured}})


@pytest.fixture
def client(corral_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("CORRAL_AUTH", "required")
    clear_caches()
    with TestClient(create_app(), base_url=BASE) as c:
        yield c


def test_the_latest_evaluation_is_plotted_per_strategy(client: TestClient) -> None:
    sign_in(client, issue_key("read"))
    empty = client.get("/evaluation")
    assert empty.status_code == 200 and "No evaluation yet" in empty.text

    store("default", [dict(r, recall=0.1) for r in ROWS])  # an older run: not the one shown
    store("default", ROWS, window=32768)
    page = client.get("/evaluation").text
    assert 'data-testid="eval-docs-32768"' in page and 'data-testid="eval-docs-8192"' not in page
    assert "retrieve 3, stuff 1" in page and "0.750" in page
    data = json.loads(page.split("data-scatter='", 1)[1].split("'", 1)[0].replace("&#34;", '"'))
    assert data["x"] == [1200, 1500, 9000]
    assert {s["label"]: s["values"] for s in data["series"]} == {
        "retrieve": [0.75, None, None], "router": [None, 1.0, None], "stuff": [None, None, 1.0]}


def test_another_workspaces_evaluation_is_not_shown(client: TestClient) -> None:
    store("default", ROWS)
    sign_in(client, issue_key("read", workspace="team-b"))
    assert "No evaluation yet" in client.get("/evaluation").text


def test_results_are_checked_and_plotted_with_gaps(corral_env: Path) -> None:
    from corral.core.db.migrate import ensure_schema

    ensure_schema()
    with pytest.raises(InvalidInputError, match="rows must be a list"):
        store("default", "not rows")  # type: ignore[arg-type]
    store("default", [*ROWS, {"kind": "needle", "strategy": "broken", "tokens": "many"}])
    with session_scope() as db:
        (result,) = latest_eval(db, get_or_create_workspace(db).id)
        shape = plot(result)
    # The row without a token count is left out.
    assert shape["x"] == [1200, 1500, 9000] and len(shape["series"]) == 3
