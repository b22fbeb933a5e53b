"""Credentials in a corpus, seen from the doors: a run that reads a redacted passage says so on its
record and shows no credential anywhere; the workspace's admin keeps or redacts credentials from the
API, the dashboard (CSRF like every admin form) or the CLI; the document page counts them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from corral.core.db import Run, Workspace, session_scope
from corral.platform.cli.app import app as cli
from tests.conftest import bearer, issue_key, wait_for_job
from tests.ingestion.test_secrets import PLANTED, SETTINGS
from tests.platform.web.test_web_access import _csrf, sign_in
from tests.platform.web.test_web_access import closed as closed  # a fixture


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "settings.py").write_text(SETTINGS)
    return root


def _keeps() -> bool:
    with session_scope() as s:
        return bool(s.scalar(select(Workspace.keep_secrets).where(Workspace.name == "default")))


def test_a_run_that_reads_redacted_text_records_it_and_shows_no_credential(
    closed: TestClient, repo: Path,
) -> None:
    key = issue_key("admin")
    closed.headers.update(bearer(key))
    made = closed.post("/v1/corpora/code/ingest", json={"path": str(repo)})
    assert wait_for_job(closed, made.json()["job_id"])["state"] == "succeeded"
    reply = closed.post("/v1/corpora/code/ask",
                        json={"question": "Which credentials does the deployment use?"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    with session_scope() as s:
        run = s.get(Run, body["run_id"])
        assert run is not None
        safety, record = list(run.safety), json.dumps(
            [run.answer, run.steps, run.citations, run.decision, run.safety], default=str)
    redacted = [d for d in safety if d["kind"] == "redacted"]
    assert redacted and all("credential(s) redacted at ingest" in d["detail"] for d in redacted), safety
    assert any("repo/settings.py" in d["source"] for d in redacted)
    assert not [s for s in PLANTED if s in record or s in reply.text]
    page = closed.get(f"/v1/runs/{body['run_id']}")
    assert page.status_code == 200 and not [s for s in PLANTED if s in page.text]

    sign_in(closed, key)
    document = closed.get("/corpora/code/documents/repo/settings.py")
    assert document.status_code == 200 and "8 credentials found" in document.text
    assert not [s for s in PLANTED if s in document.text]


def test_the_workspace_admin_keeps_or_redacts_credentials_over_the_api(closed: TestClient) -> None:
    admin, reader = bearer(issue_key("admin")), bearer(issue_key("read", "ask"))
    assert closed.get("/v1/workspace", headers=admin).json()["keep_secrets"] is False
    closed.patch("/v1/workspace", headers=admin, json={"monthly_token_budget": 500})
    kept = closed.patch("/v1/workspace", headers=admin, json={"keep_secrets": True})
    assert kept.status_code == 200 and kept.json()["keep_secrets"] is True
    assert kept.json()["monthly_token_budget"] == 500  # a field not given is left as it was
    assert _keeps()
    for bad in ({"keep_secrets": "yes"}, {"keep_secrets": 1}, {"keep_secrets": None}):
        refused = closed.patch("/v1/workspace", headers=admin, json=bad)
        assert refused.status_code in (400, 422) and refused.json()["error"]["type"] == "invalid_input"
    assert closed.patch("/v1/workspace", headers=reader, json={"keep_secrets": False}).status_code == 403
    assert _keeps()
    assert closed.patch("/v1/workspace", headers=admin, json={"keep_secrets": False}).json()[
        "keep_secrets"] is False


def test_the_dashboard_admin_page_toggles_it_with_its_csrf_token(closed: TestClient) -> None:
    sign_in(closed, issue_key("admin"))
    page = closed.get("/admin")
    assert "redacted</strong> from the stored text" in page.text
    refused = closed.post("/admin/secrets", data={"keep_secrets": "keep", "csrf_token": "0" * 64})
    assert refused.status_code == 403 and not _keeps()
    done = closed.post("/admin/secrets", data={"keep_secrets": "keep", "csrf_token": _csrf(closed, "/admin")},
                       follow_redirects=False)
    assert done.status_code == 303 and _keeps()
    assert "<strong>kept</strong> in the stored text" in closed.get("/admin").text
    odd = closed.post("/admin/secrets", data={"keep_secrets": "x" * 8, "csrf_token": _csrf(closed, "/admin")})
    assert odd.status_code == 400 and _keeps()
    closed.post("/admin/secrets", data={"keep_secrets": "redact", "csrf_token": _csrf(closed, "/admin")})
    assert not _keeps()


def test_the_cli_shows_and_sets_it(corral_env: Path) -> None:
    runner = CliRunner()
    issue_key("admin")  # the default workspace exists
    shown = runner.invoke(cli, ["workspaces", "secrets", "default"])
    assert shown.exit_code == 0 and "are redacted" in shown.output
    kept = runner.invoke(cli, ["workspaces", "secrets", "default", "--keep"])
    assert kept.exit_code == 0 and "are kept; ingest again" in kept.output and _keeps()
    listed = json.loads(runner.invoke(cli, ["workspaces", "list", "--json"]).output)
    assert [w["keep_secrets"] for w in listed if w["name"] == "default"] == [True]
    assert runner.invoke(cli, ["workspaces", "secrets", "default", "--redact"]).exit_code == 0
    assert not _keeps()
    missing = runner.invoke(cli, ["workspaces", "secrets", "nowhere", "--keep"])
    assert missing.exit_code != 0
